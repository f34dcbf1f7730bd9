"""Two compiled graphs of one drama (two git revisions) → the nodes that differ, and why.

Each node's key fields are computed on both sides with `plan.key_fields` and compared with
`plan.diff_fields`: the same field-level reasons `fanren explain` prints. An input's output digests
come from the cache where that side's input is rendered; where it is not, a stand-in named by a
hash of the input's own key fields takes their place, so an input unchanged between the sides reads
the same on both and one that changed reads differently (its dependents are `input-changed`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..cache import ActionRecord, Cache, Output
from ..graph import Graph, Node
from ..plan import FieldChange, diff_fields, key_fields, key_of, source_digests

ADDED = "added"                # in the newer revision only
REMOVED = "removed"            # in the older revision only
CHANGED = "changed"            # its own key fields differ (params, engine, sources)
INPUT = "input-changed"        # only what it reads from its inputs differs


@dataclass(frozen=True)
class Side:
    """One node at one revision: its key fields, its key and its cached result where known."""

    node: Node
    fields: dict[str, Any]
    key: str | None                 # None while an input is not rendered: its digests are unknown
    record: ActionRecord | None     # the cached result of `key`

    @property
    def rendered(self) -> bool:
        return self.record is not None


@dataclass(frozen=True)
class NodeDiff:
    node_id: str
    status: str                         # ADDED, REMOVED, CHANGED or INPUT
    before: Side | None
    after: Side | None
    changes: tuple[FieldChange, ...] = ()   # its own fields (inputs left out: see changed_inputs)
    changed_inputs: tuple[str, ...] = ()    # input node ids whose outputs differ between the sides

    @property
    def node(self) -> Node:
        side = self.after or self.before
        assert side is not None
        return side.node


@dataclass(frozen=True)
class Comparison:
    before: dict[str, Side]
    after: dict[str, Side]
    differences: list[NodeDiff] = field(default_factory=list)   # new graph's order, then removed

    @property
    def node_count(self) -> int:
        """The nodes compared: those of either revision (a removed node is one of them)."""
        return len(self.after.keys() | self.before.keys())


def resolve(graph: Graph, root: Path, cache: Cache) -> dict[str, Side]:
    """Every node of `graph` with its key fields, and its key and cached result where they are known."""
    sides: dict[str, Side] = {}
    for node in graph.topological():
        inputs = {i: _outputs(sides[i], node.reads.get(i)) for i in node.inputs}
        fields = key_fields(node, inputs, source_digests(node, root, cache))
        known = all(sides[i].record is not None for i in node.inputs)
        key = key_of(fields) if known else None
        record = cache.lookup(key) if key is not None else None
        sides[node.id] = Side(node, fields, key, record)
    return sides


def _outputs(side: Side, names: tuple[str, ...] | None) -> Mapping[str, Output]:
    """An input's outputs: its cached ones, else stand-ins for the ones read (all: "*"), named by
    the input's own key fields."""
    if side.record is not None:
        return side.record.outputs
    stand_in = Output(digest=f"(not rendered: {key_of(side.fields)[:16]})", size=0)
    return dict.fromkeys(names or ("*",), stand_in)


def compare(before: Graph, before_root: Path, after: Graph, after_root: Path, cache: Cache) -> Comparison:
    """The nodes that differ between two graphs of a drama, in the newer graph's order."""
    old, new = resolve(before, before_root, cache), resolve(after, after_root, cache)
    differences: list[NodeDiff] = []
    for node_id, side in new.items():
        if node_id not in old:
            differences.append(NodeDiff(node_id, ADDED, None, side))
            continue
        diff = _node_diff(old[node_id], side)
        if diff is not None:
            differences.append(diff)
    differences += [NodeDiff(node_id, REMOVED, side, None) for node_id, side in old.items() if node_id not in new]
    return Comparison(old, new, differences)


def _node_diff(before: Side, after: Side) -> NodeDiff | None:
    own = {k: v for k, v in before.fields.items() if k != "inputs"}
    changes = tuple(diff_fields(own, {k: v for k, v in after.fields.items() if k != "inputs"}))
    # the key names an input by its id within the episode (`keyframe:b1`); the graph by its full id
    old_inputs = dict(zip(before.node.inputs, (digests for _, digests in before.fields["inputs"])))
    new_inputs = dict(zip(after.node.inputs, (digests for _, digests in after.fields["inputs"])))
    changed_inputs = tuple(i for i in after.node.inputs if old_inputs.get(i) != new_inputs[i])
    if changes or list(before.node.inputs) != list(after.node.inputs):
        status = CHANGED
        if not changes:  # inputs added, removed or reordered: say so as a field of its own
            changes = (FieldChange("inputs", list(before.node.inputs), list(after.node.inputs)),)
    elif changed_inputs:
        status = INPUT
    else:
        return None
    return NodeDiff(after.node.id, status, before, after, changes, changed_inputs)
