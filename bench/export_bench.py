#!/usr/bin/env python3
"""Editor exports: what the export nodes cost, and what they add to a no-op build.

    .venv/bin/python bench/export_bench.py                      # examples/xianxia, built cold first
    .venv/bin/python bench/export_bench.py --drama /tmp/xx      # an already-built copy of a drama

Prints, for the drama (draft profile):
- each export node and (for a drama that burns its subtitles) the shots' pictures rendered again
  in-process (fanren.check: the engine alone, media files from the cache), min of --repeats;
- a no-op `fanren build` subprocess (interpreter start included), median of --repeats, with
  `[export] formats` set to all three and to none, and the 1-minute load average.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
ALL = ["otio", "fcpxml", "jianying"]


def fanren(*args: str) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("FANREN_CACHE_DIR", "PYTHONDONTWRITEBYTECODE")}
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "fanren", *args], check=True, env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def set_formats(drama: Path, formats: list[str]) -> None:
    import tomli_w

    toml = drama / "drama.toml"
    document = tomllib.loads(toml.read_text(encoding="utf-8"))
    document["export"] = {"formats": formats}
    toml.write_text(tomli_w.dumps(document), encoding="utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--drama", type=Path, help="an already-built drama folder (it is edited: [export])")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    drama = args.drama
    if drama is None:
        drama = Path(tempfile.mkdtemp(prefix="fanren-export-bench-")) / "xianxia"
        shutil.copytree(HERE.parent / "examples" / "xianxia", drama,
                        ignore=shutil.ignore_patterns("out", ".fanren-cache"))
    set_formats(drama, ALL)
    print(f"cold or catching-up build with exports: {fanren('build', str(drama), '-q'):.1f} s")

    sys.path.insert(0, str(HERE.parent))
    from fanren.build import open_session
    from fanren.check import check_nodes
    from fanren.executors.local import EnginePool
    from fanren.graph import Node

    session = open_session(drama)
    records = {d.node.id: d.record for d in session.decisions if d.record is not None}
    pool = EnginePool(session.engines.by_family())
    seconds: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        marks: list[tuple[str, float]] = []  # (node, when it started); on_node is called before each

        def mark(done: int, total: int, node: Node, marks: list[tuple[str, float]] = marks) -> None:
            marks.append((node.id, time.perf_counter()))

        mismatches = check_nodes(session.graph, records, pool, session.cache, drama, kinds={"export", "picture"},
                                 on_node=mark)
        ends = [when for _, when in marks[1:]] + [time.perf_counter()]
        for (node_id, started), ended in zip(marks, ends):
            seconds.setdefault(node_id, []).append(ended - started)
        assert not mismatches, mismatches
    shots = sum(1 for n in session.graph.topological() if n.kind == "shot")
    lines = sum(1 for n in session.graph.topological() if n.kind == "line")
    print(f"{shots} shots, {lines} lines; each node rendered again (same bytes), min of {args.repeats}:")
    for node_id, times in seconds.items():
        if not node_id.startswith("picture:"):
            print(f"  {node_id:18s} {min(times) * 1000:7.1f} ms")
    pictures = [min(times) for node_id, times in seconds.items() if node_id.startswith("picture:")]
    if pictures:
        shot_seconds = [r.seconds for n, r in records.items() if n.startswith("shot:")]
        print(f"  picture:<shot>     {sum(pictures):7.1f} s for {len(pictures)} pictures "
              f"(the shots' own mux took {sum(shot_seconds):.1f} s when they ran)")

    for label, line in (("with all three exports", ALL), ("without exports", [])):
        set_formats(drama, line)
        fanren("build", str(drama), "-q")  # settle (lock, index, out/)
        times = [fanren("build", str(drama), "-q") for _ in range(args.repeats)]
        print(f"no-op build {label}: median {statistics.median(times):.3f} s "
              f"(min {min(times):.3f}, load {os.getloadavg()[0]:.1f})")
    set_formats(drama, ALL)


if __name__ == "__main__":
    main()
