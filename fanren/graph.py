"""Node and Graph: plain data, no I/O.

A node's params are exactly what its engine is asked to do; with the engine identity, the digests
of its sources and the digests of its inputs' outputs they make its key (see plan.py).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

KINDS = ("character", "keyframe", "clip", "line", "shot", "subtitles", "episode", "storyboard", "picture",
         "export", "consistency")


def local_id(node_id: str) -> str:
    """A node's id within its episode (`ep01/shot:s1` → `shot:s1`): what engines and keys see, so an
    episode of a series keys as the same drama built alone would."""
    return node_id.rpartition("/")[2]


@dataclass(frozen=True)
class Node:
    id: str                           # "keyframe:s01" — stable across edits, used in drama.lock
    kind: str                         # one of KINDS
    family: str                       # which engine renders it: image | video | voice | mux | report | check
    engine: str                       # that engine's name, e.g. "card"
    identity: Mapping[str, Any]       # the engine's identity (name, version, options)
    params: Mapping[str, Any]         # what the engine is asked to do (JSON-able)
    inputs: tuple[str, ...] = ()      # node ids whose outputs this node reads, in order
    sources: tuple[str, ...] = ()     # drama-relative files (refs, prompt wavs) hashed into the key
    gpu: bool = False                 # runs on the GPU worker, grouped by engine
    # For inputs listed here, only these outputs are read (and keyed): subtitles read a shot's
    # timing.json, not its video, so a re-rendered picture does not re-time the subtitles.
    reads: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def read_outputs(self, input_id: str, outputs: Mapping[str, Any]) -> dict[str, Any]:
        """The outputs of `input_id` this node reads, by name."""
        names = self.reads.get(input_id)
        return {n: o for n, o in outputs.items() if names is None or n in names}


@dataclass
class Graph:
    nodes: dict[str, Node] = field(default_factory=dict)  # insertion order is a topological order

    def add(self, node: Node) -> Node:
        missing = [i for i in node.inputs if i not in self.nodes]
        if missing:
            raise ValueError(f"{node.id}: inputs {missing} must be added before it")
        if node.id in self.nodes:
            raise ValueError(f"duplicate node id {node.id}")
        self.nodes[node.id] = node
        return node

    def topological(self) -> Iterator[Node]:
        return iter(self.nodes.values())

    def dependents(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {nid: [] for nid in self.nodes}
        for node in self.nodes.values():
            for dep in node.inputs:
                out[dep].append(node.id)
        return out

    def __contains__(self, node_id: object) -> bool:
        return node_id in self.nodes

    def __getitem__(self, node_id: str) -> Node:
        return self.nodes[node_id]

    def __len__(self) -> int:
        return len(self.nodes)

    def to_dot(self) -> str:
        lines = ["digraph fanren {", "  rankdir=LR;", '  node [shape=box, fontname="Helvetica"];']
        for node in self.nodes.values():
            lines.append(f'  "{node.id}" [label="{node.id}\\n{node.engine}"];')
            lines += [f'  "{dep}" -> "{node.id}";' for dep in node.inputs]
        lines.append("}")
        return "\n".join(lines) + "\n"

    def to_mermaid(self) -> str:
        ids = {nid: f"n{i}" for i, nid in enumerate(self.nodes)}
        lines = ["flowchart LR"]
        for node in self.nodes.values():
            lines.append(f'  {ids[node.id]}["{node.id}<br/>{node.engine}"]')
            lines += [f"  {ids[dep]} --> {ids[node.id]}" for dep in node.inputs]
        return "\n".join(lines) + "\n"
