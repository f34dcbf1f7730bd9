#!/usr/bin/env python3
"""Build-system benchmark: cold draft build, no-op build, one-narration-edit rebuild.

    .venv/bin/python bench/build_bench.py --shots 200            # the numbers in docs/performance.md
    .venv/bin/python bench/build_bench.py --shots 50 200 1000 --noop-only-after-cold

Every timing is wall-clock of the real `fanren build` subprocess (interpreter start included), on
this machine's cores. A no-op build is also checked to hash no file content and never import torch.
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


def fanren(*args: str) -> float:
    env = {k: v for k, v in os.environ.items() if k != "FANREN_CACHE_DIR"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "fanren", *args], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"fanren {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return seconds


def noop_checks(folder: Path) -> dict[str, object]:
    """Hashes no content, imports no torch: run the no-op build in-process and look."""
    code = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from fanren.build import build\n"
        "r = build(Path(sys.argv[1]))\n"
        "print(r.session.cache.memo.hashed, 'torch' in sys.modules, r.count('ran'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, check=True)
    hashed, torch, ran = out.stdout.split()
    return {"files_hashed": int(hashed), "torch_imported": torch == "True", "nodes_ran": int(ran)}


def run(shots: int, repeats: int, workdir: Path) -> dict[str, object]:
    folder = workdir / f"drama{shots}"
    make_drama(folder, shots)
    cold = fanren("build", str(folder), "-q", "-j", str(os.cpu_count() or 2))
    per_kind: dict[str, float] = {}
    for node in json.loads((folder / "out" / "draft" / "report.json").read_text(encoding="utf-8"))["nodes"]:
        per_kind[node["kind"]] = round(per_kind.get(node["kind"], 0.0) + node["seconds"], 2)
    noop = [fanren("build", str(folder), "-q") for _ in range(repeats)]
    status = [fanren("status", str(folder)) for _ in range(repeats)]
    checks = noop_checks(folder)
    toml = folder / "drama.toml"
    text = toml.read_text(encoding="utf-8")
    toml.write_text(text.replace(SENTENCES[1], "他慢慢握紧了手中的剑。", 1), encoding="utf-8")
    edit = fanren("build", str(folder), "-q")
    report = json.loads((folder / "out" / "draft" / "report.json").read_text(encoding="utf-8"))
    return {
        "shots": shots,
        "nodes": len(report["nodes"]),
        "cold_build_s": round(cold, 2),
        "cold_node_seconds_by_kind": per_kind,
        "noop_build_s_median": round(statistics.median(noop), 3),
        "noop_build_s_min": round(min(noop), 3),
        "status_s_median": round(statistics.median(status), 3),
        "narration_edit_rebuild_s": round(edit, 2),
        "narration_edit_ran": sorted(n["id"] for n in report["nodes"] if n["status"] == "ran"),
        **checks,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shots", type=int, nargs="+", default=[200])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="build here and keep the folders (default: a temp dir)")
    args = parser.parse_args()
    workdir = args.keep or Path(tempfile.mkdtemp(prefix="fanren-bench-"))
    try:
        for shots in args.shots:
            print(json.dumps(run(shots, args.repeats, workdir), ensure_ascii=False), flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
