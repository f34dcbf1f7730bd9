"""Executors: what runs a ready node's engine. The scheduler (fanren/run.py) decides everything else.

The scheduler computes keys, does early cutoff, takes the per-key lock, makes a temp dir on the
cache's file system and hands the node to an executor as a `Job`. The executor runs the engine
somewhere and reports an `Outcome` through `Hooks.finished`: the files the engine wrote (inside
`job.out_dir`) or the error. The scheduler then commits (it is the cache's only writer), releases
the lock and feeds the nodes that became ready back in: a ready queue fed by completions, as in
ninja's builder.

Executors:

- `local` (default): CPU nodes on a thread pool, GPU nodes on one GPU in this process, grouped by
  engine so every model loads once per build (fanren/executors/local.py).
- `local` with `gpus`: one worker process per GPU (CUDA_VISIBLE_DEVICES set per worker), each
  keeping its engines loaded, with model affinity and longest-first order (local.py, worker.py).
- `ray`: GPU nodes on Ray actors with num_gpus=1 that keep their engines warm; inputs and outputs
  travel as bytes through Ray (fanren/executors/ray_executor.py; needs the `fanren[ray]` extra).

Nothing here imports ray, torch or an engine module: the plain command line stays fast.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..errors import FanrenError, UsageError
from ..graph import Node


@dataclass
class Job:
    """One node to run: its engine request, where its outputs go, and how urgent it is."""

    node: Node
    inputs: Mapping[str, Mapping[str, Path]]  # input node id → output name → object path
    sources: Mapping[str, Path]               # drama-relative path → file
    out_dir: Path                             # a fresh temp dir on the cache's file system
    priority: float = 0.0                     # critical-path seconds: the longest go first
    attempt: int = 1                          # > 1 after a worker died running it

    @property
    def id(self) -> str:
        return self.node.id


@dataclass
class Outcome:
    """What became of a job: the files it wrote (name → path inside out_dir) or its error."""

    job: Job
    files: Mapping[str, Path] | None = None
    error: BaseException | None = None
    trace: str = ""
    seconds: float = 0.0
    worker: str = ""


@dataclass
class Hooks:
    """How an executor talks back to the scheduler. Every call may come from any thread."""

    started: Callable[[Job, str], None] = lambda job, worker: None
    progress: Callable[[Job, float, str], None] = lambda job, fraction, message: None
    finished: Callable[[Outcome], None] = lambda outcome: None
    # Stale nodes of an engine family not handed over yet (still waiting for inputs): a GPU worker
    # keeps its model while more of its kind is coming.
    pending: Callable[[str], int] = lambda family: 0


class Executor(Protocol):
    name: str

    def open(self, hooks: Hooks) -> None:
        """Get ready to take jobs (start workers; engines load lazily, on a worker's first job)."""

    def submit(self, job: Job) -> None:
        """Queue a job. Returns at once; its outcome comes through hooks.finished."""

    def drop_queued(self) -> list[Job]:
        """Forget the jobs not started yet and return them (the build stopped: they are skipped)."""

    def close(self) -> None:
        """Stop the workers this executor started (after every submitted job has finished)."""

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per worker: model loads by family, busy seconds, the nodes it ran (report.json, benches)."""


class WorkerError(FanrenError):
    """An engine failed in another process or on another machine; its message came back as text."""

    def __init__(self, message: str, trace: str = "") -> None:
        super().__init__(message)
        self.trace = trace


class WorkerLost(Exception):
    """The worker process or actor died while it held a job (the job is re-run elsewhere)."""


# How many times a job is started before a worker death is blamed on the job itself.
MAX_ATTEMPTS = 3


@dataclass
class ExecutorOptions:
    """What `fanren build` was asked for: --executor, --gpus, --address."""

    kind: str = "local"                 # local | ray
    gpus: str | None = None             # None: one GPU in-process; "all" or "0,1,...": worker per GPU
    address: str | None = None          # a Ray cluster (ray only)
    extra: dict[str, Any] = field(default_factory=dict)


def parse_gpus(spec: str | None) -> list[str] | None:
    """The device ids `--gpus` names: None (in-process), or a list like ["0", "1"].

    `all` asks `nvidia-smi` (or CUDA_VISIBLE_DEVICES). With FANREN_FAKE_GPUS=N set, devices are fake:
    each worker runs its "GPU" engines on the CPU (to test the multi-GPU logic on any machine), and
    `all` means N of them.
    """
    if spec is None:
        return None
    spec = spec.strip()
    fake = fake_gpus()
    if spec == "all":
        if fake is not None:
            return [str(i) for i in range(fake)]
        found = visible_gpus()
        if not found:
            raise UsageError("--gpus all: no NVIDIA GPU found (nvidia-smi lists none); "
                             "set FANREN_FAKE_GPUS=2 to try the multi-GPU executor on the CPU")
        return found
    ids = [part.strip() for part in spec.split(",") if part.strip()]
    if not ids or not all(i.isdigit() for i in ids) or len(set(ids)) != len(ids):
        raise UsageError(f"--gpus: expected all or GPU indices like 0,1 (no repeats), got {spec!r}")
    if fake is None:
        found = visible_gpus()
        missing = [i for i in ids if i not in found]
        if missing:
            raise UsageError(f"--gpus {spec}: no GPU {', '.join(missing)} on this machine "
                             f"(found: {', '.join(found) or 'none'}; FANREN_FAKE_GPUS=N fakes them)")
    return ids


def fake_gpus() -> int | None:
    raw = os.environ.get("FANREN_FAKE_GPUS", "").strip()
    if not raw:
        return None
    try:
        return max(1, int(raw))
    except ValueError:
        return 2


def visible_gpus() -> list[str]:
    """GPU indices this process may use: CUDA_VISIBLE_DEVICES if set, else what nvidia-smi lists."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [d.strip() for d in env.split(",") if d.strip() and d.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip().isdigit()]


def make_executor(options: ExecutorOptions, engines: Mapping[str, Any], jobs: int,
                  log_dir: Path | None = None) -> Executor:
    """The executor `options` ask for, over `engines` (an EnginePool's engines by family)."""
    from .local import EnginePool, LocalExecutor, ProcessSlots

    pool = engines if isinstance(engines, EnginePool) else EnginePool(engines)
    families = gpu_families(pool.engines, fake=fake_gpus() is not None)
    if options.kind == "local":
        devices = parse_gpus(options.gpus)
        if options.address:
            raise UsageError("--address is for --executor ray")
        if devices is None:
            return LocalExecutor(pool, jobs)
        slots = ProcessSlots({f: pool.engines[f] for f in families}, devices, log_dir=log_dir,
                             fake=fake_gpus() is not None)
        return LocalExecutor(pool, jobs, gpu_slots=slots, gpu_families=families)
    if options.kind == "ray":
        from .ray_executor import RayExecutor

        return RayExecutor(pool, jobs, address=options.address, gpus=options.gpus, gpu_families=families)
    raise UsageError(f"--executor: expected local or ray, got {options.kind!r}")


def gpu_families(engines: Mapping[str, Any], fake: bool = False) -> set[str]:
    """Families whose nodes go to GPU workers: engines that ask for a GPU; with fake devices also the
    device engines (flux, cogvideox, svd) that fall back to the CPU on a machine without CUDA."""
    return {family for family, engine in engines.items()
            if engine.resources().gpu or (fake and hasattr(engine, "device_option"))}
