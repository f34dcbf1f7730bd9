"""Showing a build: rich progress bars on a terminal, plain lines otherwise (CI logs, pipes)."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Mapping
from typing import IO, Any

from .graph import Node
from .run import CACHED, FAILED, RAN, NodeResult
from .text import escape_controls


def markup_escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def make_reporter(stream: IO[str] | None = None, quiet: bool = False) -> Any:
    stream = stream or sys.stderr
    if quiet:
        from .run import SilentReporter

        return SilentReporter()
    if stream.isatty():
        return RichReporter(stream)
    return PlainReporter(stream)


class PlainReporter:
    """One line when a node starts running and one when it ends; nothing for cached nodes."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.lock = threading.Lock()
        self.total = 0
        self.finished = 0
        self.estimates: Mapping[str, float] = {}
        self.started = time.monotonic()

    def _say(self, text: str) -> None:
        with self.lock:
            print(text, file=self.stream, flush=True)

    def begin(self, stale: list[Node], estimates: Mapping[str, float]) -> None:
        self.total = len(stale)
        self.estimates = estimates
        self.started = time.monotonic()
        if stale:
            eta = sum(estimates.values())
            guess = f", about {_seconds(eta)} from earlier runs" if eta else ""
            self._say(f"{len(stale)} node(s) to build{guess}")

    def start(self, node: Node) -> None:
        self._say(f"  run     {node.id} [{node.engine}]")

    def progress(self, node: Node, fraction: float, message: str) -> None:
        return None

    def finish(self, result: NodeResult) -> None:
        with self.lock:
            self.finished += 1
            n = self.finished
        if result.status == RAN:
            self._say(f"  done    {result.node.id} {result.seconds:.1f}s  ({n}/{self.total})")
        elif result.status == FAILED:
            self._say(f"  FAILED  {result.node.id}: {escape_controls(result.error or '')}")
        elif result.status == CACHED:
            self._say(f"  cached  {result.node.id} (an input re-rendered into the same bytes)")

    def end(self) -> None:
        return None


class RichReporter:
    """A live table: overall bar with ETA, and a bar per running node (GPU steps show here)."""

    def __init__(self, stream: IO[str]) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        self.console = Console(file=stream)
        self.bars = Progress(TextColumn("{task.description}"), BarColumn(),
                             TextColumn("{task.fields[note]}"), TimeRemainingColumn(),
                             console=self.console, transient=False)
        self.tasks: dict[str, Any] = {}
        self.overall: Any = None
        self.lock = threading.Lock()
        self.estimates: Mapping[str, float] = {}

    def begin(self, stale: list[Node], estimates: Mapping[str, float]) -> None:
        self.estimates = estimates
        if not stale:
            return
        self.bars.start()
        # The overall bar advances by estimated seconds, so its ETA is the sum of what remains.
        total = sum(max(estimates.get(n.id, 0.0), 0.2) for n in stale)
        self.overall = self.bars.add_task(f"building {len(stale)} node(s)", total=total, note="")

    def start(self, node: Node) -> None:
        with self.lock:
            self.tasks[node.id] = self.bars.add_task(f"  {node.id} [dim]{node.engine}[/]", total=1.0, note="")

    def progress(self, node: Node, fraction: float, message: str) -> None:
        with self.lock:
            task = self.tasks.get(node.id)
        if task is not None:
            self.bars.update(task, completed=min(max(fraction, 0.0), 1.0), note=message[:40])

    def finish(self, result: NodeResult) -> None:
        with self.lock:
            task = self.tasks.pop(result.node.id, None)
        if task is not None:
            self.bars.remove_task(task)
        mark = {RAN: "[green]✓[/]", CACHED: "[blue]=[/]", FAILED: "[red]✗[/]"}.get(result.status, "-")
        if result.status in (RAN, FAILED, CACHED):
            # an error quotes ffmpeg, a server or the drama: "[/x]" in it is text, not rich markup
            extra = f" [red]{markup_escape(escape_controls(result.error))}[/]" if result.error else ""
            self.console.print(f"{mark} {result.node.id} [dim]{result.seconds:.1f}s[/]{extra}")
        if self.overall is not None:
            self.bars.advance(self.overall, max(self.estimates.get(result.node.id, 0.0), 0.2))

    def end(self) -> None:
        if self.overall is not None:
            self.bars.stop()


def _seconds(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"
