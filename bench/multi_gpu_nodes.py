#!/usr/bin/env python3
"""Multi-GPU benchmark of the GPU nodes alone: character sheets, keyframes and clips of an N-shot
final drama on 1, 2, ... GPUs through the local executor (one worker process per GPU).

    python bench/multi_gpu_nodes.py --gpus 1 2            # on a GPU machine
    FANREN_FAKE_GPUS=2 python bench/multi_gpu_nodes.py --fake --shots 4   # dry run on the CPU

bench/multi_gpu.py measures whole `fanren build`s; this one needs no espeak-ng, fonts or ffprobe
(a GPU box without them, like the device machines here, can run it: only `ffmpeg` is needed, for
the clips' x264 encode). It compiles the drama, keeps the GPU nodes, and feeds them to the real
executor in dependency order as their inputs finish (what fanren/run.py does, minus the cache):
the numbers are the executor's and the engines', which is what multi-GPU scaling is about. It
prints wall time, each worker's busy seconds, model loads and nodes, and the digests of every
output so that runs on 1 and N GPUs can be compared byte for byte.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from build_bench import make_drama  # noqa: E402
from multi_gpu import profile  # noqa: E402

from fanren.cache import digest_file  # noqa: E402
from fanren.compile import compile_project, resolve_engines  # noqa: E402
from fanren.executors import ExecutorOptions, Hooks, Job, Outcome, make_executor  # noqa: E402
from fanren.executors.local import EnginePool  # noqa: E402
from fanren.project import load_project  # noqa: E402

GPU_KINDS = ("character", "keyframe", "clip")


def run(drama: Path, work: Path, gpus: int) -> dict[str, object]:
    project = load_project(drama)
    engines = resolve_engines(project, "bench")
    graph = compile_project(project, engines)
    nodes = {n.id: n for n in graph.topological() if n.kind in GPU_KINDS}
    pool = EnginePool(engines.by_family())
    executor = make_executor(ExecutorOptions("local", ",".join(str(i) for i in range(gpus))), pool, jobs=2,
                             log_dir=work / "logs")
    outputs: dict[str, dict[str, Path]] = {}
    failed: list[str] = []
    done = threading.Condition()

    def finished(outcome: Outcome) -> None:
        with done:
            if outcome.error is not None:
                failed.append(f"{outcome.job.id}: {outcome.error}")
            else:
                outputs[outcome.job.id] = {k: Path(v) for k, v in (outcome.files or {}).items()}
            done.notify_all()

    submitted: set[str] = set()
    start = time.perf_counter()
    executor.open(Hooks(finished=finished,
                        pending=lambda family: sum(1 for n in nodes.values()
                                                   if n.family == family and n.id not in submitted)))
    with done:
        while len(outputs) < len(nodes) and not failed:
            for node in nodes.values():
                if node.id in submitted or not all(i in outputs for i in node.inputs if i in nodes):
                    continue
                out_dir = work / "out" / node.id.replace(":", "_")
                out_dir.mkdir(parents=True)
                executor.submit(Job(node=node, out_dir=out_dir, sources={s: drama / s for s in node.sources},
                                    inputs={i: node.read_outputs(i, outputs[i]) for i in node.inputs}))
                submitted.add(node.id)
            done.wait(timeout=1)
    wall = time.perf_counter() - start
    stats = executor.stats()
    executor.close()
    if failed:
        sys.exit("failed: " + "; ".join(failed))
    return {"gpus": gpus, "wall_s": round(wall, 1),
            "busy_s": {w: s["busy"] for w, s in stats.items()},
            "loads": {w: s["loads"] for w, s in stats.items()},
            "nodes": {w: len(s["nodes"]) for w, s in stats.items()},
            "digests": {n: {k: digest_file(p) for k, p in sorted(files.items())}
                        for n, files in sorted(outputs.items())}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shots", type=int, default=8)
    parser.add_argument("--gpus", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--steps", type=int, default=4, help="denoising steps per image and per clip")
    parser.add_argument("--fake", action="store_true", help="tiny models (set FANREN_FAKE_GPUS too)")
    parser.add_argument("--digests", type=Path, help="also write every output's digest here (JSON), to compare "
                                                     "runs made in separate calls")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="fanren-gpunodes-") as tmp:
        drama = Path(tmp) / "drama"
        make_drama(drama, args.shots)
        with open(drama / "drama.toml", "a", encoding="utf-8") as f:
            # the GPU nodes never speak: an HTTP voice engine keys the lines without espeak-ng installed
            f.write(profile(args.fake, args.steps).replace(
                'voice = { engine = "espeak" }', 'voice = { engine = "openai", base_url = "http://127.0.0.1:9/v1" }'))
        for gpus in args.gpus:
            row = run(drama, Path(tmp) / f"run{gpus}", gpus)
            rows.append(row)
            print(f"{gpus} GPU(s): {row['wall_s']:>7.1f} s wall   busy "
                  + ", ".join(f"{w} {s:.0f} s" for w, s in row["busy_s"].items())  # type: ignore[union-attr]
                  + "   loads " + json.dumps(row["loads"]) + "   nodes " + json.dumps(row["nodes"]), flush=True)
    print(f"same bytes on every GPU count: {'yes' if len({json.dumps(r['digests']) for r in rows}) == 1 else 'NO'}")
    base = rows[0]
    for r in rows[1:]:
        print(f"{r['gpus']} GPUs are {float(base['wall_s']) / float(r['wall_s']):.2f}x as fast as {base['gpus']}")
    if args.digests:
        args.digests.write_text(json.dumps({r["gpus"]: r["digests"] for r in rows}, indent=1), encoding="utf-8")
    for r in rows:
        r.pop("digests")
        print(json.dumps({"bench": "multi_gpu_nodes", "shots": args.shots, "steps": args.steps, **r}))


if __name__ == "__main__":
    main()
