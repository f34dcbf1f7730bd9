"""The scheduler: a ready queue fed by completions, in dependency order; executors run the engines.

- A node becomes ready when its last input resolves. Its key is computed then, from its inputs'
  output digests; if the cache already holds that key (an upstream re-run gave identical bytes) it
  is `cached` without running: early cutoff.
- Around the expensive work a per-key lock is taken and the cache re-checked, so two processes
  sharing a cache never render the same key twice at once.
- The node then goes to an executor (fanren/executors/): by default CPU nodes on `jobs` threads and
  GPU nodes on one GPU of this process, grouped by engine so every model loads once per build;
  or one worker process per GPU; or Ray actors. The executor reports back, the scheduler commits:
  the cache has one writer.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import queue
import shutil
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .cache import ActionRecord, Cache, digest_bytes
from .errors import FanrenError
from .executors import Executor, Hooks, Job, Outcome
from .executors.local import EnginePool, LocalExecutor
from .graph import Graph, Node, local_id
from .plan import Decision, key_fields, key_of, source_digests

__all__ = ["CACHED", "FAILED", "RAN", "SKIPPED", "EnginePool", "NodeResult", "Reporter", "SilentReporter",
           "run_graph"]

log = logging.getLogger("fanren")

RAN, CACHED, FAILED, SKIPPED = "ran", "cached", "failed", "skipped"


@dataclass
class NodeResult:
    node: Node
    status: str
    seconds: float = 0.0
    record: ActionRecord | None = None
    error: str | None = None
    log: Path | None = None
    fatal: bool = False  # the build cannot go on (the cache's disk is full), even with --keep-going


class Reporter(Protocol):
    """What the scheduler tells whoever shows progress. Called from worker threads."""

    def begin(self, stale: list[Node], estimates: Mapping[str, float]) -> None: ...
    def start(self, node: Node) -> None: ...
    def progress(self, node: Node, fraction: float, message: str) -> None: ...
    def finish(self, result: NodeResult) -> None: ...
    def end(self) -> None: ...


class SilentReporter:
    def begin(self, stale: list[Node], estimates: Mapping[str, float]) -> None: ...
    def start(self, node: Node) -> None: ...
    def progress(self, node: Node, fraction: float, message: str) -> None: ...
    def finish(self, result: NodeResult) -> None: ...
    def end(self) -> None: ...


def estimate_key(node: Node) -> str:
    return f"{node.engine}/{node.kind}"


# What a node of each kind costs before any build has been timed (seconds on one GPU / CPU core):
# only the order matters, for longest-first.
DEFAULT_SECONDS = {"clip": 60.0, "keyframe": 15.0, "character": 15.0, "line": 2.0, "shot": 2.0,
                   "subtitles": 0.5, "episode": 5.0, "storyboard": 0.5}


def node_timing_key(node: Node) -> str:
    return f"{estimate_key(node)}/{node.id}"


def estimate(node: Node, timings: Mapping[str, float]) -> float:
    """Seconds `node` should take: its own last run, else its kind's average, else a default."""
    own = timings.get(node_timing_key(node))
    if own is not None:
        return own
    return timings.get(estimate_key(node), DEFAULT_SECONDS.get(node.kind, 1.0))


def critical_paths(graph: Graph, timings: Mapping[str, float]) -> dict[str, float]:
    """For each node, its estimate plus the longest chain of estimates after it (ninja's priority)."""
    dependents = graph.dependents()
    out: dict[str, float] = {}
    for node in reversed(list(graph.topological())):
        out[node.id] = estimate(node, timings) + max((out[d] for d in dependents[node.id]), default=0.0)
    return out


@dataclass
class _Running:
    """A node handed to the executor: its key, the lock held on it, its temp dir."""

    node: Node
    key: str
    fields: dict[str, object]
    lock: contextlib.ExitStack
    tmp: Path
    started: float


def run_graph(graph: Graph, decisions: list[Decision], engines: EnginePool | None, cache: Cache, root: Path,
              jobs: int = 2, keep_going: bool = False, reporter: Reporter | None = None,
              cancelled: Callable[[], bool] = lambda: False,
              executor: Executor | None = None) -> dict[str, NodeResult]:
    """Run every stale node; return a result for every node of the graph.

    A ready queue fed by completions: a node is handed to the executor when its last input resolves.
    Engines stay loaded in `engines` afterwards: whoever made the pool unloads it.
    """
    return _Scheduler(graph, decisions, engines, cache, root, jobs, keep_going, reporter or SilentReporter(),
                      cancelled, executor).run()


class _Scheduler:
    def __init__(self, graph: Graph, decisions: list[Decision], engines: EnginePool | None, cache: Cache,
                 root: Path, jobs: int, keep_going: bool, reporter: Reporter, cancelled: Callable[[], bool],
                 executor: Executor | None) -> None:
        self.graph, self.cache, self.root = graph, cache, root
        self.keep_going, self.reporter, self.cancelled = keep_going, reporter, cancelled
        if executor is None:
            assert engines is not None
            executor = LocalExecutor(engines, jobs)
        self.executor = executor
        self.results: dict[str, NodeResult] = {}
        self.outputs: dict[str, ActionRecord] = {}
        self.stale: dict[str, Node] = {}
        for decision in decisions:
            if decision.stale:
                self.stale[decision.node.id] = decision.node
            else:
                assert decision.record is not None
                self.results[decision.node.id] = NodeResult(decision.node, CACHED, record=decision.record)
                self.outputs[decision.node.id] = decision.record
        # only a node that runs needs its dependents and its priority: a no-op of 7,387 nodes skips
        # walking the graph twice for them (about 25 ms)
        self.dependents = graph.dependents() if self.stale else {}
        # inputs each stale node still waits for
        self.missing = {nid: sum(1 for i in n.inputs if i not in self.outputs) for nid, n in self.stale.items()}
        self.ready: deque[Node] = deque(n for nid, n in self.stale.items() if self.missing[nid] == 0)
        self.unsubmitted: dict[str, int] = {}  # family → stale nodes not handed to the executor yet
        for node in self.stale.values():
            self.unsubmitted[node.family] = self.unsubmitted.get(node.family, 0) + 1
        self.left: set[str] = set()
        self.running: dict[str, _Running] = {}
        self.lock_waits = 0
        self.events: queue.Queue[tuple[str, object]] = queue.Queue()
        self.stopped = False
        self.timings = cache.load_timings()
        self.timings_before = dict(self.timings)
        self.priority = critical_paths(graph, self.timings) if self.stale else {}

    # ── the loop ─────────────────────────────────────────────────────────────

    def run(self) -> dict[str, NodeResult]:
        waiting = list(self.stale.values())
        self.reporter.begin(waiting, {n.id: self.timings.get(estimate_key(n), 0.0) for n in waiting})
        hooks = Hooks(started=lambda job, worker: self.reporter.start(job.node),
                      progress=lambda job, fraction, message: self.reporter.progress(job.node, fraction, message),
                      finished=lambda outcome: self.events.put(("done", outcome)),
                      pending=lambda family: self.unsubmitted.get(family, 0))
        if self.stale:
            self.executor.open(hooks)
        try:
            while True:
                if not self.stopped and self.cancelled():
                    self._stop()
                while self.ready and not self.stopped:
                    self._start(self.ready.popleft())
                if not self.running and not self.lock_waits and (self.stopped or not self.ready):
                    break
                try:
                    kind, payload = self.events.get(timeout=0.25)  # the timeout only polls `cancelled`
                except queue.Empty:
                    continue
                if kind == "done":
                    assert isinstance(payload, Outcome)
                    self._finish(payload)
                elif kind == "locked":
                    self.lock_waits -= 1
                    self._locked(*payload)  # type: ignore[misc]
        finally:
            if self.stale:
                self.executor.close()
        for node in self.stale.values():  # what never got to run (the build stopped)
            self.results.setdefault(node.id, NodeResult(node, SKIPPED, error="build stopped"))
        try:
            if self.timings != self.timings_before:  # a no-op build writes (and fsyncs) nothing here
                self.cache.save_timings(self.timings)
        except OSError as exc:  # ETAs only: a full disk must not turn the build's result into a traceback
            log.warning("could not save timings.json: %s", exc)
        self.reporter.end()
        return self.results

    def _stop(self) -> None:
        self.stopped = True
        for job in self.executor.drop_queued():  # handed over but not started: skipped, lock released
            running = self.running.pop(job.id)
            self._release(running)
            self.results[job.id] = NodeResult(job.node, SKIPPED, error="build stopped")

    # ── a node's life: ready → key → (cached | locked → submitted → finished) ──

    def _start(self, node: Node) -> None:
        started = time.monotonic()
        try:
            fields = key_fields(node, {i: self.outputs[i].outputs for i in node.inputs},
                                source_digests(node, self.root, self.cache))
            key = key_of(fields)
            record = self.cache.lookup(key)
            if record is not None:  # early cutoff: an input re-ran into the bytes we already had
                self._done(NodeResult(node, CACHED, record=record))
                return
            lock = contextlib.ExitStack()
            if lock.enter_context(self.cache.lock(f"keys/{key}", blocking=False)):
                self._locked(node, key, fields, lock, started)
                return
            lock.close()
        except Exception as exc:  # noqa: BLE001 - a node's failure, never the scheduler's
            self._done(failure(node, exc, self.cache, time.monotonic() - started))
            return
        # Another process renders this key: wait for its lock off the loop, then find its result.
        self.lock_waits += 1
        threading.Thread(target=self._wait_lock, args=(node, key, fields, started), daemon=True,
                         name="fanren-lock").start()

    def _wait_lock(self, node: Node, key: str, fields: dict[str, object], started: float) -> None:
        lock = contextlib.ExitStack()
        try:
            lock.enter_context(self.cache.lock(f"keys/{key}"))
        except BaseException:  # noqa: BLE001 - reported when the loop re-checks the cache
            lock.close()
        self.events.put(("locked", (node, key, fields, lock, started)))

    def _locked(self, node: Node, key: str, fields: dict[str, object], lock: contextlib.ExitStack,
                started: float) -> None:
        try:
            record = self.cache.lookup(key)  # another process may have finished it while we waited
            if record is not None:
                lock.close()
                self._done(NodeResult(node, CACHED, record=record))
                return
            if self.stopped:
                lock.close()
                self._resolve(node, NodeResult(node, SKIPPED, error="build stopped"))
                return
            tmp = self.cache.new_tmp()
            job = Job(node=node,
                      inputs=input_files(node, self.outputs, self.cache),
                      sources={s: self.root / s for s in node.sources}, out_dir=tmp,
                      priority=self.priority.get(node.id, 0.0))
        except Exception as exc:  # noqa: BLE001
            lock.close()
            self._done(failure(node, exc, self.cache, time.monotonic() - started))
            return
        self.running[node.id] = _Running(node, key, fields, lock, tmp, started)
        self._leave(node)
        self.executor.submit(job)

    def _finish(self, outcome: Outcome) -> None:
        running = self.running.pop(outcome.job.id, None)
        if running is None:
            return  # dropped when the build stopped, after it had already started: nothing to do
        node = running.node
        # the engine's own time, not the time the job waited in the executor's queue: reports, gc's
        # cost of recomputing and the ETAs all mean the work
        seconds = outcome.seconds or (time.monotonic() - running.started)
        try:
            if outcome.error is not None:
                result = failure(node, outcome.error, self.cache, seconds, trace=outcome.trace or None)
            else:
                assert outcome.files is not None
                record = self.cache.commit(running.key, node.id, node.kind, node.engine, running.fields,
                                           dict(outcome.files), seconds)
                result = NodeResult(node, RAN, seconds=seconds, record=record)
        except Exception as exc:  # noqa: BLE001 - a commit that fails (invalid output, full disk)
            result = failure(node, exc, self.cache, seconds)
        finally:
            self._release(running)
        if result.status == RAN:
            for k, value in ((estimate_key(node), outcome.seconds), (node_timing_key(node), outcome.seconds)):
                self.timings[k] = round(value if k not in self.timings else
                                        0.5 * self.timings[k] + 0.5 * value, 3)
        self._done(result)

    def _release(self, running: _Running) -> None:
        with contextlib.suppress(Exception):
            running.lock.close()
        shutil.rmtree(running.tmp, ignore_errors=True)

    def _done(self, result: NodeResult) -> None:
        """A node ran, failed or was found cached: record it, tell the reporter, free what waits."""
        self._resolve(result.node, result)
        self.reporter.finish(result)
        if result.status == FAILED and (result.fatal or not self.keep_going) and not self.stopped:
            self._stop()

    def _leave(self, node: Node) -> None:
        """`node` is no longer pending for its family: handed to the executor, or resolved."""
        if node.id in self.stale and node.id not in self.left:
            self.left.add(node.id)
            self.unsubmitted[node.family] -= 1

    def _resolve(self, node: Node, result: NodeResult) -> None:
        self.results[node.id] = result
        self._leave(node)
        if result.record is not None:
            self.outputs[node.id] = result.record
            for dep in self.dependents.get(node.id, ()):
                if dep in self.missing:
                    self.missing[dep] -= 1
                    if self.missing[dep] == 0 and dep not in self.results:
                        self.ready.append(self.stale[dep])
        elif result.status in (FAILED, SKIPPED):
            for dep in self.dependents.get(node.id, ()):
                if dep in self.stale and dep not in self.results:
                    self._resolve(self.stale[dep], NodeResult(self.stale[dep], SKIPPED,
                                                              error=f"input {node.id} did not build"))


def input_files(node: Node, records: Mapping[str, ActionRecord], cache: Cache) -> dict[str, dict[str, Path]]:
    """The files `node` reads from its inputs (input id → output name → object path), each checked
    to still have its recorded size (Cache.object_for_use). Inputs are named by their id within
    the episode (`keyframe:s1`, not `ep01/keyframe:s1`): an engine never sees the series."""
    return {local_id(i): {name: cache.object_for_use(records[i], name)
                          for name in node.read_outputs(i, records[i].outputs)}
            for i in node.inputs}


# Log file names are bounded: a node id can be longer than a file name may be (255 bytes).
LOG_NAME_BYTES = 200


def log_file(cache: Cache, node_id: str) -> Path:
    """Where the log of `node_id` goes: its id, cut to LOG_NAME_BYTES with a digest suffix if longer."""
    raw = node_id.encode("utf-8")
    if len(raw) > LOG_NAME_BYTES:
        node_id = raw[: LOG_NAME_BYTES - 17].decode("utf-8", "ignore") + "-" + digest_bytes(raw)[:16]
    return cache.log_path(node_id)


def disk_full(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) says the disk is full or a file may grow no larger."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            return True
        if "No space left on device" in str(current):  # a tool's stderr quoted in an EngineError
            return True
        current = current.__cause__ or current.__context__
    return False


def cache_disk_full(cache: Cache) -> bool:
    """Whether the cache's file system is (all but) full: a tool that ran out of space may only say
    that its output is cut short ("moov atom not found"), and it is the disk that failed it."""
    try:
        usage = shutil.disk_usage(cache.root)
    except OSError:
        return False
    return usage.free < min(1 << 20, usage.total // 50)


def failure(node: Node, exc: BaseException, cache: Cache, seconds: float, trace: str | None = None) -> NodeResult:
    """The FAILED result of `node`, its log written if it can be. Never raises."""
    try:
        message = str(exc) if isinstance(exc, FanrenError) else f"{type(exc).__name__}: {exc}"
        first_line = message.strip().splitlines()[0] if message.strip() else type(exc).__name__
        fatal = disk_full(exc) or cache_disk_full(cache)
        if fatal:
            first_line = (f"no space left on the disk of the cache ({cache.root}) while rendering or "
                          f"storing this node ({first_line}); free some space (`fanren gc --max-size`) "
                          f"and build again")
        trace = trace if trace is not None else "".join(traceback.format_exception(exc))
        written: Path | None = None
        try:
            path = log_file(cache, node.id)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"node {node.id} ({node.engine})\n\n{message}\n\n{trace}", encoding="utf-8")
            written = path
        except OSError as log_exc:  # the failure is still reported; only its log is lost
            log.warning("could not write the log of %s: %s", node.id, log_exc)
            written = None
        return NodeResult(node, FAILED, seconds=seconds, error=first_line, log=written, fatal=fatal)
    except Exception as inner:  # noqa: BLE001 - the error path must end in a result, whatever happens
        return NodeResult(node, FAILED, seconds=seconds, error=f"{type(exc).__name__} ({inner})")
