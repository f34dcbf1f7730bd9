"""The index: what every node of one drama's profile last resolved to, in one file of the cache.

A no-op build asks the cache about every node; reading one action record per node made that the
largest part of planning (856 records for the 200-shot bench drama). The index holds, per drama
and profile, node id → the key it last resolved to, that key's outputs (digest and size) and the
rest of its action record, with the stat of the record file it mirrors:

    index/<xxh3 of the drama root and profile>.json
    {"version": 1, "root": …, "profile": …,
     "nodes": {node id: [key, [record inode, mtime_ns, size], node, kind, engine, seconds, host,
                         time, {output: [digest, size]}]}}

It decides nothing. plan.py computes every key exactly as before and asks `lookup(node id, key,
fields)` before `Cache.lookup(key)`. An entry answers only when it holds that very key, the action
record it mirrors is still there unchanged (a record that gc removed or a commit rewrote has
another stat) and every output object passes the cache's own check (`Cache.verify_object`: its
size, and its digest through the stat memo, so no content is read). Anything else is a miss, and
the planner reads the action record as it always did, which also removes what is corrupt. A lost,
stale or damaged index costs time, never a wrong decision.

The record's `fields` are not stored: a key is the digest of its fields, so the record of the key
the planner just computed holds exactly the fields it computed them from.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .cache import ActionRecord, Cache, Output, atomic_write, digest_bytes

INDEX_VERSION = 2  # 2: outputs carry their sha256


class Index:
    """The index of one drama (its root folder) built with one profile, over one cache."""

    def __init__(self, cache: Cache, root: Path, profile: str) -> None:
        self.cache = cache
        self.root = str(Path(root).resolve())
        self.profile = profile
        name = digest_bytes(f"{self.root}\0{profile}".encode())
        self.file = cache.root / "index" / f"{name}.json"
        self.hits = 0
        self.misses = 0
        self._entries: dict[str, list[Any]] = {}
        with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
            raw = json.loads(self.file.read_text(encoding="utf-8"))
            if raw.get("version") == INDEX_VERSION and raw.get("root") == self.root \
                    and raw.get("profile") == profile and isinstance(raw.get("nodes"), dict):
                self._entries = raw["nodes"]
        self._saved = dict(self._entries)
        self._served: dict[str, ActionRecord] = {}  # node id → the record this index answered with

    def lookup(self, node_id: str, key: str, fields: dict[str, Any]) -> ActionRecord | None:
        """The record of `key` for `node_id` if the index holds it and it checks out; else None."""
        entry = self._entries.get(node_id)
        record = self._record(entry, key, fields) if entry is not None and entry[0] == key else None
        if record is None:
            self.misses += 1
        else:
            self.hits += 1
            self._served[node_id] = record
        return record

    def _record(self, entry: list[Any], key: str, fields: dict[str, Any]) -> ActionRecord | None:
        try:
            _, stamp, node, kind, engine, seconds, host, time, outputs = entry
            if _stamp(self.cache.actions.file(key)) != stamp:
                return None
            objects = {str(name): Output(digest=str(o[0]), size=int(o[1]), sha256=o[2] and str(o[2]))
                       for name, o in outputs.items()}
        except (OSError, ValueError, TypeError, AttributeError, IndexError):
            return None
        if not objects or not all(self.cache.verify_object(o) for o in objects.values()):
            return None
        return ActionRecord(key=key, node=str(node), kind=str(kind), engine=str(engine), fields=fields,
                            outputs=objects, seconds=float(seconds), host=str(host), time=float(time))

    def update(self, records: Mapping[str, ActionRecord], nodes: set[str] | None = None) -> None:
        """Note what each node resolved to; drop nodes that are no longer in the graph (`nodes`)."""
        for node_id, record in records.items():
            if self._served.get(node_id) is record:
                continue  # the very record its entry gave: the entry holds it already (a no-op: all)
            self._served.pop(node_id, None)
            entry = self._entries.get(node_id)
            if entry is not None and entry[0] == record.key and self._matches(entry, record):
                continue
            try:
                stamp = _stamp(self.cache.record_path(record.key))
            except OSError:
                self._entries.pop(node_id, None)
                continue
            outputs = _outputs(record)
            self._entries[node_id] = [record.key, stamp, record.node, record.kind, record.engine,
                                      record.seconds, record.host, record.time, outputs]
        if nodes is not None:
            for node_id in [n for n in self._entries if n not in nodes]:
                del self._entries[node_id]

    @staticmethod
    def _matches(entry: list[Any], record: ActionRecord) -> bool:
        return entry[2:9] == [record.node, record.kind, record.engine, record.seconds, record.host,
                              record.time, _outputs(record)]

    def save(self) -> None:
        """Write the index if it changed (not fsynced: losing it costs a slower plan, nothing else)."""
        if self._entries == self._saved:
            return
        self.file.parent.mkdir(exist_ok=True)
        text = json.dumps({"version": INDEX_VERSION, "root": self.root, "profile": self.profile,
                           "nodes": self._entries}, ensure_ascii=False, separators=(",", ":"))
        with contextlib.suppress(OSError):
            atomic_write(self.file, text, durable=False)
            self._saved = dict(self._entries)


def _outputs(record: ActionRecord) -> dict[str, list[Any]]:
    """A record's outputs as the index keeps them: name → [xxh3-128, size, sha256 or None]."""
    return {name: [o.digest, o.size, o.sha256] for name, o in sorted(record.outputs.items())}


def _stamp(path: Path | str) -> list[int]:
    st = os.stat(path)
    return [st.st_ino, st.st_mtime_ns, st.st_size]
