"""`fanren build --check`: render cached nodes again and compare the bytes (after Nix's `--check`).

Same key, same bytes is what lets early cutoff and a shared cache work: a node whose engine gives
other bytes for the same request re-runs everything downstream of it on every machine and fills
a shared cache with two answers to one question. This module proves the rule for the engines and
the machine at hand: every node of a finished build is rendered again from the very inputs its
action record names, and every output is compared with the cached one. Nothing is committed.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .cache import ActionRecord, Cache, digest_file
from .errors import FanrenError
from .executors.local import run_engine
from .graph import Graph, Node
from .run import EnginePool, input_files


@dataclass(frozen=True)
class Mismatch:
    """A node whose second rendering differs from its cached outputs."""

    node: str
    engine: str
    outputs: dict[str, tuple[str, str]]  # output name → (cached digest, new digest; "" if missing)

    def show(self) -> str:
        parts = [f"{name} (cached {cached[:12]}, now {new[:12] or 'missing'})"
                 for name, (cached, new) in sorted(self.outputs.items())]
        return f"{self.node} ({self.engine}): {', '.join(parts)}"


class CheckFailed(FanrenError):
    """Rendering a cached node again gave other bytes. Exit code 1."""

    exit_code = 1

    def __init__(self, mismatches: list[Mismatch], checked: int) -> None:
        self.mismatches = mismatches
        super().__init__(self.show_all(checked))

    def show_all(self, checked: int) -> str:
        lines = [(f"error: {len(self.mismatches)} of {checked} node(s) gave other bytes than the cache holds "
                  "(same key, not the same bytes: the engine is not deterministic on this machine)")]
        lines += ["  " + m.show() for m in self.mismatches]
        return "\n".join(lines)

    def show(self) -> str:
        return str(self)


def check_nodes(graph: Graph, records: Mapping[str, ActionRecord], engines: EnginePool, cache: Cache,
                root: Path, kinds: set[str] | None = None,
                on_node: Callable[[int, int, Node], None] = lambda done, total, node: None) -> list[Mismatch]:
    """Render every node of `graph` that has a record (of `kinds`, if given) again and return the
    ones whose outputs differ. CPU engines first, then each GPU engine's nodes together, so every
    model loads once."""
    nodes = [n for n in graph.topological() if n.id in records and (kinds is None or n.kind in kinds)]
    nodes.sort(key=lambda n: (n.gpu, n.family))  # stable: topological within a family
    mismatches: list[Mismatch] = []
    for done, node in enumerate(nodes):
        on_node(done, len(nodes), node)
        mismatch = _check_node(node, records, engines, cache, root)
        if mismatch is not None:
            mismatches.append(mismatch)
    return mismatches


def _check_node(node: Node, records: Mapping[str, ActionRecord], engines: EnginePool, cache: Cache,
                root: Path) -> Mismatch | None:
    record = records[node.id]
    tmp = cache.new_tmp()
    try:
        files = run_engine(engines, node.family, node.id, node.kind, node.params,
                           input_files(node, records, cache), {s: root / s for s in node.sources}, tmp,
                           progress=lambda fraction, message: None)
        new = {name: digest_file(Path(path)) for name, path in files.items()}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    differ = {name: (output.digest, new.get(name, ""))
              for name, output in record.outputs.items() if new.get(name) != output.digest}
    return Mismatch(node.id, node.engine, differ) if differ else None
