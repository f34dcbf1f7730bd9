"""The one thread that builds jobs, oldest first, with engines kept loaded between jobs (as `watch` does).

- A job is `fanren.build.build()` on its own folder, with the cache every job shares: a resubmitted
  edit runs only its stale nodes, and a node two jobs share renders once.
- Engines are kept by (class, identity): the next job that renders with the same model finds it
  loaded. A job that needs another GPU model unloads the resident one first (one GPU model at a time).
- A job left `running` by a crash (kill -9) runs again first when the server starts: the nodes it
  had finished are in the cache and come back `cached`.
- GPU-seconds are counted per node as it finishes, from the nodes that actually ran on a GPU engine.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..build import build
from ..cache import Cache
from ..compile import Engines, compile_drama, resolve_engines
from ..engines import Engine
from ..errors import BuildFailed, FanrenError
from ..executors import ExecutorOptions
from ..graph import Graph, Node
from ..project import Project
from ..run import CACHED, RAN, EnginePool, NodeResult
from ..series import Series, load_drama
from . import seed
from .store import CANCELLED, COMPLETED, FAILED, Job, NodeRow, Store

log = logging.getLogger("fanren.serve")

PROGRESS_EVERY = 0.25   # seconds between two progress events of one job (a denoising loop reports per step)


class WarmPool(EnginePool):
    """An EnginePool whose engines change from job to job; an engine that stays keeps its model loaded."""

    def use(self, engines: Mapping[str, Engine]) -> None:
        with self._lock:
            for family, engine in engines.items():
                old = self.engines.get(family)
                if old is not None and old is not engine and family in self._loaded:
                    old.unload()
                    self._loaded.discard(family)
            self.engines = dict(engines)


class JobReporter:
    """Tells the store what the scheduler does: node states, progress events, GPU-seconds spent."""

    def __init__(self, store: Store, job: Job, graph: Graph) -> None:
        self.store, self.job, self.graph = store, job, graph
        self.total = 0
        self.done = 0
        self.running: dict[str, float] = {}
        self._lock = threading.Lock()
        self._last = 0.0

    def begin(self, stale: list[Node], estimates: Mapping[str, float]) -> None:
        self.total = len(stale)
        queued = {node.id for node in stale}
        self.store.set_nodes(self.job.id, [NodeRow(n.id, n.kind, n.engine, "queued" if n.id in queued else CACHED,
                                                   0.0, None) for n in self.graph.topological()])

    def start(self, node: Node) -> None:
        self.store.set_node(self.job.id, NodeRow(node.id, node.kind, node.engine, "running", 0.0, None))
        with self._lock:
            self.running[node.id] = 0.0

    def progress(self, node: Node, fraction: float, message: str) -> None:
        with self._lock:
            self.running[node.id] = max(0.0, min(1.0, fraction))
            now = time.monotonic()
            if now - self._last < PROGRESS_EVERY:
                return
            self._last = now
        self._report({"node": node.id, "node_progress": round(fraction, 3), "message": message})

    def finish(self, result: NodeResult) -> None:
        node = result.node
        self.store.set_node(self.job.id, NodeRow(node.id, node.kind, node.engine, result.status, result.seconds,
                                                 result.error))
        if result.status == RAN and node.gpu:
            self.store.add_job_gpu_seconds(self.job, result.seconds)
        with self._lock:
            self.running.pop(node.id, None)
            self.done += 1
        self._report({"node": node.id})

    def end(self) -> None: ...

    def _report(self, data: dict[str, Any]) -> None:
        with self._lock:
            fraction = (self.done + sum(self.running.values())) / self.total if self.total else 1.0
        self.store.set_progress(self.job.id, min(fraction, 1.0), data)


class Runner:
    def __init__(self, store: Store, data: Path, jobs: int = 2, executor: ExecutorOptions | None = None) -> None:
        self.store = store
        # Where GPU nodes run, as `fanren build --gpus/--executor` says. None: on this process's GPU,
        # in the warm pool. Worker processes and Ray actors keep their models for one job's build.
        self.executor = executor
        self.data = Path(data)
        self.cache_dir = self.data / "cache"
        self.cache = Cache(self.cache_dir)   # for reading outputs; builds open their own
        self.jobs = jobs
        self.pool = WarmPool({})
        self._engines: dict[str, Engine] = {}   # (class, identity) → the one instance kept warm
        self._wake = threading.Condition()
        self._stopping = False
        self._cancel: set[str] = set()
        self._thread: threading.Thread | None = None
        self.current: str | None = None

    def job_folder(self, job_id: str) -> Path:
        return self.data / "jobs" / job_id

    # ── lifecycle ───────────────────────────────────────────────────────────

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="fanren-serve-runner", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._wake:
            self._stopping = True   # the running job stops at a node boundary and goes back to the queue
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=60)
        self.pool.unload_all()

    def wake(self) -> None:
        with self._wake:
            self._wake.notify_all()

    def cancel(self, job_id: str) -> None:
        with self._wake:
            self._cancel.add(job_id)

    def _loop(self) -> None:
        while True:
            with self._wake:
                if self._stopping:
                    return
            job = self.store.next_queued()
            if job is None:
                with self._wake:
                    if not self._stopping:
                        self._wake.wait(timeout=1.0)
                continue
            self.current = job.id
            try:
                self.run(job)
            except Exception:  # a bug in one job must not stop the queue
                log.exception("job %s (key %s) crashed", job.id, job.key_id)
                self.store.finish_job(job.id, FAILED, "internal error while running the job")
            finally:
                self.current = None
                with self._wake:
                    self._cancel.discard(job.id)
            with self._wake:
                if self._stopping:
                    return

    # ── one job ─────────────────────────────────────────────────────────────

    def run(self, job: Job) -> None:
        log.info("job %s (key %s, %s, profile %s) starts", job.id, job.key_id, job.kind, job.profile)
        self.store.start_job(job.id)
        root = self.job_folder(job.id) / "drama"
        try:
            if job.kind == "novel" and not (root / "drama.toml").exists():
                self._split(job, root)
            project = load_drama(root)  # a drama, or a series: every episode in one build
            engines = self._engines_for(job, project)
            self.pool.use(engines.by_family())
            # the reporter lists the nodes when the build has planned them (no second plan here),
            # from the graph the build runs (no second compile either)
            graph = compile_drama(project, engines)
            result = build(root, engines.profile, self.cache_dir, jobs=self.jobs, keep_going=False,
                           reporter=JobReporter(self.store, job, graph),
                           pool=self.pool, project=project, engines=engines, graph=graph,
                           cancelled=lambda: self._interrupted(job.id), executor=self.executor)
        except BuildFailed as exc:
            if self._interrupted(job.id):
                self._stopped(job, root)
            else:
                self._finish(job, root, FAILED, _first_line(exc))
            return
        except FanrenError as exc:
            self._finish(job, root, FAILED, _relative(exc.show(), root))
            return
        if any(r.status == "skipped" for r in result.results.values()) and self._interrupted(job.id):
            self._stopped(job, root)
        else:
            self._finish(job, root, COMPLETED, None)

    def _interrupted(self, job_id: str) -> bool:
        """The build should stop: its job was cancelled, or the server is shutting down."""
        with self._wake:
            if self._stopping or job_id in self._cancel:
                return True
        job = self.store.job(job_id)
        return job is not None and job.cancel

    def _stopped(self, job: Job, root: Path) -> None:
        """A build that stopped early: cancelled if the client asked, else (a shutdown) queued again."""
        current = self.store.job(job.id)
        with self._wake:
            asked = job.id in self._cancel
        if asked or (current is not None and current.cancel):
            self._finish(job, root, CANCELLED, None)
        else:
            self.store.requeue_job(job.id)
            log.info("job %s (key %s) goes back to the queue: the server is stopping", job.id, job.key_id)

    def _finish(self, job: Job, root: Path, status: str, error: str | None) -> None:
        report = None
        report_file = root / "out" / job.profile / "report.json"
        if report_file.exists():
            report = json.loads(report_file.read_text(encoding="utf-8"))
        self.store.finish_job(job.id, status, error, report)
        log.info("job %s (key %s) %s", job.id, job.key_id, status)

    def _split(self, job: Job, root: Path) -> None:
        from ..split.chapter import SplitSettings, split_chapter

        spec = job.spec
        chapter = self.job_folder(job.id) / spec["chapter"]
        settings = SplitSettings(engine="rules", characters=spec.get("characters"),
                                 max_shot_chars=spec.get("max_shot_chars"), language=spec.get("language"))
        split_chapter(chapter, root, settings)
        self.store.set_progress(job.id, 0.0, {"message": "split the chapter into drama.toml"})

    def _engines_for(self, job: Job, project: Project | Series) -> Engines:
        """The job's engines, each replaced by the warm instance of the same class and identity."""
        if job.kind == "video":
            spec = job.spec
            video = self._warm(seed.make_video_engine(spec["engine"], spec["options"]))
            picture = project.root / spec["picture"]
            return seed.seed_engines(job.profile, picture, spec["digest"], video)
        engines = resolve_engines(project, job.profile)
        return Engines(profile=engines.profile, image=self._warm(engines.image),
                       video=self._warm(engines.video),  # type: ignore[arg-type]
                       voice=self._warm(engines.voice), mux=self._warm(engines.mux),
                       report=self._warm(engines.report),
                       check=self._warm(engines.check) if engines.check is not None else None)

    def _warm(self, engine: Engine) -> Engine:
        name = f"{type(engine).__module__}.{type(engine).__qualname__}:" + json.dumps(
            engine.identity(), sort_keys=True, default=str)
        return self._engines.setdefault(name, engine)


def _first_line(exc: BuildFailed) -> str:
    """`node <id>: <message>` of the first failure (its log path is the server's business)."""
    failure = exc.failures[0]
    return f"node {failure.node_id} failed: {failure.message}"


def _relative(message: str, root: Path) -> str:
    """Messages name files inside the job's folder: the client knows them by their path in the upload."""
    return message.replace(str(root) + "/", "").replace(str(root), ".")
