"""A review of a commit: the drama at two revisions, compiled, compared, and its changed shots.

`open_review` reads both revisions (fanren/diff/revisions.py), compiles both graphs for one
profile and compares them against the working tree's cache (fanren/diff/compare.py). `shots` then
groups the differences by shot, with each side's keyframe and video where the cache holds them,
for the page (fanren/diff/page.py). Nothing renders unless `build_changed` is called.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..build import cache_root
from ..cache import Cache, canonical_json
from ..compile import Engines, compile_project, resolve_engines
from ..errors import BuildFailed, DramaError, NodeFailure, UsageError
from ..graph import Graph
from ..plan import plan
from ..project import NARRATOR, Project, load_project
from ..run import FAILED, EnginePool, Reporter, run_graph
from .compare import ADDED, REMOVED, Comparison, NodeDiff, Side, compare
from .revisions import Repository, checkout, repository_of

if TYPE_CHECKING:
    from ..remote import RemoteCache

WORKING_TREE = "working tree"
REMOTE_ENV = "FANREN_REMOTE_CACHE"


@dataclass(frozen=True)
class Revision:
    """The drama at one revision (None: the working tree), compiled for the review's profile."""

    revision: str | None
    project: Project
    engines: Engines
    graph: Graph

    @property
    def label(self) -> str:
        return self.revision if self.revision is not None else WORKING_TREE


@dataclass
class Review:
    before: Revision
    after: Revision
    cache: Cache
    comparison: Comparison

    @property
    def profile(self) -> str:
        return self.after.engines.profile


def revisions_to_compare(revisions: tuple[str, ...]) -> tuple[str, str | None]:
    """`fanren diff`'s revisions: none is HEAD against the working tree, one is that revision
    against the working tree, two are the older and the newer."""
    if len(revisions) > 2:
        raise UsageError(f"expected at most two revisions, got {len(revisions)}: {' '.join(revisions)}")
    if not revisions:
        return "HEAD", None
    return revisions[0], (revisions[1] if len(revisions) == 2 else None)


@contextmanager
def open_review(folder: Path, before: str, after: str | None, profile: str = "draft",
                cache_dir: Path | None = None) -> Iterator[Review]:
    """Both revisions of the drama in `folder` compiled and compared; temp folders removed after."""
    folder = Path(folder).absolute()
    repository = repository_of(folder)
    with ExitStack() as stack:
        sides = [_revision(stack, repository, folder, revision, profile) for revision in (before, after)]
        cache = Cache(cache_root(folder, cache_dir), remote=_remote(sides[1].project))
        review = Review(sides[0], sides[1], cache, _compare(sides[0], sides[1], cache))
        yield review


def build_changed(review: Review, jobs: int = 2, reporter: Reporter | None = None) -> None:
    """Render, on both sides, what the page shows of each changed shot (keyframe, clip, shot video),
    and what those read; then compare again. Raises BuildFailed naming the nodes that failed."""
    wanted = {f"{kind}:{shot.shot_id}" for shot in shots(review) for kind in ("keyframe", "clip", "shot")}
    failures: list[NodeFailure] = []
    pool: EnginePool | None = None
    pool_engines = ""
    with review.cache.in_use():
        try:
            for side in (review.before, review.after):
                graph = _closure(side.graph, wanted)
                decisions = plan(graph, review.cache, side.project.root, {})
                if not any(d.stale for d in decisions):
                    continue
                # both sides usually render with the same engines: a model is loaded once, not twice
                engines = canonical_json({f: e.identity() for f, e in side.engines.by_family().items()})
                if pool is None or engines != pool_engines:
                    if pool is not None:
                        pool.unload_all()
                    pool, pool_engines = EnginePool(side.engines.by_family()), engines
                results = run_graph(graph, decisions, pool, review.cache, side.project.root, jobs=jobs,
                                    keep_going=True, reporter=reporter)
                failures += [NodeFailure(f"{r.node.id} ({side.label})", r.error or "failed", r.log)
                             for r in results.values() if r.status == FAILED]
        finally:
            if pool is not None:
                pool.unload_all()
    if failures:
        raise BuildFailed(failures)
    review.comparison = _compare(review.before, review.after, review.cache)


# ── shots, for the page ──────────────────────────────────────────────────────


@dataclass(frozen=True)
class ShotSide:
    """A shot at one revision: its keyframe and video in the cache (None: not rendered) and its text."""

    keyframe: Path | None
    video: Path | None     # the shot's video (speech, subtitles), else its clip's, else None
    video_is_clip: bool    # the shot's video is not rendered; `video` is the silent clip
    text: list[str]        # "action: …", "camera: …", then each spoken line as "who: text"


@dataclass(frozen=True)
class ShotChange:
    shot_id: str
    status: str                    # ADDED, REMOVED or "changed"
    nodes: list[NodeDiff]          # the shot's nodes that differ: keyframe, clip, lines, shot
    before: ShotSide | None
    after: ShotSide | None


def shots(review: Review) -> list[ShotChange]:
    """Every shot with a node that differs, in the newer revision's order, then the removed ones."""
    by_shot: dict[str, list[NodeDiff]] = {}
    for diff in review.comparison.differences:
        shot_id = _shot_of(diff.node_id)
        if shot_id is not None:
            by_shot.setdefault(shot_id, []).append(diff)
    changes: list[ShotChange] = []
    for shot_id, nodes in by_shot.items():
        before = _shot_side(review, review.comparison.before, shot_id)
        after = _shot_side(review, review.comparison.after, shot_id)
        status = ADDED if before is None else REMOVED if after is None else "changed"
        changes.append(ShotChange(shot_id, status, nodes, before, after))
    order = {nid.partition(":")[2]: n for n, nid in enumerate(review.after.graph.nodes) if nid.startswith("shot:")}
    return sorted(changes, key=lambda c: (c.shot_id not in order, order.get(c.shot_id, 0)))


@dataclass(frozen=True)
class CharacterSide:
    """A character sheet at one revision: its picture in the cache (None: not rendered) and its text."""

    image: Path | None
    text: list[str]        # "name: …", "description: …", "reference: …"


@dataclass(frozen=True)
class CharacterChange:
    character_id: str
    diff: NodeDiff
    before: CharacterSide | None
    after: CharacterSide | None


def characters(review: Review) -> list[CharacterChange]:
    """Every character whose sheet differs (its keyframes follow as input-changed shots)."""
    changes: list[CharacterChange] = []
    for diff in review.comparison.differences:
        if diff.node.kind == "character":
            before, after = (_character_side(review, side) for side in (diff.before, diff.after))
            changes.append(CharacterChange(diff.node_id.partition(":")[2], diff, before, after))
    return changes


def _character_side(review: Review, side: Side | None) -> CharacterSide | None:
    if side is None:
        return None
    params = side.node.params
    text = [f"name: {params['name']}", f"description: {params['description']}"]
    if params.get("reference"):
        text.append(f"reference: {params['reference']} ({side.fields['sources'][params['reference']][:12]})")
    return CharacterSide(_object(review.cache, side, "image.png"), text)


def _shot_of(node_id: str) -> str | None:
    kind, _, rest = node_id.partition(":")
    if kind in ("keyframe", "clip", "shot"):
        return rest
    if kind == "line":
        return rest.rpartition(":")[0]
    return None


def _shot_side(review: Review, sides: dict[str, Side], shot_id: str) -> ShotSide | None:
    keyframe, shot, clip = (sides.get(f"{kind}:{shot_id}") for kind in ("keyframe", "shot", "clip"))
    if keyframe is None or shot is None:
        return None
    text = [f"action: {keyframe.node.params['action']}"]
    if keyframe.node.params.get("camera"):
        text.append(f"camera: {keyframe.node.params['camera']}")
    text += [f"{line['who'] if line['who'] != NARRATOR else 'narration'}: {line['text']}"
             for line in shot.node.params["lines"]]
    shot_video = _object(review.cache, shot, "shot.mp4")
    video = shot_video or _object(review.cache, clip, "clip.mp4")
    return ShotSide(_object(review.cache, keyframe, "image.png"), video, shot_video is None and video is not None,
                    text)


def _object(cache: Cache, side: Side | None, name: str) -> Path | None:
    if side is None or side.record is None or name not in side.record.outputs:
        return None
    return cache.object_for_use(side.record, name)


# ── helpers ──────────────────────────────────────────────────────────────────


def _revision(stack: ExitStack, repository: Repository, folder: Path, revision: str | None,
              profile: str) -> Revision:
    root = folder if revision is None else stack.enter_context(checkout(repository, revision))
    try:
        project = load_project(root)
        engines = resolve_engines(project, profile)
        return Revision(revision, project, engines, compile_project(project, engines))
    except DramaError as exc:
        if revision is None:
            raise
        # name the revision's file (HEAD:drama/drama.toml), not the temp folder it was read from
        raise DramaError([replace(p, file=_shown(p.file, root, repository, revision))
                          for p in exc.problems]) from None


def _shown(file: Path | str, root: Path, repository: Repository, revision: str) -> str:
    try:
        relative = Path(file).relative_to(root)
    except ValueError:
        return str(file)
    return f"{revision}:{repository.prefix}{relative.as_posix()}"


def _remote(project: Project) -> RemoteCache | None:
    """The remote tier the newer revision names, read-only: a review pulls what others rendered, and
    what --build renders stays local (a pull request's review holds no write credentials)."""
    if project.cache.remote is None and REMOTE_ENV not in os.environ:
        return None  # not even the remote module is imported
    from ..remote import open_remote

    return open_remote(project.cache.remote, project.file, read_only=True)


def _compare(before: Revision, after: Revision, cache: Cache) -> Comparison:
    return compare(before.graph, before.project.root, after.graph, after.project.root, cache)


def _closure(graph: Graph, wanted: set[str]) -> Graph:
    """The nodes of `graph` in `wanted` and everything they read, in the graph's order."""
    needed: set[str] = set()
    stack = [nid for nid in wanted if nid in graph]
    while stack:
        nid = stack.pop()
        if nid not in needed:
            needed.add(nid)
            stack += graph[nid].inputs
    closure = Graph()
    for node in graph.topological():
        if node.id in needed:
            closure.add(node)
    return closure
