"""`kenburns`: the embedded video engine. A slow zoom or pan over the keyframe, rendered by ffmpeg.

The move is a crop window that glides over the keyframe, scaled back to the full frame. ffmpeg's
zoompan and crop snap the window to whole pixels, which makes slow moves judder; the perspective
filter samples the window at sub-pixel positions (1/256 px, bilinear) instead, so the glide is
smooth. The keyframe is decoded, fitted and converted once, then repeated by the loop filter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import OptionError
from ...media import run_ffmpeg
from ..base import Request, VideoEngine

DEFAULT_SECONDS = 4.0
# Gentle enough that a storyboard card's text stays inside the frame (the card keeps 7.5% margins).
ZOOM = 1.10       # how far a zoom travels: 1 → 1.10 (in) or 1.10 → 1 (out)
PAN_ZOOM = 1.08   # a pan looks through a window this much smaller than the frame and crosses its margin

# A clip is an intermediate that the shot node decodes once and re-encodes, so its encode is made
# cheap rather than small. A 2 s 720p clip on a storyboard card, CPU seconds of the whole ffmpeg
# run and PSNR against the uncompressed frames: superfast crf 21 (version 1) 0.58 s, 57.6 dB, 82 kB;
# ultrafast crf 18 0.50 s, 63.2 dB, 376 kB; ultrafast lossless 0.52 s, 655 kB. The perspective filter
# is the rest (0.30 s: its per-frame sampling 0.24, its per-frame coordinate table 0.08), and decoding
# an ultrafast clip costs the shot no more than a superfast one (0.09 vs 0.11 s).
X264 = ["-c:v", "libx264", "-preset", "ultrafast", "-crf", "18", "-pix_fmt", "yuv420p"]
# x264 output depends on its thread count, so it is fixed rather than taken from the machine.
X264_THREADS = "2"
BITEXACT = ["-map_metadata", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact"]


@dataclass(frozen=True)
class Move:
    """A straight glide of the crop window: zoom and anchor (0 = left/top, 1 = right/bottom)."""

    name: str
    zoom: tuple[float, float]
    anchor_x: tuple[float, float]
    anchor_y: tuple[float, float]


MOVES = (
    Move("zoom in", (1.0, ZOOM), (0.5, 0.5), (0.5, 0.5)),
    Move("zoom out", (ZOOM, 1.0), (0.5, 0.5), (0.5, 0.5)),
    Move("pan left", (PAN_ZOOM, PAN_ZOOM), (1.0, 0.0), (0.5, 0.5)),
    Move("pan right", (PAN_ZOOM, PAN_ZOOM), (0.0, 1.0), (0.5, 0.5)),
    Move("pan up", (PAN_ZOOM, PAN_ZOOM), (0.5, 0.5), (1.0, 0.0)),
    Move("pan down", (PAN_ZOOM, PAN_ZOOM), (0.5, 0.5), (0.0, 1.0)),
)


def move_for_seed(seed: int) -> Move:
    return MOVES[seed % len(MOVES)]


class KenBurnsEngine(VideoEngine):
    name = "kenburns"
    version = "2"  # 2: x264 ultrafast crf 18 (was superfast crf 21)
    options_known = frozenset({"seconds"})
    # A pan over one still, rendered at the drama's fps: only a clip slowed to fit its speech would
    # be interpolated, at 3.5 CPU-seconds per second of 720p (bench/motion_bench.py), which made the
    # test drama's draft build 30.5 s instead of 7.7 s. The draft is for speed: its shots repeat frames.
    interpolates = False

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        value = self.options.get("seconds", DEFAULT_SECONDS)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 120:
            raise OptionError(self.name, "seconds", "a number of seconds in (0, 120]", repr(value))
        self.seconds = float(value)

    def identity(self) -> dict[str, Any]:
        # The effective clip length is part of the key even when the drama leaves it at the default,
        # so changing DEFAULT_SECONDS can never reuse clips of the old length.
        return {**super().identity(), "options": {**self.options, "seconds": self.seconds}}

    def run(self, request: Request) -> dict[str, Path]:
        params = request.params
        width, height = (int(v) for v in params["size"])
        fps = int(params["fps"])
        frames = max(1, round(self.seconds * fps))
        move = move_for_seed(int(params["seed"]))
        keyframe = request.input_file(f"keyframe:{params['shot_id']}", "image.png")
        clip = request.out_dir / "clip.mp4"
        request.progress(0.0, move.name)
        # Two filter threads: the scheduler runs CPU nodes side by side (the bytes do not depend on it).
        run_ffmpeg(
            ["-filter_threads", "2", "-i", str(keyframe),
             "-vf", filter_chain(move, (width, height), fps, frames),
             "-frames:v", str(frames), "-r", str(fps), "-an",
             *X264, "-threads", X264_THREADS, *BITEXACT, str(clip)],
            f"rendering a {move.name} over the keyframe of {params['shot_id']}",
        )
        request.progress(1.0, move.name)
        return {"clip.mp4": clip}


def filter_chain(move: Move, size: tuple[int, int], fps: int, frames: int) -> str:
    width, height = size
    fit = (f"scale={width}:{height}:force_original_aspect_ratio=increase:flags=lanczos,"
           f"crop={width}:{height},format=yuv420p")
    repeat = f"loop=loop={frames - 1}:size=1:start=0,setpts=N/({fps}*TB)"
    return f"{fit},{repeat},{glide(move, frames)}"


def glide(move: Move, frames: int) -> str:
    """A perspective filter whose source corners are the crop window at each frame."""
    # perspective numbers output frames from 1 (`on`), in ffmpeg 5.1 and later.
    progress = f"clip((on-1)/{max(1, frames - 1)},0,1)"

    def lerp(ends: tuple[float, float]) -> str:
        start, end = ends
        return f"{start:.6f}" if start == end else f"({start:.6f}{end - start:+.6f}*{progress})"

    zoom = lerp(move.zoom)
    left = f"{lerp(move.anchor_x)}*(W-W/{zoom})"
    top = f"{lerp(move.anchor_y)}*(H-H/{zoom})"
    right = f"{left}+W/{zoom}"
    bottom = f"{top}+H/{zoom}"
    corners = {"x0": left, "y0": top, "x1": right, "y1": top,
               "x2": left, "y2": bottom, "x3": right, "y3": bottom}
    options = ":".join(f"{name}='{expr}'" for name, expr in corners.items())
    return f"perspective={options}:interpolation=linear:sense=source:eval=frame"
