#!/usr/bin/env python3
"""The comfyui engine's own cost per node: what fanren adds around the server's render time.

    .venv/bin/python bench/comfyui_bench.py            # 10 keyframes and 5 clips each way
    .venv/bin/python bench/comfyui_bench.py --runs 3

Prints one JSON object per line, per node kind and way of following the prompt (the websocket,
or polling GET /history when there is none): the median and worst seconds of `engine.run` against
the stand-in ComfyUI of tests/comfyui_server.py on 127.0.0.1. The stand-in draws a 512×512 picture
(KSampler's 20 steps are only progress messages) or 9 frames of 256×256 encoded with ffmpeg, so
the numbers are the client's overhead — upload, queue, following, download, PNG re-encode or the
clip's H.264 encode — plus the stand-in's drawing, never a model's time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the stand-in server lives there

from comfyui_server import ComfyUIServer
from PIL import Image

from fanren.engines.base import Request
from fanren.engines.comfyui import ComfyUIImageEngine, ComfyUIVideoEngine


def measure(run: Any, runs: int) -> dict[str, float]:
    seconds = []
    for n in range(runs):
        started = time.perf_counter()
        run(n)
        seconds.append(time.perf_counter() - started)
    return {"median_s": round(statistics.median(seconds), 4), "worst_s": round(max(seconds), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    examples = REPO / "examples" / "comfyui"
    with ComfyUIServer() as server, tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        keyframe = work / "keyframe.png"
        Image.new("RGB", (256, 256), (40, 90, 160)).save(keyframe)
        image = ComfyUIImageEngine({"url": server.url, "workflow": str(examples / "keyframe.json")})
        video = ComfyUIVideoEngine({"url": server.url, "workflow": str(examples / "clip.json"), "frames": 9,
                                    "inputs": {"frames": "50.inputs.length"}})

        def keyframe_node(n: int) -> None:
            out = work / f"k{time.perf_counter_ns()}"
            out.mkdir()
            image.run(Request("keyframe:s1", "keyframe", {"prompt": "a gate", "seed": n, "size": [512, 512]}, {}, out))

        def clip_node(n: int) -> None:
            out = work / f"c{time.perf_counter_ns()}"
            out.mkdir()
            video.run(Request("clip:s1", "clip", {"prompt": "she turns", "seed": n, "size": [256, 256], "fps": 8},
                              {"keyframe:s1": {"image.png": keyframe}}, out))

        for way in ("websocket", "polling"):
            for kind, node, runs in (("keyframe", keyframe_node, args.runs), ("clip", clip_node, max(1, args.runs // 2))):
                if way == "polling":
                    server.fail_next(*["no_websocket"] * runs)
                print(json.dumps({"kind": kind, "follow": way, "runs": runs, **measure(node, runs)}), flush=True)


if __name__ == "__main__":
    main()
