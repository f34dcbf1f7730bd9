#!/usr/bin/env python3
"""Build-system benchmark: cold draft build, no-op build, one-narration-edit rebuild.

    .venv/bin/python bench/build_bench.py --shots 200            # the numbers in docs/performance.md
    .venv/bin/python bench/build_bench.py --shots 24 200 --keep /tmp/b   # keep the built dramas
    .venv/bin/python bench/build_bench.py --shots 24 200 --keep /tmp/b --reuse   # again, no cold build

Every timing is wall-clock of the real `fanren build` subprocess (interpreter start included), on
this machine's cores, with its CPU seconds (user + system, ffmpeg's included) beside it: on a shared
machine the CPU seconds stay meaningful when the wall clock does not, and the 1-minute load average
is printed with them. A no-op build is also checked to hash no file content, never import torch,
and find every node in the index of resolved keys.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SENTENCES = ["山风吹过石阶。", "他握紧了手中的剑。", "远处传来钟声。", "她回头望了一眼。", "雾气慢慢散开。"]


def make_drama(folder: Path, shots: int) -> None:
    """A drama of `shots` shots in scenes of ten, three characters, narration and some dialogue."""
    lines = ['[drama]\ntitle = "bench"\nlanguage = "zh"\nfps = 24\nstyle = "ink wash"\nseed = 1\n',
             '[voices.n]\nspeed = 1.6\n\n[narrator]\nvoice = "n"\n']
    for cid in ("a", "b", "c"):
        lines.append(f'[characters.{cid}]\nname = "{cid.upper()}"\ndescription = "character {cid}"\n')
    for s in range(shots):
        if s % 10 == 0:
            lines.append(f'[[scenes]]\nid = "scene{s // 10}"\nsetting = "place {s // 10}"\n')
        who = "abc"[s % 3]
        lines.append(f'[[scenes.shots]]\nid = "s{s:04d}"\ncharacters = ["{who}"]\naction = "action {s}"\n'
                     f'narration = "{SENTENCES[s % 5]}"\n')
        if s % 4 == 0:
            lines.append(f'lines = [{{ who = "{who}", text = "好。" }}]\n')
    lines.append('[profiles.draft]\nvideo = { engine = "kenburns", seconds = 2.0 }\n')
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "drama.toml").write_text("\n".join(lines), encoding="utf-8")


CPU: list[float] = []  # CPU seconds (user + system) of each `fanren` run and its children


def fanren(*args: str) -> float:
    """Wall seconds of one `fanren` command; its CPU seconds are appended to CPU.

    PYTHONDONTWRITEBYTECODE is dropped: an installed fanren has its bytecode compiled, and compiling
    every module on every run would add ~0.1 s to each no-op build.
    """
    env = {k: v for k, v in os.environ.items() if k not in ("FANREN_CACHE_DIR", "PYTHONDONTWRITEBYTECODE")}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "fanren", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    stderr = proc.stderr.read() if proc.stderr else ""
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    CPU.append(usage.ru_utime + usage.ru_stime)
    if status != 0:
        sys.exit(f"fanren {' '.join(args)} failed:\n{stderr[-2000:]}")
    return seconds


def load() -> float:
    """The 1-minute load average: on a shared machine, what the wall-clock numbers were measured under."""
    return round(os.getloadavg()[0], 1)


def noop_checks(folder: Path) -> dict[str, object]:
    """Hashes no content, imports no torch: run the no-op build in-process and look."""
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from fanren.build import build\n"
        "r = build(Path(sys.argv[1]))\n"
        "print(r.session.cache.memo.hashed, 'torch' in sys.modules, r.count('ran'), r.session.index.misses)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("FANREN_CACHE_DIR", "PYTHONDONTWRITEBYTECODE")}
    out = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True,
                         check=True, env=env)
    hashed, torch, ran, misses = out.stdout.split()
    return {"files_hashed": int(hashed), "torch_imported": torch == "True", "nodes_ran": int(ran),
            "index_misses": int(misses)}


def run(shots: int, repeats: int, workdir: Path, reuse: bool = False) -> dict[str, object]:
    folder = workdir / f"drama{shots}"
    if not (reuse and (folder / "drama.toml").exists()):
        make_drama(folder, shots)
    load_before = load()
    cold = fanren("build", str(folder), "-q", "-j", str(os.cpu_count() or 2))
    cold_cpu = CPU[-1]
    per_kind: dict[str, float] = {}
    for node in json.loads((folder / "out" / "draft" / "report.json").read_text(encoding="utf-8"))["nodes"]:
        per_kind[node["kind"]] = round(per_kind.get(node["kind"], 0.0) + node["seconds"], 2)
    fanren("build", str(folder), "-q")  # the first no-op writes the index of resolved keys
    noop = [fanren("build", str(folder), "-q") for _ in range(repeats)]
    noop_cpu = CPU[-repeats:]
    status = [fanren("status", str(folder)) for _ in range(repeats)]
    checks = noop_checks(folder)
    toml = folder / "drama.toml"
    text = toml.read_text(encoding="utf-8")
    toml.write_text(text.replace(SENTENCES[1], "他慢慢握紧了手中的剑。", 1), encoding="utf-8")
    edit = fanren("build", str(folder), "-q")
    edit_cpu = CPU[-1]
    report = json.loads((folder / "out" / "draft" / "report.json").read_text(encoding="utf-8"))
    return {
        "shots": shots,
        "nodes": len(report["nodes"]),
        "load_1min": [load_before, load()],
        "cold_build_s": round(cold, 2),
        "cold_build_cpu_s": round(cold_cpu, 2),
        "cold_node_seconds_by_kind": per_kind,
        "noop_build_s_median": round(statistics.median(noop), 3),
        "noop_build_s_min": round(min(noop), 3),
        "noop_build_cpu_s_median": round(statistics.median(noop_cpu), 3),
        "noop_build_cpu_s_min": round(min(noop_cpu), 3),
        "status_s_median": round(statistics.median(status), 3),
        "narration_edit_rebuild_s": round(edit, 2),
        "narration_edit_rebuild_cpu_s": round(edit_cpu, 2),
        "narration_edit_ran": sorted(n["id"] for n in report["nodes"] if n["status"] == "ran"),
        **checks,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shots", type=int, nargs="+", default=[200])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="build here and keep the folders (default: a temp dir)")
    parser.add_argument("--reuse", action="store_true",
                        help="with --keep: build the dramas already there as they are (their `cold` build "
                             "runs only what is stale)")
    args = parser.parse_args()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="fanren-bench-"))
    try:
        for shots in args.shots:
            print(json.dumps(run(shots, args.repeats, workdir, args.reuse), ensure_ascii=False), flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
