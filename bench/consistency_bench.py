"""Time per keyframe of the consistency check, for the full-size embedding models, without weights.

Builds DINOv2-small, DINOv2-base and CLIP ViT-L/14's vision tower at full size with random weights
(fanren.testing's "fanren-random:<hub id>": a forward pass costs the same whatever the weights are)
and runs the real `consistency` engine on one node: a character sheet and --shots keyframes of
1280×720, first each showing the character alone (three squares across each keyframe, the best
one scored), then each showing it with a second character (two columns per keyframe, matched by
the Hungarian method). One JSON line per
model and layout:

    load_s         building the model (random init; not a disk read)
    first_s        the first node (warm-up: kernels, allocator)
    node_s         a later run of the same node, end to end (PNG decode, preprocessing, embedding,
                   matching, consistency.json)
    per_keyframe_s node_s / shots: what one more shot of the character costs
    cpu_per_keyframe_s  CPU seconds of this process per keyframe (what a shared CPU's load changes least)
    load           the 1-minute load average after the run (a shared machine: how shared it was)
    peak_gb        peak allocated GPU memory (CUDA only)

    python bench/consistency_bench.py                        # every model, on CUDA if there is one
    python bench/consistency_bench.py --models facebook/dinov2-small --shots 8 --device cpu
    python bench/consistency_bench.py --tiny                 # tiny models on the CPU: checks the script
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fanren.engines.base import Request
from fanren.engines.consistency import CLIP_VIT_L14, DINOV2_BASE, DINOV2_SMALL, ConsistencyEngine

MODELS = (DINOV2_SMALL, DINOV2_BASE, CLIP_VIT_L14)
TINY = ("dinov2", "clip-vision")


def pictures(folder: Path, shots: int) -> tuple[Path, Path, list[Path]]:
    """Two sheets and `shots` keyframes: smooth random pictures (noise blurred, as photos are smooth)."""
    import numpy
    from PIL import Image, ImageFilter

    rng = numpy.random.default_rng(0)

    def picture(name: str, size: tuple[int, int]) -> Path:
        noise = rng.integers(0, 256, (size[1] // 8, size[0] // 8, 3), dtype=numpy.uint8)
        image = Image.fromarray(noise).resize(size, Image.Resampling.BICUBIC).filter(ImageFilter.GaussianBlur(4))
        path = folder / f"{name}.png"
        image.save(path)
        return path

    return (picture("sheet-a", (1280, 720)), picture("sheet-b", (1280, 720)),
            [picture(f"k{i}", (1280, 720)) for i in range(shots)])


def run_node(engine: ConsistencyEngine, out: Path, sheets: tuple[Path, Path], keyframes: list[Path],
             two: bool) -> tuple[float, float]:
    """Seconds the node took, wall and CPU (this process, every thread)."""
    cast = ["a", "b"] if two else ["a"]
    out.mkdir(parents=True)
    request = Request(
        node_id="consistency:a", kind="consistency",
        params={"character_id": "a", "name": "a",
                "shots": [{"shot": f"k{i}", "characters": cast} for i in range(len(keyframes))]},
        inputs={"character:a": {"image.png": sheets[0]}, "character:b": {"image.png": sheets[1]},
                **{f"keyframe:k{i}": {"image.png": k} for i, k in enumerate(keyframes)}},
        out_dir=out)
    _sync(engine)
    started, cpu = time.perf_counter(), time.process_time()
    engine.run(request)
    _sync(engine)
    return time.perf_counter() - started, time.process_time() - cpu


def _sync(engine: ConsistencyEngine) -> None:
    if engine.device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--shots", type=int, default=16)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument("--layouts", default="one,two", help="one (one character a shot), two (two)")
    parser.add_argument("--tiny", action="store_true", help="the tiny models (checks the script on a CPU)")
    parser.add_argument("--out", type=Path, help="also append the JSON lines to this file")
    args = parser.parse_args()
    models = [f"fanren-tiny:{t}" for t in TINY] if args.tiny else \
        [f"fanren-random:{m}" for m in args.models.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sheets_a, sheets_b, keyframes = pictures(folder, args.shots)
        for model in models:
            engine = ConsistencyEngine({"model": model, "device": args.device})
            started = time.perf_counter()
            engine.load()
            _sync(engine)
            load_s = time.perf_counter() - started
            for two in [layout == "two" for layout in args.layouts.split(",")]:
                import torch

                if engine.device.startswith("cuda"):
                    torch.cuda.reset_peak_memory_stats()
                layout = "two characters" if two else "one character"
                first, _ = run_node(engine, folder / f"{model}-{two}-1".replace("/", "_"), (sheets_a, sheets_b),
                                 keyframes, two)
                again, cpu = run_node(engine, folder / f"{model}-{two}-2".replace("/", "_"), (sheets_a, sheets_b),
                                 keyframes, two)
                line: dict[str, Any] = {
                    "model": model, "layout": layout, "shots": args.shots, "device": engine.device,
                    "load_s": round(load_s, 2), "first_s": round(first, 3), "node_s": round(again, 3),
                    "per_keyframe_s": round(again / args.shots, 4),
                    "cpu_per_keyframe_s": round(cpu / args.shots, 4), "load": round(os.getloadavg()[0], 1),
                    "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                    "machine": torch.cuda.get_device_name() if engine.device.startswith("cuda")
                    else platform.processor() or platform.machine(),
                }
                if engine.device.startswith("cuda"):
                    line["peak_gb"] = round(torch.cuda.max_memory_allocated() / 1024**3, 2)
                text = json.dumps(line)
                print(text, flush=True)
                if args.out:
                    with args.out.open("a", encoding="utf-8") as file:
                        file.write(text + "\n")
            engine.unload()


if __name__ == "__main__":
    main()
