#!/usr/bin/env python3
"""Multi-GPU benchmark: a 24-shot final build on 1 and 2 GPUs, local executor and Ray.

    .venv/bin/python bench/multi_gpu.py                        # on a GPU machine (nvidia-h200-x2)
    .venv/bin/python bench/multi_gpu.py --gpus 1 2 4 8         # any number of GPUs
    .venv/bin/python bench/multi_gpu.py --fake --shots 6       # dry run on the CPU: tiny models,
                                                               # FANREN_FAKE_GPUS, same code paths

Every build is the real `fanren build` subprocess on a fresh cache, so every GPU node runs. The
GPU engines are FLUX.1-dev and CogVideoX-5b-I2V (the final profile's when bench/results/ was measured;
final is FLUX.2 [klein] + LTX-2 now, docs/gpu.md) with full-size random weights
(`fanren-random:`; a denoising step costs what it costs with real weights) and few steps; speech
is espeak-ng, so no voice server is needed. For each executor × GPU count it prints wall time,
each GPU worker's busy seconds and model loads, and the speed-up over one GPU, then one JSON line
per build (bench/results/ keeps them).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from build_bench import make_drama

FLUX = "fanren-random:black-forest-labs/FLUX.1-dev"
COGVIDEOX = "fanren-random:THUDM/CogVideoX-5b-I2V"


def profile(fake: bool, steps: int) -> str:
    if fake:
        image, video = "fanren-tiny:flux", "fanren-tiny:cogvideox"
    else:
        image, video = FLUX, COGVIDEOX
    return ("\n[profiles.bench]\n"
            f'image = {{ engine = "flux", model = "{image}", steps = {steps} }}\n'
            f'video = {{ engine = "cogvideox", model = "{video}", steps = {steps} }}\n'
            'voice = { engine = "espeak" }\n')


def build(drama: Path, cache: Path, executor: str, gpus: int, fake: bool) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != "FANREN_CACHE_DIR"}
    if fake:
        env["FANREN_FAKE_GPUS"] = str(gpus)
    shutil.rmtree(cache, ignore_errors=True)
    shutil.rmtree(drama / "out", ignore_errors=True)
    (drama / "drama.lock").unlink(missing_ok=True)
    args = [sys.executable, "-m", "fanren", "build", str(drama), "--profile", "bench", "--cache-dir", str(cache),
            "-q", "--gpus", ",".join(str(i) for i in range(gpus)), "--executor", executor]
    start = time.perf_counter()
    proc = subprocess.run(args, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(args)} failed:\n{proc.stderr[-3000:]}")
    report = json.loads((drama / "out" / "bench" / "report.json").read_text(encoding="utf-8"))
    workers = report.get("workers", {})
    return {
        "executor": executor, "gpus": gpus, "wall_s": round(wall, 1), "build_s": report["seconds"],
        "busy_s": {name: w["busy"] for name, w in workers.items()},
        "loads": {name: w["loads"] for name, w in workers.items()},
        "nodes": {name: len(w["nodes"]) for name, w in workers.items()},
        "lock": (drama / "drama.lock").read_text(encoding="utf-8"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shots", type=int, default=24)
    parser.add_argument("--gpus", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--executors", default="local,ray", help="comma-separated: local, ray")
    parser.add_argument("--steps", type=int, default=4, help="denoising steps per image and per clip")
    parser.add_argument("--fake", action="store_true", help="tiny models on the CPU, fake GPUs (a dry run)")
    parser.add_argument("--keep", type=Path, help="build here and keep the folders (default: a temp dir)")
    args = parser.parse_args()

    work = args.keep or Path(tempfile.mkdtemp(prefix="fanren-multigpu-"))
    drama = work / "drama"
    make_drama(drama, args.shots)
    with open(drama / "drama.toml", "a", encoding="utf-8") as f:
        f.write(profile(args.fake, args.steps))
    rows = []
    for executor in args.executors.split(","):
        for gpus in args.gpus:
            row = build(drama, work / f"cache-{executor}-{gpus}", executor, gpus, args.fake)
            rows.append(row)
            print(f"{executor:<6} {gpus} GPU(s): {row['wall_s']:>7.1f} s wall   busy "
                  + ", ".join(f"{n} {s:.0f} s" for n, s in row["busy_s"].items())  # type: ignore[union-attr]
                  + "   loads " + json.dumps(row["loads"]), flush=True)
    locks = {r["lock"] for r in rows}
    print(f"\nsame bytes in every build: {'yes' if len(locks) == 1 else 'NO'}")
    for executor in args.executors.split(","):
        base = next((r for r in rows if r["executor"] == executor and r["gpus"] == min(args.gpus)), None)
        for r in rows:
            if base is not None and r["executor"] == executor and r is not base:
                print(f"{executor}: {r['gpus']} GPUs are {float(base['wall_s']) / float(r['wall_s']):.2f}× "
                      f"as fast as {base['gpus']}")  # type: ignore[arg-type]
    for r in rows:
        r.pop("lock")
        print(json.dumps({"bench": "multi_gpu", "shots": args.shots, "steps": args.steps, "fake": args.fake, **r}))
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
