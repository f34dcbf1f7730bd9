"""The Ray executor: GPU nodes on Ray actors (num_gpus=1) that keep their engines warm.

- One actor per GPU the cluster offers (or `--gpus N` / a list's length of them); each holds its
  engines between jobs. The same GpuQueue as the local executor routes a job to the actor that
  holds its model and hands out the longest work first.
- Inputs and outputs travel as bytes through Ray: an actor writes a job's inputs into a temp dir
  of its own machine, runs the engine and sends the output files back. No shared file system.
- CPU nodes (speech, mux) run here, on the local executor's threads: they read and write the
  cache directly.
- An actor that dies mid-node costs that node only: a new actor takes its place and the node runs
  again (on whichever actor is free first); what finished is already committed here.

Needs `pip install 'fanren[ray]'` here and fanren (same version) on every node of the cluster.
ray is imported only when this executor is used.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..errors import UsageError
from . import Job, WorkerError, WorkerLost, fake_gpus
from .local import EnginePool, LocalExecutor, build_engines, engine_specs, run_engine


def _ray() -> Any:
    try:
        import ray
    except ModuleNotFoundError:
        raise UsageError("--executor ray needs Ray: pip install 'fanren[ray]'") from None
    return ray


class RayWorker:
    """The actor: engines built from their specs, loaded on first use and kept."""

    def __init__(self, specs: Mapping[str, tuple[str, Mapping[str, Any]]], fault: str = "") -> None:
        if fault:
            os.environ["FANREN_TEST_WORKER_EXIT"] = fault
        os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
        self.pool = EnginePool(build_engines(specs))

    def run(self, payload: dict[str, Any]) -> dict[str, Any]:
        from .worker import describe, fault_injection

        started = time.monotonic()
        reply: dict[str, Any] = {}
        with tempfile.TemporaryDirectory(prefix="fanren-ray-") as tmp:
            root = Path(tmp)
            try:
                inputs: dict[str, dict[str, Path]] = {}
                for i, (node_id, files) in enumerate(payload["inputs"].items()):
                    inputs[node_id] = {}
                    for name, data in files.items():
                        path = root / "in" / str(i) / name
                        path.parent.mkdir(parents=True, exist_ok=True)
                        path.write_bytes(data)
                        inputs[node_id][name] = path
                sources: dict[str, Path] = {}
                for rel, data in payload["sources"].items():
                    path = root / "src" / rel
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(data)
                    sources[rel] = path
                out = root / "out"
                out.mkdir()
                self.pool.get(payload["family"])
                fault_injection(payload["node_id"])
                files = run_engine(self.pool, payload["family"], payload["node_id"], payload["kind"],
                                   payload["params"], inputs, sources, out, lambda f, m: None)
                reply["files"] = {name: (path.name, path.read_bytes()) for name, path in files.items()}
            except Exception as exc:  # noqa: BLE001 - the scheduler reports it as the node's failure
                reply["error"] = describe(exc)
                reply["trace"] = traceback.format_exc()
        reply["loads"] = self.pool.loads()
        reply["seconds"] = time.monotonic() - started
        reply["host"] = os.uname().nodename
        return reply


class RaySlots:
    """One Ray actor per GPU; replaced when it dies."""

    def __init__(self, engines: Mapping[str, Any], address: str | None = None, gpus: str | None = None,
                 cpus_per_actor: float = 1.0) -> None:
        self.specs = engine_specs(engines)
        self.address = address
        self.gpus = gpus
        self.cpus_per_actor = cpus_per_actor
        self.names: list[str] = []
        self.actors: list[Any] = []
        self._loads: list[dict[str, int]] = []
        self._started_ray = False
        self._actor_class: Any = None

    def open(self) -> None:
        ray = _ray()
        if not ray.is_initialized():
            kwargs: dict[str, Any] = {"log_to_driver": False, "include_dashboard": False}
            if self.address:
                kwargs["address"] = self.address
            elif fake_gpus() is not None:
                kwargs["num_gpus"] = fake_gpus()
            try:
                ray.init(**kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise UsageError(f"could not connect to the Ray cluster at {self.address or 'a new local one'}: "
                                 f"{exc}") from None
            self._started_ray = True
        total = int(ray.cluster_resources().get("GPU", 0))
        wanted = total
        if self.gpus not in (None, "all"):
            assert self.gpus is not None
            # Ray picks the devices: "0,1" asks for two of the cluster's GPUs, whichever they are
            wanted = min(len([p for p in self.gpus.split(",") if p.strip()]), total)
        if wanted < 1:
            self.close()
            raise UsageError("the Ray cluster offers no GPU for the GPU nodes (ray status shows its resources; "
                             "FANREN_FAKE_GPUS=N makes a local Ray with N fake GPUs)")
        self._actor_class = ray.remote(num_gpus=1, num_cpus=self.cpus_per_actor, max_restarts=0)(RayWorker)
        self.names = [f"ray{i}" for i in range(wanted)]
        self.actors = [self._new_actor() for _ in range(wanted)]
        self._loads = [{} for _ in range(wanted)]

    def _new_actor(self) -> Any:
        return self._actor_class.remote(self.specs, os.environ.get("FANREN_TEST_WORKER_EXIT", ""))

    def run(self, index: int, job: Job, progress: Callable[[float, str], None]) -> Mapping[str, Path]:
        ray = _ray()
        n = job.node
        payload = {"family": n.family, "node_id": n.id, "kind": n.kind, "params": dict(n.params),
                   "inputs": {i: {name: Path(p).read_bytes() for name, p in files.items()}
                              for i, files in job.inputs.items()},
                   "sources": {rel: Path(p).read_bytes() for rel, p in job.sources.items()}}
        try:
            reply = ray.get(self.actors[index].run.remote(payload))
        except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as exc:
            raise WorkerLost(f"Ray actor {self.names[index]} died running {n.id}") from exc
        self._loads[index] = reply["loads"]
        if reply.get("error") is not None:
            raise WorkerError(reply["error"], reply.get("trace", ""))
        out: dict[str, Path] = {}
        for name, (basename, data) in reply["files"].items():
            folder = job.out_dir / name.replace("/", "_")  # one folder per output: names never collide
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / basename
            path.write_bytes(data)
            out[name] = path
        return out

    def replace(self, index: int) -> None:
        ray = _ray()
        with contextlib.suppress(Exception):
            ray.kill(self.actors[index], no_restart=True)
        self.actors[index] = self._new_actor()
        self._loads[index] = {}

    def close(self) -> None:
        ray = _ray()
        for actor in self.actors:
            with contextlib.suppress(Exception):
                ray.kill(actor, no_restart=True)
        self.actors = []
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False

    def loads(self, index: int) -> dict[str, int]:
        return dict(self._loads[index]) if index < len(self._loads) else {}


class RayExecutor(LocalExecutor):
    name = "ray"

    def __init__(self, pool: EnginePool, jobs: int = 2, address: str | None = None, gpus: str | None = None,
                 cpus_per_actor: float = 1.0, gpu_families: set[str] | None = None) -> None:
        families = gpu_families if gpu_families is not None else \
            {f for f, e in pool.engines.items() if e.resources().gpu}
        slots = RaySlots({f: pool.engines[f] for f in families}, address, gpus, cpus_per_actor)
        super().__init__(pool, jobs, gpu_slots=slots, gpu_families=families)
