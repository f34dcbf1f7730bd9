"""A review of a commit: the drama at two revisions, compiled, compared, and its changed shots.

`open_review` reads both revisions (fanren/diff/revisions.py), compiles both graphs for one
profile and compares them against the working tree's cache (fanren/diff/compare.py). `shots` then
groups the differences by shot, with each side's keyframe and video where the cache holds them,
for the page (fanren/diff/page.py). Nothing renders unless `build_changed` is called.

A series is read whole at each revision (series.toml and every episode) and compiled into its one
graph; its node ids carry their episode (`ep02/shot:b1`), and `by_episode` groups the differences:
the shared sheets first, then each episode in series order. An episode folder reviews that episode:
its nodes and the shared sheets they read, from the whole series compiled at each revision.
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
from ..compile import Engines, compile_drama, resolve_engines
from ..errors import BuildFailed, DramaError, NodeFailure, Problem, UsageError
from ..graph import Graph
from ..plan import plan
from ..project import DRAMA_FILE, NARRATOR, Project, load_project
from ..run import FAILED, EnginePool, Reporter, run_graph
from ..series import SERIES_FILE, Series, load_series, series_root
from .compare import ADDED, REMOVED, Comparison, NodeDiff, Side, compare
from .revisions import Repository, checkout, repository_of

if TYPE_CHECKING:
    from ..remote import RemoteCache

WORKING_TREE = "working tree"
REMOTE_ENV = "FANREN_REMOTE_CACHE"


@dataclass(frozen=True)
class Revision:
    """The drama or series at one revision (None: the working tree), compiled for the review's profile."""

    revision: str | None
    project: Project | Series
    engines: Engines
    graph: Graph                  # of a series reviewed by episode: that episode and the sheets it reads

    @property
    def label(self) -> str:
        return self.revision if self.revision is not None else WORKING_TREE


@dataclass
class Review:
    before: Revision
    after: Revision
    cache: Cache
    comparison: Comparison
    episode: str | None = None    # the episode folder reviewed, of a series

    @property
    def profile(self) -> str:
        return self.after.engines.profile

    @property
    def is_series(self) -> bool:
        return isinstance(self.after.project, Series)

    def episodes(self) -> list[str]:
        """A series' episodes in the newer revision's order, then those only the older one has."""
        ids = [e for side in (self.after, self.before) if isinstance(side.project, Series)
               for e in side.project.episodes if self.episode in (None, e)]
        return list(dict.fromkeys(ids))

    def title_of(self, episode: str) -> str:
        """An episode's title, at the newer revision where it is there."""
        for side in (self.after, self.before):
            if isinstance(side.project, Series) and episode in side.project.episodes:
                return side.project.episodes[episode].drama.title
        return episode


def episode_of(node_id: str) -> str | None:
    """The episode a node of a series belongs to (`ep02/shot:b1` → ep02); None for a shared sheet
    and for every node of a single drama."""
    head, slash, _ = node_id.partition("/")
    return head if slash else None


def by_episode(review: Review) -> list[tuple[str | None, list[NodeDiff]]]:
    """A series' differences grouped: the shared sheets (None) first, then each episode in series
    order; only groups with a difference."""
    groups: dict[str | None, list[NodeDiff]] = {None: [], **{e: [] for e in review.episodes()}}
    for diff in review.comparison.differences:
        groups.setdefault(episode_of(diff.node_id), []).append(diff)
    return [(episode, diffs) for episode, diffs in groups.items() if diffs]


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
    """Both revisions of the drama or series in `folder` compiled and compared; temp folders removed
    after. An episode folder of a series reviews that episode (see the module docstring)."""
    folder = Path(folder).absolute()
    root = series_root(folder) if folder.is_dir() else None
    episode = folder.name if root is not None and root != folder else None
    folder = root or folder
    repository = repository_of(folder)
    expected = SERIES_FILE if root is not None else DRAMA_FILE
    with ExitStack() as stack:
        sides = [_revision(stack, repository, folder, revision, profile, expected)
                 for revision in (before, after)]
        _same_kind(repository, *sides)
        if episode is not None:
            sides = _episode(folder, episode, *sides)
        cache = Cache(cache_root(folder, cache_dir), remote=_remote(sides[1].project))
        review = Review(sides[0], sides[1], cache, _compare(sides[0], sides[1], cache), episode)
        yield review


def build_changed(review: Review, jobs: int = 2, reporter: Reporter | None = None) -> None:
    """Render, on both sides, what the page shows of each changed shot (keyframe, clip, shot video),
    and what those read; then compare again. Raises BuildFailed naming the nodes that failed."""
    wanted = {shot.node_id(kind) for shot in shots(review) for kind in ("keyframe", "clip", "shot")}
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
    shot_id: str                   # the id within its episode
    episode: str | None            # of a series; None in a single drama
    status: str                    # ADDED, REMOVED or "changed"
    nodes: list[NodeDiff]          # the shot's nodes that differ: keyframe, clip, lines, shot
    before: ShotSide | None
    after: ShotSide | None

    def node_id(self, kind: str) -> str:
        """The id of the shot's node of `kind` in the graph (`ep02/keyframe:b1`)."""
        return f"{self.episode}/{kind}:{self.shot_id}" if self.episode else f"{kind}:{self.shot_id}"


def shots(review: Review) -> list[ShotChange]:
    """Every shot with a node that differs, in the newer revision's order, then the removed ones."""
    by_shot: dict[tuple[str | None, str], list[NodeDiff]] = {}
    for diff in review.comparison.differences:
        shot_id = _shot_of(diff)
        if shot_id is not None:
            by_shot.setdefault((episode_of(diff.node_id), shot_id), []).append(diff)
    changes: list[ShotChange] = []
    for (episode, shot_id), nodes in by_shot.items():
        prefix = f"{episode}/" if episode else ""
        before = _shot_side(review, review.comparison.before, prefix, shot_id)
        after = _shot_side(review, review.comparison.after, prefix, shot_id)
        status = ADDED if before is None else REMOVED if after is None else "changed"
        changes.append(ShotChange(shot_id, episode, status, nodes, before, after))
    order = {nid: n for n, nid in enumerate(review.after.graph.nodes)}
    return sorted(changes, key=lambda c: (c.node_id("shot") not in order, order.get(c.node_id("shot"), 0)))


@dataclass(frozen=True)
class CharacterSide:
    """A character sheet at one revision: its picture in the cache (None: not rendered) and its text."""

    image: Path | None
    text: list[str]        # "name: …", "description: …", "reference: …"


@dataclass(frozen=True)
class CharacterChange:
    character_id: str              # `lin`, or `lin@old` for a look's sheet
    episode: str | None            # an episode's own sheet (it redefines the character); None: shared
    diff: NodeDiff
    before: CharacterSide | None
    after: CharacterSide | None


def characters(review: Review) -> list[CharacterChange]:
    """Every character whose sheet differs (its keyframes follow as input-changed shots)."""
    changes: list[CharacterChange] = []
    for diff in review.comparison.differences:
        if diff.node.kind == "character":
            before, after = (_character_side(review, side) for side in (diff.before, diff.after))
            changes.append(CharacterChange(diff.node_id.partition(":")[2], episode_of(diff.node_id), diff,
                                           before, after))
    return changes


def _character_side(review: Review, side: Side | None) -> CharacterSide | None:
    if side is None:
        return None
    params = side.node.params
    text = [f"name: {params['name']}", f"description: {params['description']}"]
    if params.get("reference"):
        text.append(f"reference: {params['reference']} ({side.fields['sources'][params['reference']][:12]})")
    return CharacterSide(_object(review.cache, side, "image.png"), text)


def _shot_of(diff: NodeDiff) -> str | None:
    """The shot (its id within the episode) a keyframe, clip, line or shot node belongs to."""
    rest = diff.node_id.rpartition("/")[2].partition(":")[2]
    if diff.node.kind in ("keyframe", "clip", "shot"):
        return rest
    if diff.node.kind == "line":
        return rest.rpartition(":")[0]
    return None


def _shot_side(review: Review, sides: dict[str, Side], prefix: str, shot_id: str) -> ShotSide | None:
    keyframe, shot, clip = (sides.get(f"{prefix}{kind}:{shot_id}") for kind in ("keyframe", "shot", "clip"))
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
              profile: str, expected: str) -> Revision:
    root = folder if revision is None else stack.enter_context(checkout(repository, revision, expected))
    try:
        # what the folder is at that revision decides how it is read, whatever it is now
        drama = load_series(root) if (root / SERIES_FILE).is_file() else load_project(root)
        engines = resolve_engines(drama, profile)
        return Revision(revision, drama, engines, compile_drama(drama, engines))
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


def _same_kind(repository: Repository, before: Revision, after: Revision) -> None:
    """A drama at one revision and a series at the other share no node ids (`keyframe:s1` against
    `ep01/keyframe:s1`): bad input naming the revision without series.toml."""
    if isinstance(before.project, Series) == isinstance(after.project, Series):
        return
    single, series = (before, after) if isinstance(after.project, Series) else (after, before)
    raise DramaError(Problem(
        repository.shown(single.revision, SERIES_FILE), "",
        f"a {SERIES_FILE} {_at(single)}, as {_at(series)}", f"a single drama ({DRAMA_FILE})",
        hint="a drama and a series share no node ids; compare two revisions of the series"))


def _at(side: Revision) -> str:
    return f"at revision {side.revision}" if side.revision is not None else "in the working tree"


def _episode(folder: Path, episode: str, before: Revision, after: Revision) -> list[Revision]:
    """Both sides cut down to the episode's nodes and the sheets they read. A sheet either side's
    episode reads is kept on both, so an episode added since reads the older sheets as unchanged."""
    if not any(isinstance(s.project, Series) and episode in s.project.episodes for s in (before, after)):
        raise UsageError(f"{folder / episode} is not an episode of the series in {folder} "
                         f"{_at(before)} nor {_at(after)}")
    wanted = {nid for s in (before, after) for nid in _closure(s.graph, {
        n for n in s.graph.nodes if episode_of(n) == episode}).nodes}
    return [replace(s, graph=_closure(s.graph, wanted)) for s in (before, after)]


def _remote(project: Project | Series) -> RemoteCache | None:
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
