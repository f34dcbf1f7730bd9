"""gc of a cache that several dramas may share: keep what any of them reaches, drop the rest.

Every build registers its drama folder in the cache (`roots/`). gc reads each registered drama's
drama.lock (every profile) and plans its current drama.toml (every profile whose engines load here),
and keeps the union. A registered folder that is gone is dropped from the list with a note; a
drama.toml that no longer loads keeps what its drama.lock names. gc runs under the cache's exclusive
lock, so no build is running while it computes what is reached or removes anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .cache import Cache, GcResult
from .errors import FanrenError
from .lockfile import LOCK_FILE, read_lock


@dataclass
class Reached:
    keys: set[str] = field(default_factory=set)
    dramas: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def reached_keys(cache: Cache, also: Path | None = None) -> Reached:
    """The keys every drama registered in `cache` (and `also`) reaches, with notes on what was skipped."""
    from .build import open_session
    from .compile import profile_names
    from .project import DRAMA_FILE
    from .series import SERIES_FILE, load_drama

    reached = Reached()
    roots = cache.drama_roots()
    if also is not None and also.resolve() not in roots:
        roots.append(also.resolve())
    for root in roots:
        if not (root / DRAMA_FILE).is_file() and not (root / SERIES_FILE).is_file():
            reached.notes.append(f"{root}: no {DRAMA_FILE} there any more; dropped from the dramas "
                                 f"using this cache")
            cache.forget_root(root)
            continue
        reached.dramas.append(root)
        reached.keys |= {e.key for entries in read_lock(root).values() for e in entries.values()}
        try:
            project = load_drama(root)  # a series: every episode
        except FanrenError as exc:
            reached.notes.append(f"{root}: {DRAMA_FILE} does not load ({exc.show().splitlines()[0]}); "
                                 f"keeping what its {LOCK_FILE} names")
            continue
        for profile in profile_names(project):
            try:
                session = open_session(root, profile, project=project, cache=cache)
            except FanrenError:
                continue  # a profile whose engines are not installed here reaches nothing now
            reached.keys |= {d.key for d in session.decisions if d.key}
    return reached


def collect_garbage(cache: Cache, drama: Path | None, max_size: int | None,
                    on_wait: Callable[[], None] | None = None) -> tuple[GcResult, Reached]:
    """Wait until no build uses the cache, then remove what no registered drama reaches."""
    with cache.exclusive(on_wait=on_wait):
        reached = reached_keys(cache, drama)
        return cache.gc(reached.keys, max_size), reached
