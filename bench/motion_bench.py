"""CPU cost of bringing a slow clip to the episode's frame rate: duplicated frames against ffmpeg's
motion-compensated interpolation (the shot mux's `motion = "interpolate"`), per second of output.

A testsrc2 clip at the clip rate (8 fps, CogVideoX-5b's; --clip-fps) and the episode's size
(1280×720; --size) goes through the shot's real filter chain (fanren.engines.mux.fit_clip), once
into ffmpeg's null muxer (the filter alone) and once through a whole shot render (the filter and the
x264 encode, MuxEngine). For each it prints one JSON line with the wall seconds and the CPU seconds
(user + system of the ffmpeg child) per second of output. minterpolate runs on one thread, so on a
busy machine the wall time is the number that moves.

    python bench/motion_bench.py                        # 3 s of 720p output from an 8 fps clip
    python bench/motion_bench.py --clip-fps 16 --seconds 5
    python bench/motion_bench.py --variants             # also other minterpolate options
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fanren.engines import mux
from fanren.engines.base import Request
from fanren.engines.mux import MuxEngine, fit_clip
from fanren.media import pinned_cpu

# minterpolate settings beside fanren's (mux.MOTION_INTERPOLATION): cheaper motion estimation or
# compensation, and plain frame blending.
VARIANTS = {
    "mci-aobmc-bidir-vsbmc (fanren)": mux.MOTION_INTERPOLATION,
    "mci-obmc-bidir": "tpad=stop_mode=clone:stop=1,minterpolate=fps={fps}:mi_mode=mci:mc_mode=obmc:me_mode=bidir",
    "mci-aobmc-bilat": "tpad=stop_mode=clone:stop=1,minterpolate=fps={fps}:mi_mode=mci:mc_mode=aobmc:me_mode=bilat",
    "blend": "tpad=stop_mode=clone:stop=1,minterpolate=fps={fps}:mi_mode=blend",
}


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def make_clip(folder: Path, size: tuple[int, int], fps: int, seconds: float) -> Path:
    clip = folder / "clip.mp4"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    f"testsrc2=s={size[0]}x{size[1]}:r={fps}:d={seconds}", "-c:v", "libx264", "-preset",
                    "ultrafast", "-pix_fmt", "yuv420p", str(clip)], check=True)
    return clip


def filter_only(clip: Path, chain: str) -> tuple[float, float]:
    cpu, start = children_cpu(), time.perf_counter()
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin",
                    *pinned_cpu(["-i", str(clip), "-filter_threads", "1", "-vf", chain, "-f", "null", "-"])],
                   check=True)
    return time.perf_counter() - start, children_cpu() - cpu


def whole_shot(clip: Path, folder: Path, size: tuple[int, int], fps: int, seconds: float,
               motion: str) -> tuple[float, float]:
    out = Path(tempfile.mkdtemp(dir=folder))
    params = {"shot_id": "bench", "size": list(size), "fps": fps, "pause": 0.4, "lead_in": 0.15,
              "min_seconds": seconds, "fit": "hold", "max_slow": 1.5, "motion": motion, "subtitles": "none",
              "font": "Noto Sans CJK SC", "language": "zh", "lines": []}
    request = Request(node_id="shot:bench", kind="shot", params=params,
                      inputs={"clip:bench": {"clip.mp4": clip}}, out_dir=out)
    cpu, start = children_cpu(), time.perf_counter()
    MuxEngine().run(request)
    return time.perf_counter() - start, children_cpu() - cpu


def emit(record: dict[str, object]) -> None:
    print(json.dumps(record, ensure_ascii=False), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clip-fps", type=int, default=8)
    parser.add_argument("--fps", type=int, default=24, help="the episode's frame rate")
    parser.add_argument("--size", default="1280x720")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of the clip and of the output")
    parser.add_argument("--variants", action="store_true", help="also time other minterpolate options")
    args = parser.parse_args()
    width, _, height = args.size.partition("x")
    size = (int(width), int(height))
    frames = round(args.seconds * args.fps)
    with tempfile.TemporaryDirectory(prefix="fanren-motion-") as scratch:
        folder = Path(scratch)
        clip = make_clip(folder, size, args.clip_fps, args.seconds)
        base = {"clip_fps": args.clip_fps, "fps": args.fps, "size": args.size, "seconds": args.seconds}
        for motion in ("duplicate", "interpolate"):
            chain = fit_clip("hold", args.seconds, args.seconds, 1.5, frames, size, args.fps, motion=motion,
                             clip_fps=float(args.clip_fps))
            wall, cpu = filter_only(clip, chain)
            emit({**base, "motion": motion, "what": "filter", "wall_s_per_s": round(wall / args.seconds, 3),
                  "cpu_s_per_s": round(cpu / args.seconds, 3)})
            wall, cpu = whole_shot(clip, folder, size, args.fps, args.seconds, motion)
            emit({**base, "motion": motion, "what": "shot (filter + x264)",
                  "wall_s_per_s": round(wall / args.seconds, 3), "cpu_s_per_s": round(cpu / args.seconds, 3)})
        if args.variants:
            for name, template in VARIANTS.items():
                chain = f"{template.format(fps=args.fps)},fps={args.fps}"
                wall, cpu = filter_only(clip, chain)
                emit({**base, "variant": name, "what": "filter", "wall_s_per_s": round(wall / args.seconds, 3),
                      "cpu_s_per_s": round(cpu / args.seconds, 3)})


if __name__ == "__main__":
    main()
