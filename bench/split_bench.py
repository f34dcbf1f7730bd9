"""How long `fanren split` takes on a whole novel with the rules engine, and how much memory it holds.

    python bench/split_bench.py                          300,000 characters: 100 chapters of 3,000
    python bench/split_bench.py --chapters 10 --runs 3   a tenth of it: memory should hardly change

The novel is generated (tests/novels.py: headings, narration, dialogue with speaker tags, five
recurring names) and split into a series in a temp folder by the command as a user runs it (a new
interpreter), once with the cast found in the text and once with `--characters`. Prints JSON lines:

    {"phase": "split", ...}    per run: s of the whole command, the child's peak RSS (MB, from
                               resource.getrusage), episodes and shots written
    {"phase": "baseline", ...} the peak RSS of the same command splitting a two-chapter, 600-character
                               book: the interpreter and the code, what any split holds
    {"phase": "summary", ...}  medians per mode, characters per second
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from novels import NAMES, chinese_novel

SPLIT = "from fanren.split.command import split_command; split_command()"


def child_peak_mb(code: str, *args: str, cwd: Path) -> tuple[float, float, str]:
    """(seconds, peak RSS in MB, stdout) of `python -c code args` run in a process of its own: a
    wrapper process reports its only child's getrusage, so earlier runs do not mask it."""
    wrapper = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
               "p = subprocess.run([sys.executable, '-c', sys.argv[1], *sys.argv[2:]], capture_output=True, "
               "text=True); s = time.perf_counter() - t; "
               "sys.stdout.write(f'{s} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}\\n' + p.stdout); "
               "sys.exit(p.returncode)")
    done = subprocess.run([sys.executable, "-c", wrapper, code, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=1800, check=True)
    head, _, out = done.stdout.partition("\n")
    seconds, kilobytes = head.split()
    return float(seconds), int(kilobytes) / 1024, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chapters", type=int, default=100)
    parser.add_argument("--chapter-chars", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fanren-split-bench-"))
    try:
        text = chinese_novel(args.chapters, args.chapter_chars)
        (work / "novel.txt").write_text(text, encoding="utf-8")
        (work / "tiny.txt").write_text(chinese_novel(2, 300), encoding="utf-8")
        _, baseline, _ = child_peak_mb(SPLIT, "tiny.txt", "-o", "tiny", cwd=work)
        print(json.dumps({"phase": "baseline", "peak_rss_mb": round(baseline, 1)}), flush=True)
        modes = {"detected": [], "given": ["--characters", ",".join(NAMES)]}
        results: dict[str, list[tuple[float, float]]] = {mode: [] for mode in modes}
        for run in range(args.runs):
            for mode, extra in modes.items():
                shutil.rmtree(work / "series", ignore_errors=True)
                seconds, peak, out = child_peak_mb(SPLIT, "novel.txt", "-o", "series", *extra, cwd=work)
                results[mode].append((seconds, peak))
                print(json.dumps({"phase": "split", "mode": mode, "run": run, "characters": len(text),
                                  "seconds": round(seconds, 2), "peak_rss_mb": round(peak, 1),
                                  "wrote": out.splitlines()[0]}, ensure_ascii=False), flush=True)
        for mode, found in results.items():
            seconds = statistics.median(s for s, _ in found)
            print(json.dumps({"phase": "summary", "mode": mode, "characters": len(text), "chapters": args.chapters,
                              "seconds": round(seconds, 2), "chars_per_s": round(len(text) / seconds),
                              "peak_rss_mb": round(statistics.median(p for _, p in found), 1),
                              "baseline_rss_mb": round(baseline, 1)}), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(json.dumps({"phase": "done", "seconds": round(time.perf_counter() - start, 1)}), file=sys.stderr)
