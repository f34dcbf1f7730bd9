"""drama.lock: what every node resolved to, per profile. TOML, sorted, diff-friendly, committed.

    version = 1

    [draft."keyframe:s01"]
    key = "9f0c…"
    engine = "card"
    outputs = { "image.png" = "1b2e…" }

A reviewer sees in `git diff drama.lock` exactly which nodes an edit re-rendered.
"""

from __future__ import annotations

import contextlib
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .cache import atomic_write


def _same(a: Mapping[str, Mapping[str, LockEntry]], b: Mapping[str, Mapping[str, LockEntry]]) -> bool:
    return {k: dict(v) for k, v in a.items() if v} == {k: dict(v) for k, v in b.items() if v}

LOCK_FILE = "drama.lock"
LOCK_VERSION = 1
HEADER = "# drama.lock: written by `fanren build`. Commit it: it records what every node resolved to.\n"


@dataclass(frozen=True)
class LockEntry:
    key: str
    engine: str
    outputs: dict[str, str]  # output name → digest


def read_lock(root: Path, memo: Path | None = None) -> dict[str, dict[str, LockEntry]]:
    """profile → node id → entry. A missing or unreadable lock reads as empty (it is a record, not input).

    With `memo` (a file in the cache), the parsed lock is kept as JSON under the lock file's stat, so
    an unchanged drama.lock is not parsed as TOML again: tomllib is pure Python and, on a 1,000-shot
    drama, parsing the lock would cost more than the whole rest of a no-op build's planning.
    """
    path = root / LOCK_FILE
    try:
        st = path.stat()
        stamp = [st.st_ino, st.st_mtime_ns, st.st_size]
    except OSError:
        return {}
    raw: dict[str, Any] | None = None
    if memo is not None:
        try:
            cached = json.loads(memo.read_text(encoding="utf-8"))
            if cached.get("stamp") == stamp:
                raw = cached["lock"]
        except (OSError, ValueError, AttributeError, KeyError):
            raw = None
    if raw is None:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
            return {}
        if memo is not None:
            with contextlib.suppress(OSError):
                atomic_write(memo, json.dumps({"stamp": stamp, "lock": raw}, separators=(",", ":")))
    out: dict[str, dict[str, LockEntry]] = {}
    for profile, nodes in raw.items():
        if not isinstance(nodes, dict):
            continue
        entries: dict[str, LockEntry] = {}
        for node_id, entry in nodes.items():
            try:
                entries[node_id] = LockEntry(str(entry["key"]), str(entry["engine"]),
                                             {str(k): str(v) for k, v in entry["outputs"].items()})
            except (KeyError, TypeError, AttributeError):
                continue
        out[profile] = entries
    return out


def write_lock(root: Path, lock: Mapping[str, Mapping[str, LockEntry]],
               previous: Mapping[str, Mapping[str, LockEntry]] | None = None, memo: Path | None = None) -> bool:
    """Write drama.lock if its content changed (compared with `previous`, the lock as read, when
    given; else with the file). Returns whether it was written."""
    if previous is not None and _same(lock, previous) and (root / LOCK_FILE).exists():
        return False
    import tomli_w

    doc: dict[str, object] = {"version": LOCK_VERSION}
    for profile in sorted(lock):
        doc[profile] = {nid: {"key": e.key, "engine": e.engine, "outputs": dict(sorted(e.outputs.items()))}
                        for nid, e in sorted(lock[profile].items())}
    text = HEADER + tomli_w.dumps(doc)
    path = root / LOCK_FILE
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except OSError:
        pass
    atomic_write(path, text)
    if memo is not None:  # the next read_lock finds the parsed form under the new stat
        st = path.stat()
        with contextlib.suppress(OSError):
            atomic_write(memo, json.dumps({"stamp": [st.st_ino, st.st_mtime_ns, st.st_size], "lock": doc},
                                          separators=(",", ":")))
    return True
