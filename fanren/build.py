"""One build, start to finish: load → compile → plan → run → materialize out/<profile>/.

Used by `fanren build` and `fanren watch`. Bad input raises DramaError before anything is written.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .cache import ActionRecord, Cache, atomic_write
from .check import Mismatch, check_nodes
from .compile import (
    Engines,
    PromptMemo,
    compile_drama,
    prompt_memo_file,
    read_prompt_memo,
    resolve_engines,
    write_prompt_memo,
)
from .errors import BuildFailed, DramaError, FanrenError, NodeFailure, Problem
from .executors import ExecutorOptions
from .export.report import TimelineMemo
from .graph import Graph, Node, local_id
from .index import Index
from .lockfile import LockEntry, read_lock, write_lock
from .plan import Decision, plan
from .project import Project
from .run import CACHED, FAILED, RAN, SKIPPED, EnginePool, NodeResult, Reporter, run_graph
from .season import write_season
from .series import Series, load_drama

if TYPE_CHECKING:
    from .remote import RemoteCache

log = logging.getLogger("fanren")

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
    """A drama (or a series) compiled for one profile, planned against one cache: what
    status/explain/build share."""

    project: Project | Series
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
    project = project or load_drama(Path(root))
    engines = engines or resolve_engines(project, profile)
    cache_folder = cache.root if cache is not None else cache_root(project.root, cache_dir)
    memo = None if graph is not None else _prompt_memo(project, cache_folder)
    graph = graph or compile_drama(project, engines, memo)
    cache = cache or Cache(cache_root(project.root, cache_dir))
    if memo is not None:
        _keep_prompt_memo(project, cache, memo)
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
    workers: dict[str, dict[str, object]] = field(default_factory=dict)  # per GPU worker: loads, busy
    checked: int = 0                                         # nodes rendered again by --check
    mismatches: list[Mismatch] = field(default_factory=list)  # ... whose bytes differed

    @property
    def episode(self) -> Path:
        return self.out_dir / "episode.mp4"

    def count(self, status: str) -> int:
        return sum(1 for r in self.results.values() if r.status == status)

    @property
    def remote_hits(self) -> int:
        return len(_pulled(self.session, self.results))

    def consistency(self) -> dict[str, object] | None:
        """The consistency check's verdict (report.json's `consistency`), None without [check]."""
        return consistency_report(self.session, self.results)


def _pulled(session: Session, results: dict[str, NodeResult]) -> set[str]:
    """The cached nodes whose result this build pulled from the remote cache."""
    return {nid for nid, r in results.items()
            if r.status == CACHED and r.record is not None and r.record.key in session.cache.remote_hits}


def build(root: Path, profile: str = "draft", cache_dir: Path | None = None, jobs: int = 2,
          keep_going: bool = False, reporter: Reporter | None = None,
          on_wait: Callable[[], None] | None = None, pool: EnginePool | None = None,
          project: Project | Series | None = None, engines: Engines | None = None,
          cancelled: Callable[[], bool] = lambda: False, remote_read_only: bool = False,
          executor: ExecutorOptions | None = None, check: bool = False,
          on_check: Callable[[int, int, str], None] | None = None,
          session: Session | None = None, graph: Graph | None = None) -> BuildResult:
    """Build the episode of the drama in `root`. Raises DramaError (bad input) or BuildFailed.

    A caller's `pool` keeps its engines loaded after the build (`fanren watch`); once `cancelled()`
    is true, queued nodes are skipped and the running ones finish (a node boundary). With a remote
    cache (`[cache] remote` or FANREN_REMOTE_CACHE), a local miss is pulled from it and every node
    that runs is uploaded, unless `remote_read_only`. `executor` says where nodes run
    (fanren/executors): default one GPU and `jobs` CPU threads in this process. With `check`, every
    node is then rendered again and compared with the cache (see fanren.check); the result lists
    the nodes whose bytes differ. A caller that has just opened a `session` of this drama and
    profile (`fanren watch`, to show the plan) passes it: its graph and plan are used instead of
    compiling and planning a second time, unless another build of the drama had to be waited for
    (then the plan is made again, after it). A caller that compiled the drama already passes its
    `graph` (with the `project` and `engines` it was compiled from).
    """
    started = time.monotonic()
    if session is not None:
        project, engines, graph, cache = session.project, session.engines, session.graph, session.cache
    else:
        project = project or load_drama(Path(root))
        engines = engines or resolve_engines(project, profile)
        memo = None if graph is not None else _prompt_memo(project, cache_root(project.root, cache_dir))
        graph = graph or compile_drama(project, engines, memo)  # bad input fails before any write
        cache = Cache(cache_root(project.root, cache_dir), remote=_remote(project, remote_read_only))
        if memo is not None:
            _keep_prompt_memo(project, cache, memo)
    out_dir = out_folder(project.root, engines.profile)  # bad input too: an out/ leading out of the drama
    cache.register_root(project.root)
    project_lock = "project-" + _slug(project.root)
    # gc waits for every build using the cache (and a build for a running gc); one build of a drama
    # at a time: a second one waits, then finds the first one's work cached.
    with cache.in_use(on_wait=lambda: log.warning("cache %s: gc or verify is running; waiting for it to "
                                                  "finish", cache.root)):
        with cache.lock(project_lock, blocking=False) as taken:
            if taken:
                results, session, workers, checked = _build_locked(
                    project, engines, graph, cache, jobs, keep_going, reporter, pool, cancelled, executor,
                    check, on_check, planned=session)
        if not taken:
            if on_wait:
                on_wait()
            with cache.lock(project_lock):
                results, session, workers, checked = _build_locked(
                    project, engines, graph, cache, jobs, keep_going, reporter, pool, cancelled, executor,
                    check, on_check)
    seconds = time.monotonic() - started
    failures = [NodeFailure(r.node.id, r.error or "failed", r.log)
                for r in results.values() if r.status == FAILED]
    if failures:
        raise BuildFailed(failures)
    return BuildResult(session, results, seconds, out_dir, workers, *checked)


def _prompt_memo(project: Project | Series, cache_folder: Path) -> PromptMemo:
    """The prompts the last compile of this drama rendered (read only: nothing is written before the
    drama compiled, bad input included)."""
    return read_prompt_memo(prompt_memo_file(cache_folder, project.root))


def _keep_prompt_memo(project: Project | Series, cache: Cache, memo: PromptMemo) -> None:
    try:
        write_prompt_memo(prompt_memo_file(cache.root, project.root), memo)
    except OSError as exc:  # a speed-up only: the next compile renders what it cannot find
        log.warning("could not save the prompt memo: %s", exc)


def _remote(project: Project | Series, read_only: bool) -> RemoteCache | None:
    if project.cache.remote is None and "FANREN_REMOTE_CACHE" not in os.environ:
        return None  # the common case: not even the remote module is imported (no-op build speed)
    from .remote import open_remote

    return open_remote(project.cache.remote, project.file, read_only=read_only)


def _build_locked(project: Project | Series, engines: Engines, graph: Graph, cache: Cache, jobs: int, keep_going: bool,
                  reporter: Reporter | None, pool: EnginePool | None,
                  cancelled: Callable[[], bool], executor: ExecutorOptions | None = None,
                  check: bool = False, on_check: Callable[[int, int, str], None] | None = None,
                  planned: Session | None = None,
                  ) -> tuple[dict[str, NodeResult], Session, dict[str, dict[str, object]],
                             tuple[int, list[Mismatch]]]:
    started = time.monotonic()
    cache.clean_tmp()
    session = planned or open_session(project.root, engines.profile, project=project, engines=engines,
                                      cache=cache, graph=graph)
    own_pool = pool is None
    pool = pool or EnginePool(engines.by_family())
    runner = None
    if executor is not None and (executor.kind != "local" or executor.gpus is not None):
        from .executors import make_executor

        runner = make_executor(executor, pool, jobs, log_dir=cache.logs)
    graph_run, decisions_run = selected_graph(session.graph, project), selected_decisions(session)
    try:
        results = run_graph(graph_run, decisions_run, pool, cache, project.root, jobs=jobs,
                            keep_going=keep_going, reporter=reporter, cancelled=cancelled, executor=runner)
        workers = runner.stats() if runner is not None else {}
        checked: tuple[int, list[Mismatch]] = (0, [])
        if check and not any(r.status == FAILED for r in results.values()):
            # in this process, whatever executor ran the build: a second opinion from the same place
            records = {i: r.record for i, r in results.items() if r.record is not None}
            checked = (len(records), check_nodes(
                graph_run, records, pool, cache, project.root,
                on_node=lambda done, total, node: on_check(done, total, node.id) if on_check else None))
    finally:
        if own_pool:
            pool.unload_all()
    out_dir = project.root / "out" / engines.profile
    memo = TimelineMemo(cache, project.root, engines.profile)
    try:
        _update_lock(session, results)
        if session.index is not None:
            session.index.update({nid: r.record for nid, r in results.items() if r.record is not None},
                                 set(session.graph.nodes))
            session.index.save()
        write_report(out_dir, session, results, time.monotonic() - started, workers, memo=memo)
        if isinstance(project, Series):
            # one pass over the graph, not one per episode: 60 episodes are 8,000 nodes
            shared: dict[str, NodeResult] = {}
            mine: dict[str, dict[str, NodeResult]] = {}
            for node_id in graph_run.nodes:
                episode_id = project.episode_of(node_id)
                (shared if episode_id is None else mine.setdefault(episode_id, {}))[node_id] = results[node_id]
            exports: dict[str | None, list[Node]] = {}  # the editor exports of each episode
            for node in graph_run.topological():
                if node.kind == "export":
                    exports.setdefault(project.episode_of(node.id), []).append(node)
            for episode in project.selected:
                write_report(out_dir / episode, session, {**shared, **mine.get(episode, {})},
                             time.monotonic() - started, workers, episode=episode, memo=memo)
                _export(out_dir / episode, session, results, prefix=f"{episode}/")
                _place_exports(out_dir / episode, session, results, exports.get(episode, []),
                               prefix=f"{episode}/")
            write_season(out_dir, project, session.decisions, results, cache)
        else:
            _export(out_dir, session, results)
            _place_exports(out_dir, session, results,
                           [node for node in graph_run.topological() if node.kind == "export"])
    except OSError as exc:  # a full disk: say so, naming what could not be written; never a traceback
        if not any(r.status == FAILED for r in results.values()):
            raise FanrenError(f"the build finished but its results could not be written: {exc}") from exc
        log.warning("could not write drama.lock or out/%s/: %s", engines.profile, exc)
    try:
        cache.memo.save()
    except OSError as exc:  # a speed-up only: the next build re-hashes what it cannot find
        log.warning("could not save the cache's stat memo: %s", exc)
    try:
        memo.save()
    except OSError as exc:  # a speed-up only too: the next build lays the timelines out again
        log.warning("could not save the cache's timeline memo: %s", exc)
    return results, session, workers, checked


def selected_graph(graph: Graph, drama: Project | Series) -> Graph:
    """What a build runs: the whole graph, or, for some episodes of a series, their nodes and the
    shared sheets they read."""
    if not isinstance(drama, Series) or len(drama.selected) == len(drama.episodes):
        return graph
    chosen = set(drama.selected)
    keep = {n for n in graph.nodes if drama.episode_of(n) in chosen}
    keep |= {i for n in keep for i in graph[n].inputs}
    selected = Graph()
    for node in graph.topological():
        if node.id in keep:
            selected.add(node)
    return selected


def selected_decisions(session: Session) -> list[Decision]:
    """The decisions about the nodes a build of the session's selection runs."""
    graph = selected_graph(session.graph, session.project)
    return session.decisions if graph is session.graph else [d for d in session.decisions if d.node.id in graph]


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


def report_dict(session: Session, results: dict[str, NodeResult], seconds: float,
                workers: dict[str, dict[str, object]] | None = None,
                episode: str | None = None, memo: TimelineMemo | None = None) -> dict[str, object]:
    """The report of a build; of one `episode` of a series (`results` holding its nodes and the
    shared sheets, in graph order): by their ids within the episode, as its storyboard names them.
    `memo` keeps the timelines between builds (fanren/export/report.py)."""
    pulled = _pulled(session, results)
    order = results if episode is not None else [n for n in session.graph.nodes if n in results]
    return {
        "profile": session.profile,
        "counts": {"ran": sum(1 for r in results.values() if r.status == RAN),
                   "local_hits": sum(1 for r in results.values() if r.status == CACHED) - len(pulled),
                   "remote_hits": len(pulled),
                   "failed": sum(1 for r in results.values() if r.status == FAILED),
                   "skipped": sum(1 for r in results.values() if r.status == SKIPPED)},
        "nodes": [{"id": local_id(nid) if episode is not None else nid, "kind": r.node.kind, "engine": r.node.engine, "status": r.status,
                   "seconds": round(r.seconds, 3), **({"error": r.error} if r.error else {}),
                   **({"from": "remote"} if nid in pulled else {})}
                  for nid, r in ((n, results[n]) for n in order)],
        "seconds": round(seconds, 3),
        **({"workers": workers} if workers else {}),
        **({"consistency": consistency} if (consistency := consistency_report(session, results)) else {}),
        **({"timeline": timeline} if (timeline := timeline_report(session, results, episode, memo)) else {}),
    }


def consistency_report(session: Session, results: dict[str, NodeResult]) -> dict[str, object] | None:
    """The scores of the consistency nodes that resolved, against `[check] consistency` (fanren/consistency.py)."""
    settings = session.project.check.consistency
    if settings is None:
        return None
    from .consistency import scored_verdict

    done = [results[nid] for nid in session.graph.nodes if nid in results]  # in the drama's order
    return scored_verdict(settings, session.cache, [(r.node, r.record) for r in done
                                                    if r.node.kind == "consistency" and r.record is not None])


def timeline_report(session: Session, results: dict[str, NodeResult], episode: str | None = None,
                    memo: TimelineMemo | None = None) -> dict[str, object] | None:
    """The finished episode's timeline (fanren/export/report.py): where each shot, line and subtitle
    sits in episode.mp4; None when the episode did not resolve, or for a whole series (each
    episode's report has its own)."""
    prefix = f"{episode}/" if episode is not None else ""
    finished = results.get(prefix + "episode")
    if finished is None or finished.record is None:
        return None
    from .export.report import report_timeline

    def record(node_id: str) -> ActionRecord:
        resolved = results[node_id].record
        assert resolved is not None  # an input of the finished episode resolved too
        return resolved

    return report_timeline(session.graph, prefix, record, session.cache, session.root, memo)


def write_report(out_dir: Path, session: Session, results: dict[str, NodeResult], seconds: float,
                 workers: dict[str, dict[str, object]] | None = None, episode: str | None = None,
                 memo: TimelineMemo | None = None) -> None:
    """report.json (for tools and CI) and report.js (the same, for storyboard.html opened from disk)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    report = report_dict(session, results, seconds, workers, episode, memo)
    text = report_text(report)
    # not fsynced: a report lost to a power cut is rewritten by the next build, and a no-op build
    # would otherwise wait longer for two fsyncs than it takes to plan (a loaded disk: 15-50 ms each)
    atomic_write(out_dir / "report.json", text + "\n", durable=False)
    atomic_write(out_dir / "report.js", f"window.FANREN_REPORT = {text};\n", durable=False)


# a report's node entries through the C encoder, their items on their own lines as indent=1 puts them
_ENTRY = json.JSONEncoder(ensure_ascii=False, separators=(",\n   ", ": "))


def report_text(report: dict[str, object]) -> str:
    """`json.dumps(report, ensure_ascii=False, indent=1)`, byte for byte, faster: indent makes json use
    its pure-Python encoder (about 20 ms for the 7,387 nodes of a 60-episode series, twice over with
    the episodes' reports). The node entries, flat tables, are encoded by the C encoder instead."""
    nodes = report.get("nodes")
    if not isinstance(nodes, list) or not nodes or any(
            isinstance(v, (dict, list)) for entry in nodes for v in entry.values()):
        return json.dumps(report, ensure_ascii=False, indent=1)
    marker = "\0nodes\0"  # a string no report holds; json writes it as "\u0000nodes\u0000"
    text = json.dumps({**report, "nodes": marker}, ensure_ascii=False, indent=1)
    # one call for the whole list: '[{"id": …,\n   "kind": …},\n   {"id": …}]'. A newline inside a
    # string is written as \\n, so '},\n   {' with a real newline only ever stands between entries.
    entries = _ENTRY.encode(nodes)[2:-2].replace("},\n   {", "\n  },\n  {\n   ")
    return text.replace(json.dumps(marker), f"[\n  {{\n   {entries}\n  }}\n ]", 1)


def _place_exports(out_dir: Path, session: Session, results: dict[str, NodeResult], exports: list[Node],
                   prefix: str = "") -> None:
    """The editor timelines of `[export]` (the drama's or an episode's export nodes) and their media;
    a drama without exports does not import the export package."""
    if exports:
        from .export.materialize import place_exports

        place_exports(out_dir, session, results, exports, prefix)


def _export(out_dir: Path, session: Session, results: dict[str, NodeResult], prefix: str = "") -> None:
    """Place the finished outputs under out/<profile>/ (of a series' episode: out/<profile>/<episode>/;
    hard links into the store, else copies)."""
    for name, (node_id, output) in EXPORTS.items():
        result = results.get(prefix + node_id)
        if result is None or result.record is None or output not in result.record.outputs:
            continue
        source = session.cache.object_for_use(result.record, output)
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
