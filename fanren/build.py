"""One build, start to finish: load → compile → plan → run → materialize out/<profile>/.

Used by `fanren build` and `fanren watch`. Bad input raises DramaError before anything is written.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .cache import Cache
from .compile import Engines, compile_project, resolve_engines
from .errors import BuildFailed, NodeFailure
from .graph import Graph
from .index import Index
from .lockfile import LockEntry, read_lock, write_lock
from .plan import Decision, plan
from .project import Project, load_project
from .run import FAILED, EnginePool, NodeResult, Reporter, run_graph

CACHE_DIR = ".fanren-cache"

# What out/<profile>/ holds: file name → (node id, output name).
EXPORTS = {
    "episode.mp4": ("episode", "episode.mp4"),
    "episode.srt": ("subtitles", "episode.srt"),
    "episode.ass": ("subtitles", "episode.ass"),
    "storyboard.html": ("storyboard", "storyboard.html"),
}


def cache_root(root: Path, cache_dir: Path | None = None) -> Path:
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("FANREN_CACHE_DIR")
    return Path(env) if env else Path(root) / CACHE_DIR


@dataclass
class Session:
    """A drama compiled for one profile, planned against one cache: what status/explain/build share."""

    project: Project
    engines: Engines
    graph: Graph
    cache: Cache
    lock: dict[str, dict[str, LockEntry]]
    decisions: list[Decision]
    index: Index | None = None

    @property
    def root(self) -> Path:
        return self.project.root

    @property
    def profile(self) -> str:
        return self.engines.profile

    def decision(self, node_id: str) -> Decision:
        return next(d for d in self.decisions if d.node.id == node_id)


def open_session(root: Path, profile: str = "draft", cache_dir: Path | None = None,
                 project: Project | None = None, engines: Engines | None = None,
                 cache: Cache | None = None, graph: Graph | None = None) -> Session:
    project = project or load_project(Path(root))
    engines = engines or resolve_engines(project, profile)
    graph = graph or compile_project(project, engines)
    cache = cache or Cache(cache_root(project.root, cache_dir))
    lock = read_lock(project.root, memo=cache.root / "lockmemo.json")
    index = Index(cache, project.root, engines.profile)
    decisions = plan(graph, cache, project.root, lock.get(engines.profile, {}), index)
    return Session(project, engines, graph, cache, lock, decisions, index)


@dataclass
class BuildResult:
    session: Session
    results: dict[str, NodeResult]
    seconds: float
    out_dir: Path

    @property
    def episode(self) -> Path:
        return self.out_dir / "episode.mp4"

    def count(self, status: str) -> int:
        return sum(1 for r in self.results.values() if r.status == status)


def build(root: Path, profile: str = "draft", cache_dir: Path | None = None, jobs: int = 2,
          keep_going: bool = False, reporter: Reporter | None = None,
          on_wait: Callable[[], None] | None = None, pool: EnginePool | None = None,
          project: Project | None = None, engines: Engines | None = None,
          cancelled: Callable[[], bool] = lambda: False, session: Session | None = None) -> BuildResult:
    """Build the episode of the drama in `root`. Raises DramaError (bad input) or BuildFailed.

    A caller's `pool` keeps its engines loaded after the build (`fanren watch`); once `cancelled()`
    is true, queued nodes are skipped and the running ones finish (a node boundary). A caller that
    has just opened a `session` of this drama and profile (`fanren watch`, to show the plan) passes
    it: its graph and plan are used instead of compiling and planning a second time, unless another
    build of the drama had to be waited for (then the plan is made again, after it).
    """
    started = time.monotonic()
    if session is not None:
        project, engines, graph, cache = session.project, session.engines, session.graph, session.cache
    else:
        project = project or load_project(Path(root))
        engines = engines or resolve_engines(project, profile)
        graph = compile_project(project, engines)  # bad input (a template error) fails before any write
        cache = Cache(cache_root(project.root, cache_dir))
    project_lock = "project-" + _slug(project.root)
    # One build of a drama at a time; a second one waits, then finds the first one's work cached.
    with cache.lock(project_lock, blocking=False) as taken:
        if taken:
            results, session = _build_locked(project, engines, graph, cache, jobs, keep_going, reporter, pool,
                                             cancelled, session)
    if not taken:
        if on_wait:
            on_wait()
        with cache.lock(project_lock):
            results, session = _build_locked(project, engines, graph, cache, jobs, keep_going, reporter, pool,
                                             cancelled)
    seconds = time.monotonic() - started
    out_dir = project.root / "out" / engines.profile
    failures = [NodeFailure(r.node.id, r.error or "failed", r.log)
                for r in results.values() if r.status == FAILED]
    if failures:
        raise BuildFailed(failures)
    return BuildResult(session, results, seconds, out_dir)


def _build_locked(project: Project, engines: Engines, graph: Graph, cache: Cache, jobs: int, keep_going: bool,
                  reporter: Reporter | None, pool: EnginePool | None,
                  cancelled: Callable[[], bool],
                  planned: Session | None = None) -> tuple[dict[str, NodeResult], Session]:
    started = time.monotonic()
    cache.clean_tmp()
    session = planned or open_session(project.root, engines.profile, project=project, engines=engines,
                                      cache=cache, graph=graph)
    own_pool = pool is None
    pool = pool or EnginePool(engines.by_family())
    try:
        results = run_graph(session.graph, session.decisions, pool, cache, project.root, jobs=jobs,
                            keep_going=keep_going, reporter=reporter, cancelled=cancelled)
    finally:
        if own_pool:
            pool.unload_all()
    out_dir = project.root / "out" / engines.profile
    _update_lock(session, results)
    if session.index is not None:
        session.index.update({nid: r.record for nid, r in results.items() if r.record is not None},
                             set(session.graph.nodes))
        session.index.save()
    write_report(out_dir, session, results, time.monotonic() - started)
    _export(out_dir, session, results)
    cache.memo.save()
    return results, session


def _slug(root: Path) -> str:
    from .cache import digest_bytes

    return digest_bytes(str(root.resolve()).encode())[:16]


def _update_lock(session: Session, results: dict[str, NodeResult]) -> None:
    """drama.lock: every node that resolved gets its key; nodes no longer in the graph are dropped."""
    entries = dict(session.lock.get(session.profile, {}))
    for node_id in list(entries):
        if node_id not in session.graph:
            del entries[node_id]
    for node_id, result in results.items():
        if result.record is not None:
            entries[node_id] = LockEntry(result.record.key, result.node.engine,
                                         {n: o.digest for n, o in result.record.outputs.items()})
    lock = dict(session.lock)
    lock[session.profile] = entries
    write_lock(session.root, lock, previous=session.lock, memo=session.cache.root / "lockmemo.json")


def report_dict(session: Session, results: dict[str, NodeResult], seconds: float) -> dict[str, object]:
    return {
        "profile": session.profile,
        "nodes": [{"id": nid, "kind": r.node.kind, "engine": r.node.engine, "status": r.status,
                   "seconds": round(r.seconds, 3), **({"error": r.error} if r.error else {})}
                  for nid, r in ((n, results[n]) for n in session.graph.nodes)],
        "seconds": round(seconds, 3),
    }


def write_report(out_dir: Path, session: Session, results: dict[str, NodeResult], seconds: float) -> None:
    """report.json (for tools and CI) and report.js (the same, for storyboard.html opened from disk)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report = report_dict(session, results, seconds)
    text = json.dumps(report, ensure_ascii=False, indent=1)
    _replace(out_dir / "report.json", text + "\n")
    _replace(out_dir / "report.js", f"window.FANREN_REPORT = {text};\n")


def _replace(path: Path, text: str) -> None:
    """Readers see the old or the new report, never a part. Not fsynced, unlike the cache's files:
    a report lost to a power cut is rewritten by the next build, and a no-op build would otherwise
    spend more time waiting for two fsyncs than planning (a loaded disk: 15-50 ms each)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _export(out_dir: Path, session: Session, results: dict[str, NodeResult]) -> None:
    """Place the finished outputs under out/<profile>/ (hard links into the store, else copies)."""
    for name, (node_id, output) in EXPORTS.items():
        result = results.get(node_id)
        if result is None or result.record is None or output not in result.record.outputs:
            continue
        source = session.cache.object_path(result.record.outputs[output].digest)
        target = out_dir / name
        try:
            if target.exists() and os.path.samefile(source, target):
                continue
        except OSError:
            pass
        tmp = out_dir / f".{name}.tmp"
        tmp.unlink(missing_ok=True)
        try:
            os.link(source, tmp)
        except OSError:
            shutil.copyfile(source, tmp)
        os.replace(tmp, target)
