"""drama.lock: what every node resolved to, per profile. TOML, sorted, diff-friendly, committed.

    version = 1

    [draft."keyframe:s01"]
    key = "9f0c…"
    engine = "card"
    outputs = { "image.png" = "1b2e…" }

A reviewer sees in `git diff drama.lock` exactly which nodes an edit re-rendered.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .cache import atomic_write

LOCK_FILE = "drama.lock"
LOCK_VERSION = 1
HEADER = "# drama.lock: written by `fanren build`. Commit it: it records what every node resolved to.\n"


@dataclass(frozen=True)
class LockEntry:
    key: str
    engine: str
    outputs: dict[str, str]  # output name → digest


def read_lock(root: Path) -> dict[str, dict[str, LockEntry]]:
    """profile → node id → entry. A missing or unreadable lock reads as empty (it is a record, not input)."""
    try:
        raw = tomllib.loads((root / LOCK_FILE).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        return {}
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


def write_lock(root: Path, lock: Mapping[str, Mapping[str, LockEntry]]) -> bool:
    """Write drama.lock if its content changed. Returns whether it was written."""
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
    return True
