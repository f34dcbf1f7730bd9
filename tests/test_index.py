"""The index of resolved keys (fanren/index.py): it saves reading action records, and it never
changes a decision: every answer equals the planner's answer from the action records alone."""

from __future__ import annotations

import json
from pathlib import Path

from fanren.build import Session, build, open_session
from fanren.plan import plan


def decisions_without_index(session: Session) -> list[tuple[str, str | None, str | None, object]]:
    alone = plan(session.graph, session.cache, session.root, session.lock.get(session.profile, {}))
    return [(d.node.id, d.reason, d.key, d.record) for d in alone]


def decisions(session: Session) -> list[tuple[str, str | None, str | None, object]]:
    return [(d.node.id, d.reason, d.key, d.record) for d in session.decisions]


def test_a_noop_plan_reads_the_index_and_decides_as_the_records_do(small_drama: Path) -> None:
    build(small_drama)  # a copy of a built drama: its first build writes the index of this root
    session = open_session(small_drama)
    assert session.index is not None
    assert (session.index.hits, session.index.misses) == (len(session.graph), 0)
    assert not any(d.stale for d in session.decisions)
    assert decisions(session) == decisions_without_index(session)


def test_a_record_removed_behind_the_index_is_read_as_missing(small_drama: Path) -> None:
    build(small_drama)
    session = open_session(small_drama)
    key = session.decision("clip:s1").key
    assert key is not None
    session.cache.record_path(key).unlink()  # as gc does

    again = open_session(small_drama)
    assert again.decision("clip:s1").reason == "not-cached"
    assert decisions(again) == decisions_without_index(again)
    assert again.index is not None and again.index.misses == 1


def test_a_missing_object_disagrees_with_the_index(small_drama: Path) -> None:
    build(small_drama)
    session = open_session(small_drama)
    record = session.decision("keyframe:s2").record
    assert record is not None
    path = session.cache.object_path(record.outputs["image.png"].digest)
    path.chmod(0o644)
    path.unlink()

    again = open_session(small_drama)
    assert again.decision("keyframe:s2").reason == "not-cached"
    assert decisions(again) == decisions_without_index(again)
    result = build(small_drama)
    assert "keyframe:s2" in {n for n, r in result.results.items() if r.status == "ran"}


def test_a_damaged_index_is_ignored(small_drama: Path) -> None:
    build(small_drama)
    session = open_session(small_drama)
    assert session.index is not None
    session.index.file.write_text("{not json", encoding="utf-8")
    again = open_session(small_drama)
    assert not any(d.stale for d in again.decisions)
    assert again.index is not None and again.index.hits == 0

    session.index.file.write_text(json.dumps({"version": 2, "root": str(small_drama.resolve()),
                                              "profile": "draft", "nodes": {"clip:s1": ["x", 1, 2]}}))
    assert decisions(open_session(small_drama)) == decisions_without_index(again)


def test_the_index_follows_an_edit(small_drama: Path) -> None:
    build(small_drama)
    toml = small_drama / "drama.toml"
    toml.write_text(toml.read_text(encoding="utf-8").replace("长老拦住了她。", "长老挡在她面前。"),
                    encoding="utf-8")
    assert open_session(small_drama).decision("line:s2:0").reason == "changed"
    build(small_drama)
    session = open_session(small_drama)
    assert session.index is not None and session.index.hits == len(session.graph)
    assert decisions(session) == decisions_without_index(session)
