"""The scheduler: runs stale nodes in dependency order, GPU work grouped by engine, CPU work beside it.

- A node runs once all its inputs are resolved. Its key is computed then, from its inputs' output
  digests; if the cache already holds that key (an upstream re-run gave identical bytes) it is
  `cached` without running: early cutoff.
- Around the expensive work a per-key lock is taken and the cache re-checked, so two processes
  sharing a cache never render the same key twice at once.
- GPU nodes go to one worker that prefers the engine already loaded, so every model loads once per
  build (all character sheets, then keyframes, then clips) and is unloaded before the next loads.
- CPU nodes (speech, mux) run on a thread pool of `jobs` workers beside the GPU worker.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from .cache import ActionRecord, Cache
from .engines import Engine, Request
from .errors import FanrenError
from .graph import Graph, Node
from .plan import Decision, key_fields, key_of, source_digests

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


@dataclass
class EnginePool:
    """Loaded engines, by family. CPU engines load once and stay; GPU engines load one at a time."""

    engines: Mapping[str, Engine]
    _loaded: set[str] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, family: str) -> Engine:
        engine = self.engines[family]
        with self._lock:
            if family not in self._loaded:
                if engine.resources().gpu:
                    self._unload_gpu_except(family)
                engine.load()
                self._loaded.add(family)
        return engine

    def _unload_gpu_except(self, family: str) -> None:
        for other in list(self._loaded):
            if other != family and self.engines[other].resources().gpu:
                self.engines[other].unload()
                self._loaded.discard(other)

    def unload_all(self) -> None:
        with self._lock:
            for family in list(self._loaded):
                self.engines[family].unload()
            self._loaded.clear()


def estimate_key(node: Node) -> str:
    return f"{node.engine}/{node.kind}"


def run_graph(graph: Graph, decisions: list[Decision], engines: EnginePool, cache: Cache, root: Path,
              jobs: int = 2, keep_going: bool = False, reporter: Reporter | None = None,
              cancelled: Callable[[], bool] = lambda: False) -> dict[str, NodeResult]:
    """Run every stale node; return a result for every node of the graph.

    Engines stay loaded in `engines` afterwards: whoever made the pool unloads it.
    """
    reporter = reporter or SilentReporter()
    results: dict[str, NodeResult] = {}
    outputs: dict[str, ActionRecord] = {}
    waiting: list[Node] = []
    for decision in decisions:
        if decision.stale:
            waiting.append(decision.node)
        else:
            assert decision.record is not None
            results[decision.node.id] = NodeResult(decision.node, CACHED, record=decision.record)
            outputs[decision.node.id] = decision.record
    timings = cache.load_timings()
    timings_before = dict(timings)
    reporter.begin(waiting, {n.id: timings.get(estimate_key(n), 0.0) for n in waiting})

    done = threading.Condition()
    gpu_ready: list[Node] = []
    running: set[str] = set()
    state = {"stop": False, "finished": False}

    def execute(node: Node) -> None:
        result = _run_node(node, outputs, engines, cache, root, reporter)
        with done:
            results[node.id] = result
            running.discard(node.id)
            if result.record is not None:
                outputs[node.id] = result.record
            if result.status == RAN:
                k = estimate_key(node)
                timings[k] = round(result.seconds if k not in timings else
                                   0.5 * timings[k] + 0.5 * result.seconds, 3)
            if result.status == FAILED and not keep_going:
                state["stop"] = True
            done.notify_all()
        reporter.finish(result)

    def gpu_worker() -> None:
        current: str | None = None
        while True:
            with done:
                while not gpu_ready and not state["finished"]:
                    done.wait()
                if not gpu_ready:
                    return
                # Prefer the engine already loaded: each model loads once per build.
                pick = next((n for n in gpu_ready if n.family == current), gpu_ready[0])
                gpu_ready.remove(pick)
                current = pick.family
            execute(pick)

    gpu_thread = threading.Thread(target=gpu_worker, name="fanren-gpu", daemon=True)
    gpu_thread.start()
    with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="fanren-cpu") as pool, done:
        while True:
            blocked = [n for n in waiting
                       if any(results.get(i) is not None and results[i].status in (FAILED, SKIPPED)
                              for i in n.inputs)]
            for node in blocked:
                waiting.remove(node)
                bad = next(i for i in node.inputs if results.get(i) is not None
                           and results[i].status in (FAILED, SKIPPED))
                results[node.id] = NodeResult(node, SKIPPED, error=f"input {bad} did not build")
            if state["stop"] or cancelled():
                for node in waiting:
                    results[node.id] = NodeResult(node, SKIPPED, error="build stopped")
                waiting.clear()
                for node in gpu_ready:  # queued for the GPU but not started: skipped too
                    running.discard(node.id)
                    results[node.id] = NodeResult(node, SKIPPED, error="build stopped")
                gpu_ready.clear()
            ready = [n for n in waiting if all(i in outputs for i in n.inputs)]
            for node in ready:
                waiting.remove(node)
                running.add(node.id)
                if node.gpu:
                    gpu_ready.append(node)
                else:
                    pool.submit(execute, node)
            if ready:
                done.notify_all()
            if not waiting and not running and not gpu_ready:
                break
            done.wait(timeout=0.5)
        state["finished"] = True
        done.notify_all()
    gpu_thread.join()
    if timings != timings_before:  # a no-op build writes (and fsyncs) nothing here
        cache.save_timings(timings)
    reporter.end()
    return results


def _run_node(node: Node, outputs: Mapping[str, ActionRecord], engines: EnginePool, cache: Cache,
              root: Path, reporter: Reporter) -> NodeResult:
    started = time.monotonic()
    tmp: Path | None = None
    try:
        fields = key_fields(node, {i: outputs[i].outputs for i in node.inputs},
                            source_digests(node, root, cache))
        key = key_of(fields)
        record = cache.lookup(key)
        if record is not None:  # early cutoff: an input re-ran into the bytes we already had
            return NodeResult(node, CACHED, record=record)
        with cache.lock(f"keys/{key}"):
            record = cache.lookup(key)  # another process may have finished it while we waited
            if record is not None:
                return NodeResult(node, CACHED, record=record)
            reporter.start(node)
            engine = engines.get(node.family)
            tmp = cache.new_tmp()
            request = Request(
                node_id=node.id, kind=node.kind, params=node.params,
                inputs={i: {name: cache.object_path(o.digest)
                            for name, o in node.read_outputs(i, outputs[i].outputs).items()}
                        for i in node.inputs},
                sources={s: root / s for s in node.sources},
                out_dir=tmp,
                progress=lambda fraction, message: reporter.progress(node, fraction, message),
            )
            files = engine.run(request)
            record = cache.commit(key, node.id, node.kind, node.engine, fields, files,
                                  time.monotonic() - started)
        return NodeResult(node, RAN, seconds=time.monotonic() - started, record=record)
    except Exception as exc:  # a node's failure is reported with its log; the build goes on or stops
        log_file = cache.log_path(node.id)
        message = str(exc) if isinstance(exc, FanrenError) else f"{type(exc).__name__}: {exc}"
        log_file.write_text(f"node {node.id} ({node.engine})\n\n{message}\n\n{traceback.format_exc()}",
                            encoding="utf-8")
        first_line = message.strip().splitlines()[0] if message.strip() else type(exc).__name__
        return NodeResult(node, FAILED, seconds=time.monotonic() - started, error=first_line, log=log_file)
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
