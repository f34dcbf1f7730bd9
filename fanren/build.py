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

from .cache import Cache, atomic_write
from .compile import Engines, compile_project, resolve_engines
from .errors import BuildFailed, DramaError, NodeFailure, Problem
from .graph import Graph
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
    """The cache folder, absolute: a relative --cache-dir or FANREN_CACHE_DIR is taken from the
    current directory here, once (engines and ffmpeg playlists resolve paths elsewhere)."""
    if cache_dir is not None:
        return Path(cache_dir).absolute()
    env = os.environ.get("FANREN_CACHE_DIR")
    return Path(env).absolute() if env else Path(root).absolute() / CACHE_DIR


def out_folder(root: Path, profile: str) -> Path:
    """out/<profile>/ of the drama in `root`; bad input when out/ or out/<profile>/ is a symbolic
    link or otherwise leads out of the drama folder (a build would write wherever it points)."""
    base = Path(root).resolve()
    out = Path(root) / "out" / profile
    for folder in (out.parent, out):
        if folder.is_symlink() or (folder.exists() and not folder.resolve().is_relative_to(base)):
            raise DramaError(Problem(folder, "", "a folder inside the drama folder, where fanren writes the "
                                     "episode", "a symbolic link" if folder.is_symlink() else "a path "
                                     "that leaves the drama folder",
                                     hint=f"remove {folder.relative_to(root)}; the build creates it"))
    return out


@dataclass
class Session:
    """A drama compiled for one profile, planned against one cache: what status/explain/build share."""

    project: Project
    engines: Engines
    graph: Graph
    cache: Cache
    lock: dict[str, dict[str, LockEntry]]
    decisions: list[Decision]

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
    decisions = plan(graph, cache, project.root, lock.get(engines.profile, {}))
    return Session(project, engines, graph, cache, lock, decisions)


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
          cancelled: Callable[[], bool] = lambda: False) -> BuildResult:
    """Build the episode of the drama in `root`. Raises DramaError (bad input) or BuildFailed.

    A caller's `pool` keeps its engines loaded after the build (`fanren watch`); once `cancelled()`
    is true, queued nodes are skipped and the running ones finish (a node boundary).
    """
    started = time.monotonic()
    project = project or load_project(Path(root))
    engines = engines or resolve_engines(project, profile)
    graph = compile_project(project, engines)  # bad input (a template error) fails before any write
    out_folder(project.root, engines.profile)  # and so does an out/ that leads out of the drama folder
    cache = Cache(cache_root(project.root, cache_dir))
    project_lock = "project-" + _slug(project.root)
    # One build of a drama at a time; a second one waits, then finds the first one's work cached.
    with cache.lock(project_lock, blocking=False) as taken:
        if taken:
            results, session = _build_locked(project, engines, graph, cache, jobs, keep_going, reporter, pool,
                                             cancelled)
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
                  cancelled: Callable[[], bool]) -> tuple[dict[str, NodeResult], Session]:
    started = time.monotonic()
    cache.clean_tmp()
    session = open_session(project.root, engines.profile, project=project, engines=engines, cache=cache,
                           graph=graph)
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
    atomic_write(out_dir / "report.json", text + "\n")
    atomic_write(out_dir / "report.js", f"window.FANREN_REPORT = {text};\n")


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
