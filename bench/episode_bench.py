#!/usr/bin/env python3
"""The episode node alone, on many shots: how its audio join scales with the number of shots.

    .venv/bin/python bench/episode_bench.py --shots 100 1000

Builds the bench drama of bench/build_bench.py with 24 shots once (or takes --drama, a drama
folder already built with the draft profile), then renders the episode node directly from its
shots repeated in order up to --shots (the real shot.mp4 and timing.json objects of the cache),
as the one-narration-edit rebuild of a drama that long does. Prints one JSON line per size: wall
seconds and CPU seconds (this process's children: ffmpeg), and the episode's length.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from build_bench import make_drama  # noqa: E402

from fanren.build import open_session  # noqa: E402
from fanren.compile import LOUDNESS  # noqa: E402
from fanren.engines.base import Request  # noqa: E402
from fanren.engines.mux import MuxEngine  # noqa: E402


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def shot_files(drama: Path) -> list[dict[str, Path]]:
    session = open_session(drama)
    files = []
    for decision in session.decisions:
        if decision.node.kind == "shot":
            if decision.record is None:
                sys.exit(f"{drama} is not built (fanren build {drama})")
            files.append({name: session.cache.object_path(o.digest)
                          for name, o in decision.record.outputs.items()})
    return files


def run(shots: list[dict[str, Path]], count: int, work: Path) -> dict[str, object]:
    inputs = {f"shot:b{i:05d}": shots[i % len(shots)] for i in range(count)}
    out = work / f"episode{count}"
    out.mkdir(parents=True)
    request = Request(node_id="episode", kind="episode",
                      params={"fps": 24, "subtitles": "burn", "loudness": LOUDNESS, "music": []},
                      inputs=inputs, out_dir=out)
    cpu = children_cpu()
    start = time.perf_counter()
    episode = MuxEngine().run(request)["episode.mp4"]
    seconds = time.perf_counter() - start
    length = float(subprocess.run(["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of",
                                   "csv=p=0", str(episode)], capture_output=True, text=True).stdout)
    shutil.rmtree(out)
    return {"shots": count, "episode_s": round(length, 1), "wall_s": round(seconds, 2),
            "cpu_s": round(children_cpu() - cpu, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shots", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--drama", type=Path, help="a drama folder built with the draft profile")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fanren-episode-bench-") as tmp:
        drama = args.drama
        if drama is None:
            drama = Path(tmp) / "drama24"
            make_drama(drama, 24)
            subprocess.run([sys.executable, "-m", "fanren", "build", str(drama), "-q"], check=True,
                           capture_output=True)
        shots = shot_files(drama)
        for count in args.shots:
            print(json.dumps(run(shots, count, Path(tmp))), flush=True)


if __name__ == "__main__":
    main()
