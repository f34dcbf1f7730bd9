"""The local executor: CPU nodes on a thread pool, GPU nodes on GPU slots with model affinity.

GPU slots are one in-process slot (the default: one GPU, engines in this process, shared with
`fanren watch` so they stay warm between builds) or one worker process per GPU (`--gpus`), or Ray
actors (ray_executor.py). Whatever the slots are, one `GpuQueue` decides which ready GPU job each
free slot takes:

- affinity: a slot keeps taking jobs of the family whose model it holds; it switches only when
  none of that family is ready, and only if no more is coming or another slot holds that model
  too (or no slot is busy, so nothing could become ready by waiting); a model a slot already
  unloaded is left to a slot that holds it. So each model loads at most once per GPU per build.
- longest first: among the jobs it may take, the one with the longest critical path (its own
  estimated seconds plus the longest chain after it) goes first, so the last GPU is not left
  running one long clip alone at the end.
"""

from __future__ import annotations

import contextlib
import pickle
import struct
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from ..engines import Engine, Request
from . import MAX_ATTEMPTS, Hooks, Job, Outcome, WorkerError, WorkerLost


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

    def loads(self) -> dict[str, int]:
        return {family: engine.loads for family, engine in self.engines.items() if engine.loads}


def run_engine(pool: EnginePool, family: str, node_id: str, kind: str, params: Mapping[str, Any],
               inputs: Mapping[str, Mapping[str, Path]], sources: Mapping[str, Path], out_dir: Path,
               progress: Callable[[float, str], None]) -> dict[str, Path]:
    """Load (if needed) and run the engine of `family` on one request: what every executor does."""
    engine = pool.get(family)
    request = Request(node_id=node_id, kind=kind, params=params, inputs=inputs, sources=sources,
                      out_dir=out_dir, progress=progress)
    return dict(engine.run(request))


def engine_specs(engines: Mapping[str, Engine]) -> dict[str, tuple[str, dict[str, Any]]]:
    """How to make the same engines in another process: family → ("module:Class", options)."""
    return {family: (f"{type(e).__module__}:{type(e).__qualname__}", dict(e.options))
            for family, e in engines.items()}


def build_engines(specs: Mapping[str, tuple[str, Mapping[str, Any]]]) -> dict[str, Engine]:
    import importlib

    out = {}
    for family, (target, options) in specs.items():
        module, _, name = target.partition(":")
        out[family] = getattr(importlib.import_module(module), name)(dict(options))
    return out


# ── which GPU job a free slot takes ──────────────────────────────────────────


class GpuQueue:
    def __init__(self, slots: int, pending: Callable[[str], int]) -> None:
        self.cond = threading.Condition()
        self.jobs: list[Job] = []
        self.pending = pending
        self.holding: list[str | None] = [None] * slots   # the family whose model each slot holds
        self.used: list[set[str]] = [set() for _ in range(slots)]  # every family a slot has loaded
        self.busy = [False] * slots
        self.closed = False

    def put(self, job: Job) -> None:
        with self.cond:
            self.jobs.append(job)
            self.cond.notify_all()

    def drop(self) -> list[Job]:
        with self.cond:
            dropped, self.jobs = self.jobs, []
            return dropped

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def take(self, slot: int) -> Job | None:
        """The next job for `slot`; waits while none suits it; None once closed and empty."""
        with self.cond:
            while True:
                job = self._pick(slot)
                if job is not None:
                    self.jobs.remove(job)
                    self.busy[slot] = True
                    family = job.node.family
                    self.holding[slot] = family
                    self.used[slot].add(family)
                    return job
                if self.closed and not self.jobs:
                    return None
                self.cond.wait(timeout=1.0)

    def done(self, slot: int) -> None:
        with self.cond:
            self.busy[slot] = False
            self.cond.notify_all()

    def reset(self, slot: int) -> None:
        """The slot's worker was replaced: it holds nothing now."""
        with self.cond:
            self.holding[slot] = None
            self.busy[slot] = False
            self.cond.notify_all()

    def _pick(self, slot: int) -> Job | None:
        if not self.jobs:
            return None
        current = self.holding[slot]
        mine = [j for j in self.jobs if j.node.family == current]
        if mine:
            return max(mine, key=_order)
        others = [s for s in range(len(self.holding)) if s != slot]
        if current is not None and self.pending(current) > 0 \
                and not any(self.holding[s] == current for s in others) and any(self.busy):
            return None  # more of this model's work is coming and no other GPU holds it: wait for it
        fresh = [j for j in self.jobs if j.node.family not in self.used[slot]
                 or not any(self.holding[s] == j.node.family for s in others)]
        if not fresh:
            return None  # what is ready is held by another slot, which reloads nothing to run it
        return max(fresh, key=lambda j: (j.node.family not in self.used[slot], _order(j)))


def _order(job: Job) -> tuple[float, int]:
    return (job.priority, -job.attempt)


# ── GPU slots ────────────────────────────────────────────────────────────────


class Slots(Protocol):
    names: list[str]

    def open(self) -> None: ...
    def run(self, index: int, job: Job, progress: Callable[[float, str], None]) -> Mapping[str, Path]: ...
    def replace(self, index: int) -> None: ...
    def close(self) -> None: ...
    def loads(self, index: int) -> dict[str, int]: ...


class InProcessSlot:
    """One GPU, engines in this process (shared with the CPU side through one EnginePool)."""

    def __init__(self, pool: EnginePool) -> None:
        self.pool = pool
        self.names = ["gpu"]

    def open(self) -> None:
        return None

    def run(self, index: int, job: Job, progress: Callable[[float, str], None]) -> Mapping[str, Path]:
        n = job.node
        return run_engine(self.pool, n.family, n.id, n.kind, n.params, job.inputs, job.sources,
                          job.out_dir, progress)

    def replace(self, index: int) -> None:
        return None

    def close(self) -> None:
        return None

    def loads(self, index: int) -> dict[str, int]:
        return {f: e.loads for f, e in self.pool.engines.items() if e.resources().gpu and e.loads}


class ProcessSlots:
    """One worker process per GPU (`python -m fanren.executors.worker`), CUDA_VISIBLE_DEVICES set."""

    def __init__(self, engines: Mapping[str, Engine], devices: list[str], log_dir: Path | None = None,
                 fake: bool = False) -> None:
        self.specs = engine_specs(engines)
        self.devices = devices
        self.names = [f"gpu{d}" for d in devices]
        self.log_dir = log_dir
        self.fake = fake
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * len(devices)
        self._loads: list[dict[str, int]] = [{} for _ in devices]
        self._lock = threading.Lock()

    def open(self) -> None:
        for i in range(len(self.devices)):
            self._start(i)

    def _start(self, index: int) -> None:
        import os

        env = dict(os.environ)
        # A fake device runs the "GPU" engines on the CPU: no CUDA device is visible to it.
        env["CUDA_VISIBLE_DEVICES"] = "" if self.fake else self.devices[index]
        env["FANREN_WORKER"] = self.names[index]
        stderr: Any = subprocess.DEVNULL
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            stderr = open(self.log_dir / f"worker-{self.names[index]}.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen([sys.executable, "-m", "fanren.executors.worker"], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=stderr, env=env)
        if stderr is not subprocess.DEVNULL:
            stderr.close()
        assert proc.stdin is not None
        send(proc.stdin, ("engines", self.specs))
        self.procs[index] = proc

    def run(self, index: int, job: Job, progress: Callable[[float, str], None]) -> Mapping[str, Path]:
        proc = self.procs[index]
        assert proc is not None and proc.stdin is not None and proc.stdout is not None
        n = job.node
        try:
            send(proc.stdin, ("run", {"family": n.family, "node_id": n.id, "kind": n.kind,
                                      "params": dict(n.params),
                                      "inputs": {k: dict(v) for k, v in job.inputs.items()},
                                      "sources": dict(job.sources), "out_dir": job.out_dir}))
            while True:
                message = receive(proc.stdout)
                if message[0] == "progress":
                    progress(message[1], message[2])
                    continue
                _, reply = message
                with self._lock:
                    self._loads[index] = reply["loads"]
                if reply.get("error") is not None:
                    raise WorkerError(reply["error"], reply.get("trace", ""))
                return {name: Path(p) for name, p in reply["files"].items()}
        except (EOFError, OSError, pickle.UnpicklingError, struct.error) as exc:
            raise WorkerLost(f"worker {self.names[index]} died running {n.id} "
                             f"(exit code {proc.poll()})") from exc

    def replace(self, index: int) -> None:
        self._stop(index)
        self._start(index)

    def _stop(self, index: int) -> None:
        proc = self.procs[index]
        if proc is None:
            return
        with contextlib.suppress(OSError):
            assert proc.stdin is not None
            send(proc.stdin, ("exit", None))
            proc.stdin.close()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        self.procs[index] = None

    def close(self) -> None:
        for i in range(len(self.procs)):
            self._stop(i)

    def loads(self, index: int) -> dict[str, int]:
        with self._lock:
            return dict(self._loads[index])


# Messages between the scheduler and a worker process: a 4-byte length, then a pickle.
def send(stream: IO[bytes], message: Any) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(struct.pack("<I", len(data)) + data)
    stream.flush()


def receive(stream: IO[bytes]) -> Any:
    head = stream.read(4)
    if len(head) < 4:
        raise EOFError("the worker closed its pipe")
    (size,) = struct.unpack("<I", head)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("the worker closed its pipe mid-message")
    return pickle.loads(data)


# ── the executor ─────────────────────────────────────────────────────────────


@dataclass
class _WorkerStats:
    busy: float = 0.0
    nodes: list[str] = field(default_factory=list)
    lost: int = 0


class LocalExecutor:
    """CPU jobs on `jobs` threads of this process; GPU jobs on `gpu_slots` (default: one in-process)."""

    name = "local"

    def __init__(self, pool: EnginePool, jobs: int = 2, gpu_slots: Any = None,
                 gpu_families: set[str] | None = None) -> None:
        self.pool = pool
        # nodes of these families go to the GPU slots too (fake devices: GPU engines on the CPU)
        self.gpu_families = gpu_families or set()
        self.jobs = max(1, jobs)
        self.slots: Slots = gpu_slots if gpu_slots is not None else InProcessSlot(pool)
        self.hooks = Hooks()
        self.cpu_cond = threading.Condition()
        self.cpu_jobs: list[Job] = []
        self.closed = False
        self.gpu: GpuQueue | None = None
        self.threads: list[threading.Thread] = []
        self.worker_stats: dict[str, _WorkerStats] = {}
        self._stats_lock = threading.Lock()

    def open(self, hooks: Hooks) -> None:
        self.hooks = hooks
        self.closed = False
        self.slots.open()
        self.gpu = GpuQueue(len(self.slots.names), hooks.pending)
        for i in range(self.jobs):
            self.threads.append(threading.Thread(target=self._cpu_loop, args=(f"cpu{i}",),
                                                 name=f"fanren-cpu{i}", daemon=True))
        for i, name in enumerate(self.slots.names):
            self.threads.append(threading.Thread(target=self._gpu_loop, args=(i, name),
                                                 name=f"fanren-{name}", daemon=True))
        for thread in self.threads:
            thread.start()

    def submit(self, job: Job) -> None:
        if job.node.gpu or job.node.family in self.gpu_families:
            assert self.gpu is not None
            self.gpu.put(job)
        else:
            with self.cpu_cond:
                self.cpu_jobs.append(job)
                self.cpu_cond.notify()

    def drop_queued(self) -> list[Job]:
        with self.cpu_cond:
            dropped, self.cpu_jobs = self.cpu_jobs, []
        if self.gpu is not None:
            dropped += self.gpu.drop()
        return dropped

    def close(self) -> None:
        # Normally nothing is queued by now; after an interrupt (Ctrl-C) queued jobs are forgotten so
        # the threads can end once their current job does.
        self.drop_queued()
        with self.cpu_cond:
            self.closed = True
            self.cpu_cond.notify_all()
        if self.gpu is not None:
            self.gpu.close()
        for thread in self.threads:
            thread.join()
        self.threads = []
        self.slots.close()

    def stats(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        with self._stats_lock:
            for i, name in enumerate(self.slots.names):
                s = self.worker_stats.get(name, _WorkerStats())
                out[name] = {"loads": self.slots.loads(i), "busy": round(s.busy, 3), "nodes": list(s.nodes),
                             **({"lost": s.lost} if s.lost else {})}
        return out

    def _note(self, worker: str, job: Job, seconds: float, lost: bool = False) -> None:
        with self._stats_lock:
            s = self.worker_stats.setdefault(worker, _WorkerStats())
            s.busy += seconds
            if lost:
                s.lost += 1
            else:
                s.nodes.append(job.id)

    def _cpu_loop(self, name: str) -> None:
        while True:
            with self.cpu_cond:
                while not self.cpu_jobs and not self.closed:
                    self.cpu_cond.wait()
                if not self.cpu_jobs:
                    return
                job = max(self.cpu_jobs, key=_order)
                self.cpu_jobs.remove(job)
            self.hooks.started(job, name)
            started = time.monotonic()
            n = job.node
            try:
                files = run_engine(self.pool, n.family, n.id, n.kind, n.params, job.inputs, job.sources,
                                   job.out_dir, lambda f, m, job=job: self.hooks.progress(job, f, m))
                outcome = Outcome(job, files=files, seconds=time.monotonic() - started, worker=name)
            except BaseException as exc:  # noqa: BLE001 - reported as the node's failure
                outcome = Outcome(job, error=exc, trace=traceback.format_exc(),
                                  seconds=time.monotonic() - started, worker=name)
            self.hooks.finished(outcome)

    def _gpu_loop(self, index: int, name: str) -> None:
        assert self.gpu is not None
        while True:
            job = self.gpu.take(index)
            if job is None:
                return
            self.hooks.started(job, name)
            started = time.monotonic()
            try:
                files = self.slots.run(index, job, lambda f, m, job=job: self.hooks.progress(job, f, m))
                outcome = Outcome(job, files=files, seconds=time.monotonic() - started, worker=name)
            except WorkerLost as exc:
                self._note(name, job, time.monotonic() - started, lost=True)
                self._replace(index)
                if job.attempt < MAX_ATTEMPTS:  # costs this node only: it runs again, on any slot
                    job.attempt += 1
                    self.gpu.put(job)
                    continue
                outcome = Outcome(job, error=WorkerError(f"{exc}; it died {job.attempt} times, so the "
                                                         f"node itself is the likely cause"),
                                  seconds=time.monotonic() - started, worker=name)
                self.hooks.finished(outcome)
                continue
            except WorkerError as exc:
                outcome = Outcome(job, error=exc, trace=exc.trace,
                                  seconds=time.monotonic() - started, worker=name)
            except BaseException as exc:  # noqa: BLE001
                outcome = Outcome(job, error=exc, trace=traceback.format_exc(),
                                  seconds=time.monotonic() - started, worker=name)
            self._note(name, job, outcome.seconds)
            self.gpu.done(index)
            self.hooks.finished(outcome)

    def _replace(self, index: int) -> None:
        assert self.gpu is not None
        try:
            self.slots.replace(index)
        finally:
            self.gpu.reset(index)
