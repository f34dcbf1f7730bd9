"""How long `fanren diff` takes to review a commit of a drama, with and without the page.

    python bench/diff_bench.py                       examples/xianxia, draft profile
    python bench/diff_bench.py --drama examples/english --runs 5

The drama is copied into a temp git repository, built at its first commit (the warm-up, not
measured), and a second commit edits one shot's action and one narration line. Then, each run:

    {"phase": "command", ...}   s of `fanren diff HEAD~1 HEAD` as a user runs it (a new interpreter)
    {"phase": "review", ...}    s in this process to read both revisions out of git, compile both
                                graphs and compare them; and s to write the page (--html)
    {"phase": "summary", ...}   the medians
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fanren.build import build
from fanren.diff import open_review
from fanren.diff.page import write_page

REPO = Path(__file__).resolve().parent.parent
ACTION = re.compile(r'^(action = ")([^"]*)(")', re.MULTILINE)
NARRATION = re.compile(r'^(narration = ")([^"]*)(")', re.MULTILINE)


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=bench", "-c", "user.email=bench@example.com", *args], cwd=repo,
                   check=True, capture_output=True, timeout=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--drama", type=Path, default=REPO / "examples" / "xianxia")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fanren-diff-bench-") as temp:
        top = Path(temp)
        drama = top / "drama"
        shutil.copytree(args.drama, drama)
        (top / ".gitignore").write_text(".fanren-cache/\nout/\n", encoding="utf-8")
        build(drama)  # the warm-up: the first commit is rendered
        git(top, "init", "-q")
        git(top, "add", ".")
        git(top, "commit", "-q", "-m", "the drama")
        toml = drama / "drama.toml"
        text = ACTION.sub(lambda m: f"{m[1]}{m[2]}, slowly{m[3]}", toml.read_text(encoding="utf-8"), count=1)
        toml.write_text(NARRATION.sub(lambda m: f"{m[1]}{m[2]}…{m[3]}", text, count=1), encoding="utf-8")
        git(top, "commit", "-q", "-am", "one action, one narration line")
        command, review, page = [], [], []
        for run in range(args.runs):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "fanren", "diff", "HEAD~1", "HEAD", str(drama)], check=True,
                           capture_output=True, timeout=600)
            command.append(time.perf_counter() - started)
            print(json.dumps({"phase": "command", "run": run, "seconds": round(command[-1], 3)}), flush=True)
            started = time.perf_counter()
            with open_review(drama, "HEAD~1", "HEAD") as opened:
                review.append(time.perf_counter() - started)
                started = time.perf_counter()
                write_page(opened, top / "diff.html")
                page.append(time.perf_counter() - started)
                differ = len(opened.comparison.differences)
                nodes = len(opened.comparison.after)
            print(json.dumps({"phase": "review", "run": run, "seconds": round(review[-1], 3),
                              "page_seconds": round(page[-1], 3), "nodes": nodes, "differ": differ}), flush=True)
        print(json.dumps({"phase": "summary", "drama": args.drama.name, "command_s": round(statistics.median(command), 3),
                          "review_s": round(statistics.median(review), 3),
                          "page_s": round(statistics.median(page), 3)}), flush=True)


if __name__ == "__main__":
    main()
