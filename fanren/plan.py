"""Graph + cache → which nodes are stale, and why. The one place that decides staleness.

`fanren build`, `status` and `explain` all read their answers from here.

A node's key is the xxh3-128 of the canonical JSON of its key fields: the key schema version, the
node kind, the engine identity, the params (seed included), the digests of its source files and the
digests of its inputs' *outputs* — not their keys, so an input re-rendered into identical bytes stops
the cascade (early cutoff).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cache import ActionRecord, Cache, Output, canonical_json, digest_bytes
from .errors import DramaError, Problem
from .graph import Graph, Node, local_id
from .lockfile import LockEntry

if TYPE_CHECKING:
    from .index import Index

KEY_SCHEMA = 1

# Reason codes, as `fanren status --json` prints them.
NEW = "new"                    # never built: no drama.lock entry and no cached result
CHANGED = "changed"            # its key fields differ from what drama.lock recorded
NOT_CACHED = "not-cached"      # same key as drama.lock, but the cache does not hold it (gc, corruption)
INPUT = "input-changed"        # an input will be rebuilt first; its key is known only after that


def key_fields(node: Node, inputs: Mapping[str, Mapping[str, Output]],
               sources: Mapping[str, str]) -> dict[str, Any]:
    return {
        "schema": KEY_SCHEMA,
        "kind": node.kind,
        "engine": dict(node.identity),
        "params": dict(node.params),
        "sources": dict(sources),
        # a list, not a table: the order of inputs matters (the episode's shots) and a table's
        # keys would be sorted away by the canonical JSON
        "inputs": [[local_id(nid), {name: o.digest for name, o in sorted(node.read_outputs(nid, inputs[nid]).items())}]
                   for nid in node.inputs],
    }


def key_of(fields: Mapping[str, Any]) -> str:
    return digest_bytes(canonical_json(fields).encode("utf-8"))


def source_digests(node: Node, root: Path, cache: Cache) -> dict[str, str]:
    """Digests of a node's source files through the stat memo (an unchanged file is not re-read)."""
    out: dict[str, str] = {}
    for relative in node.sources:
        path = root / relative
        try:
            out[relative] = cache.memo.digest(path)
        except OSError:
            raise DramaError(Problem(root / "drama.toml", node.id, f"the file {relative} to exist",
                                     "it disappeared")) from None
    return out


@dataclass(frozen=True)
class Decision:
    node: Node
    reason: str | None                 # None: fresh, the cached record is used
    key: str | None                    # None while an input is stale
    record: ActionRecord | None
    stale_inputs: tuple[str, ...] = ()

    @property
    def stale(self) -> bool:
        return self.reason is not None


def plan(graph: Graph, cache: Cache, root: Path, lock: Mapping[str, LockEntry],
         index: Index | None = None) -> list[Decision]:
    """Every node in topological order with its decision. Reads action records, never content.

    With an index (fanren/index.py), a node whose computed key the index holds, intact, takes its
    record from there instead of reading the action record: the same record, one file read in all.
    """
    decisions: dict[str, Decision] = {}
    for node in graph.topological():
        stale_inputs = tuple(i for i in node.inputs if decisions[i].stale)
        if stale_inputs:
            decisions[node.id] = Decision(node, INPUT, None, None, stale_inputs)
            continue
        inputs = {i: decisions[i].record.outputs for i in node.inputs}  # type: ignore[union-attr]
        fields = key_fields(node, inputs, source_digests(node, root, cache))
        key = key_of(fields)
        record = index.lookup(node.id, key, fields) if index is not None else None
        if record is None:
            record = cache.lookup(key)
        reason = None if record is not None else _why_missing(node, key, lock)
        decisions[node.id] = Decision(node, reason, key, record)
    return list(decisions.values())


def _why_missing(node: Node, key: str, lock: Mapping[str, LockEntry]) -> str:
    previous = lock.get(node.id)
    if previous is None:
        return NEW
    return NOT_CACHED if previous.key == key else CHANGED


# ── explain ──────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class FieldChange:
    path: str
    before: Any
    after: Any


def diff_fields(before: Any, after: Any, path: str = "") -> list[FieldChange]:
    """Field-level differences between two key-field trees, e.g. `params.action`."""
    if isinstance(before, dict) and isinstance(after, dict):
        changes: list[FieldChange] = []
        for k in sorted(set(before) | set(after), key=str):
            sub = f"{path}.{k}" if path else str(k)
            if k not in before:
                changes.append(FieldChange(sub, None, after[k]))
            elif k not in after:
                changes.append(FieldChange(sub, before[k], None))
            else:
                changes += diff_fields(before[k], after[k], sub)
        return changes
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [c for i, (b, a) in enumerate(zip(before, after, strict=True))
                for c in diff_fields(b, a, f"{path}[{i}]")]
    return [] if before == after else [FieldChange(path, before, after)]


@dataclass(frozen=True)
class Explanation:
    decision: Decision
    previous_key: str | None
    changes: list[FieldChange]        # against the fields recorded for drama.lock's key
    previous_fields_known: bool


def explain(decision: Decision, cache: Cache, root: Path, lock: Mapping[str, LockEntry],
            decisions: Mapping[str, Decision]) -> Explanation:
    """Why a node is stale: its fields today against the fields of the key drama.lock recorded."""
    node = decision.node
    previous = lock.get(node.id)
    old_record = cache.peek(previous.key) if previous else None
    # Inputs that will be rebuilt have no digest yet: compare them as "(will be rebuilt)", under
    # the output names this node reads (a stand-in under another name would be filtered out).
    rebuilt = Output(digest="(will be rebuilt)", size=0)
    inputs = {i: (decisions[i].record.outputs if decisions[i].record is not None else
                  dict.fromkeys(node.reads.get(i) or ("*",), rebuilt)) for i in node.inputs}
    fields = key_fields(node, inputs, source_digests(node, root, cache))
    if old_record is None:
        return Explanation(decision, previous.key if previous else None, [], False)
    return Explanation(decision, previous.key if previous else None,
                       diff_fields(old_record.fields, fields), True)
