"""How fast `fanren watch` answers a save, and whether its memory stays flat over many saves.

    python bench/watch_bench.py                      examples/xianxia, draft profile
    python bench/watch_bench.py --drama examples/english --edits 30 --runs 3

The drama is copied to a temp dir and built once (the warm-up, not measured). Then a watch session
runs in this process, with the live page served and one Server-Sent Events client reading it, as a
browser would. Prints JSON lines:

    {"phase": "save", ...}    one per timed save of one narration line: ms from the save to the
                              watcher noticing it, to the plan, to the first stale node starting;
                              s to the new episode.mp4 in out/; the seconds of each node that ran
    {"phase": "memory", ...}  RSS of this process after every 10th save
    {"phase": "summary", ...} medians, and the RSS growth from save 10 to the last

The memory saves cycle one narration line through 4 texts: the first 4 render, the rest find every
node in the cache (plan, early cutoff, export, page update) — what a long session mostly does.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import tempfile
import threading
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from fanren.build import build
from fanren.cache import digest_file
from fanren.graph import Node
from fanren.live import LiveServer
from fanren.run import NodeResult
from fanren.watch import DEBOUNCE_SECONDS, Outcome, WatchSession

REPO = Path(__file__).resolve().parent.parent
NARRATION = re.compile(r'^(narration = ")([^"]*)(")', re.MULTILINE)
WAIT = 1800.0


class Stopwatch:
    """A reporter that notes when each node starts."""

    def __init__(self) -> None:
        self.starts: list[tuple[float, str]] = []
        self.lock = threading.Lock()

    def begin(self, stale: list[Node], estimates: Mapping[str, float]) -> None: ...
    def progress(self, node: Node, fraction: float, message: str) -> None: ...
    def finish(self, result: NodeResult) -> None: ...
    def end(self) -> None: ...

    def start(self, node: Node) -> None:
        with self.lock:
            self.starts.append((time.monotonic(), node.id))

    def first_after(self, moment: float) -> tuple[float, str] | None:
        with self.lock:
            return next(((t, n) for t, n in self.starts if t >= moment), None)


def rss_mb() -> float:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6


def say_narration(drama: Path, text: str) -> float:
    """Replace the first narration line's text; returns time.monotonic() just before the write."""
    file = drama / "drama.toml"
    toml = file.read_text(encoding="utf-8")
    changed, count = NARRATION.subn(lambda m: m.group(1) + text + m.group(3), toml, count=1)
    if count != 1:
        raise SystemExit(f"{file} has no `narration = \"...\"` line to edit")
    saved = time.monotonic()
    file.write_text(changed, encoding="utf-8")
    return saved


def next_outcome(session: WatchSession, count: int) -> tuple[Outcome, float]:
    deadline = time.monotonic() + WAIT
    while session.rebuilds < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"no rebuild #{count} after {WAIT:.0f} s")
        time.sleep(0.002)
    done = time.monotonic()
    outcome = session.outcomes[-1]
    if outcome.error is not None:
        raise SystemExit(outcome.error.show())
    return outcome, done


def listen(url: str, events: list[int]) -> None:
    """An SSE client, as a browser tab: reads every state the page would get."""
    try:
        with urllib.request.urlopen(url + "events", timeout=3600) as stream:
            for line in stream:
                if line.startswith(b"data: "):
                    events[0] += 1
    except OSError:
        return


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--drama", type=Path, default=REPO / "examples" / "xianxia")
    parser.add_argument("--profile", default="draft")
    parser.add_argument("--runs", type=int, default=3, help="timed saves of one narration line")
    parser.add_argument("--edits", type=int, default=100, help="saves for the memory measurement")
    parser.add_argument("--debounce", type=float, default=DEBOUNCE_SECONDS)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="fanren-watch-bench-") as tmp:
        drama = Path(tmp) / args.drama.name
        shutil.copytree(args.drama, drama, ignore=shutil.ignore_patterns("out", ".fanren-cache", "drama.lock"))
        started = time.monotonic()
        build(drama, args.profile)
        print(json.dumps({"phase": "warm-up", "drama": args.drama.name, "profile": args.profile,
                          "seconds": round(time.monotonic() - started, 1)}), flush=True)

        stopwatch = Stopwatch()
        session = WatchSession(drama, args.profile, debounce=args.debounce, reporters=[stopwatch])
        server = LiveServer(session.board, drama)
        server.start()
        events = [0]
        threading.Thread(target=listen, args=(server.url, events), daemon=True).start()
        session.start()
        try:
            next_outcome(session, 1)
            saves = timed_saves(session, drama, stopwatch, args.runs, args.debounce, args.profile)
            memory = memory_over_saves(session, drama, args.edits)
        finally:
            session.stop()
            server.close()
        print(json.dumps({
            "phase": "summary", "drama": args.drama.name, "debounce_ms": round(args.debounce * 1000),
            "save_to_first_node_ms_median": statistics.median(s["save_to_first_node_ms"] for s in saves),
            "save_to_episode_s_median": statistics.median(s["save_to_episode_s"] for s in saves),
            "edits": args.edits, "rss_mb_after_10": memory.get(10), "rss_mb_last": memory[args.edits],
            "rss_growth_mb_10_to_last": round(memory[args.edits] - memory.get(10, memory[args.edits]), 1),
            "page_events": events[0],
        }), flush=True)


def timed_saves(session: WatchSession, drama: Path, stopwatch: Stopwatch, runs: int, debounce: float,
                profile: str) -> list[dict[str, float]]:
    episode = drama / "out" / profile / "episode.mp4"
    saves: list[dict[str, float]] = []
    for run in range(runs):
        before = digest_file(episode)
        # A new text every run, even with a cache shared between runs (FANREN_CACHE_DIR).
        saved = say_narration(drama, f"灯火第{run + 1}次亮起，照见山门。{os.getpid()}")
        outcome, done = next_outcome(session, session.rebuilds + 1)
        first = stopwatch.first_after(saved)
        if first is None or digest_file(episode) == before or outcome.result is None:
            raise SystemExit("the save rendered nothing new")
        line = {"phase": "save", "run": run + 1,
                "save_to_notice_ms": round((outcome.noticed_at - saved) * 1000, 1),
                "save_to_plan_ms": round((outcome.planned_at - saved) * 1000, 1),
                "save_to_first_node_ms": round((first[0] - saved) * 1000, 1), "first_node": first[1],
                "save_to_episode_s": round(done - saved, 2),
                "ran": {n: round(r.seconds, 2) for n, r in outcome.result.results.items() if r.status == "ran"}}
        print(json.dumps(line, ensure_ascii=False), flush=True)
        saves.append(line)  # type: ignore[arg-type]
    return saves


def memory_over_saves(session: WatchSession, drama: Path, edits: int) -> dict[int, float]:
    texts = ["夜深了。", "灯还亮着。", "风从山门吹来。", "他没有回头。"]
    memory: dict[int, float] = {0: round(rss_mb(), 1)}
    print(json.dumps({"phase": "memory", "edit": 0, "rss_mb": memory[0]}), flush=True)
    for edit in range(1, edits + 1):
        say_narration(drama, texts[edit % len(texts)])
        next_outcome(session, session.rebuilds + 1)
        if edit % 10 == 0 or edit == edits:
            memory[edit] = round(rss_mb(), 1)
            print(json.dumps({"phase": "memory", "edit": edit, "rss_mb": memory[edit]}), flush=True)
    return memory


if __name__ == "__main__":
    main()
