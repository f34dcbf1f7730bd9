"""The cache on its own: content store, action records, stat memo, validation, locks, gc."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from fanren.cache import Cache, StatMemo, canonical_json, digest_file
from fanren.errors import EngineError


def test_canonical_json_is_order_independent() -> None:
    assert canonical_json({"b": 1, "a": [1, {"d": 2, "c": "汉"}]}) == '{"a":[1,{"c":"汉","d":2}],"b":1}'


def test_commit_stores_read_only_objects_and_a_record(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "c")
    work = cache.new_tmp()
    (work / "cues.json").write_text("[]", encoding="utf-8")
    record = cache.commit("k" * 32, "line:s1:0", "line", "espeak", {"x": 1}, {"cues.json": work / "cues.json"}, 1.0)
    obj = cache.object_path(record.outputs["cues.json"].digest)
    assert obj.read_text() == "[]"
    assert not os.access(obj, os.W_OK) or os.geteuid() == 0
    assert oct(obj.stat().st_mode & 0o777) == "0o444"
    assert cache.lookup("k" * 32) == record


def test_commit_rejects_invalid_outputs(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "c")
    work = cache.new_tmp()
    (work / "image.png").write_bytes(b"\x89PNG but not really")
    with pytest.raises(EngineError, match="image.png is not a valid .png"):
        cache.commit("a" * 32, "keyframe:s1", "keyframe", "card", {}, {"image.png": work / "image.png"}, 0)
    (work / "empty.wav").write_bytes(b"")
    with pytest.raises(EngineError, match="empty.wav is empty"):
        cache.commit("b" * 32, "line:s1:0", "line", "espeak", {}, {"empty.wav": work / "empty.wav"}, 0)
    with pytest.raises(EngineError, match="without writing any output"):
        cache.commit("c" * 32, "line:s1:0", "line", "espeak", {}, {}, 0)
    assert cache.lookup("a" * 32) is None


def test_stat_memo_hashes_unchanged_files_once(tmp_path: Path) -> None:
    file = tmp_path / "ref.png"
    file.write_bytes(b"abc")
    memo = StatMemo(tmp_path / "memo.json")
    assert memo.digest(file) == digest_file(file)
    memo.save()
    again = StatMemo(tmp_path / "memo.json")
    assert again.digest(file) == digest_file(file)
    assert again.hashed == 0
    file.write_bytes(b"abcd")
    assert again.digest(file) == digest_file(file)
    assert again.hashed == 1


def test_lock_is_exclusive_between_processes(tmp_path: Path) -> None:
    import subprocess
    import sys

    cache = Cache(tmp_path / "c")
    with cache.lock("project-x") as taken:
        assert taken
        code = (f"from fanren.cache import Cache; c = Cache({str(tmp_path / 'c')!r});\n"
                "with c.lock('project-x', blocking=False) as t: print(t)")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
        assert out.strip() == "False"


def test_gc_keeps_reached_keys_and_removes_the_rest(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "c")
    for key, text in (("1" * 32, "[1]"), ("2" * 32, "[2]")):
        work = cache.new_tmp()
        (work / "cues.json").write_text(text)
        cache.commit(key, "n", "line", "espeak", {}, {"cues.json": work / "cues.json"}, 1.0)
    result = cache.gc({"1" * 32}, None)
    assert (result.records_removed, result.objects_removed) == (1, 1)
    assert cache.lookup("1" * 32) is not None and cache.lookup("2" * 32) is None
    result = cache.gc({"1" * 32}, max_size=0)
    assert cache.lookup("1" * 32) is None and result.bytes_kept == 0
