"""The cache on its own: content store, action cache, stat memo, validation, locks, verify, gc."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import pytest
from conftest import fanren, ran

from fanren.cache import ActionCache, Cache, ContentStore, StatMemo, canonical_json, digest_file
from fanren.errors import CacheCorrupt, EngineError


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


def commit_json(cache: Cache, key: str, text: str, node: str = "n"):
    work = cache.new_tmp()
    (work / "cues.json").write_text(text)
    return cache.commit(key, node, "line", "espeak", {}, {"cues.json": work / "cues.json"}, 1.0)


def overwrite_keeping_stat(path: Path, data: bytes) -> None:
    """Replace a file's bytes in place with its inode, size and mtime kept (what a bit flip does)."""
    st = path.stat()
    assert len(data) == st.st_size
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.write(data)
    os.chmod(path, 0o444)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns, after.st_size) == (st.st_ino, st.st_mtime_ns, st.st_size)


def test_content_store_and_action_cache_are_apart(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "c")
    record = commit_json(cache, "d" * 32, "[1]")
    assert isinstance(cache.store, ContentStore) and isinstance(cache.actions, ActionCache)
    digest = record.outputs["cues.json"].digest
    assert cache.store.path(digest) == tmp_path / "c" / "objects" / digest[:2] / digest[2:]
    assert cache.actions.path("d" * 32) == tmp_path / "c" / "actions" / "dd" / f"{'d' * 32}.json"
    assert list(cache.store.digests()) == [digest]
    # what the rest of fanren calls (the index, the scheduler, the live page) stays on Cache
    assert cache.object_path(digest) == cache.store.path(digest)
    assert cache.record_path("d" * 32) == cache.actions.path("d" * 32)
    assert cache.verify_object(record.outputs["cues.json"])
    assert cache.actions.get("d" * 32) == record
    # the action cache alone does not look at objects; lookup does
    cache.store.remove(digest)
    assert cache.actions.get("d" * 32) == record
    assert cache.lookup("d" * 32) is None and cache.actions.get("d" * 32) is None


def test_verify_finds_an_object_corrupted_with_its_stat_restored(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "c")
    good = commit_json(cache, "1" * 32, "[1, 2, 3]")
    bad = commit_json(cache, "2" * 32, "[4, 5, 6]")
    path = cache.object_path(bad.outputs["cues.json"].digest)
    overwrite_keeping_stat(path, b"[4, 5, 7]")
    assert cache.lookup("2" * 32) == bad  # the stat memo trusts the unchanged stat: only verify can tell
    seen: list[tuple[int, int]] = []
    result = cache.verify(lambda done, total: seen.append((done, total)))
    assert (result.objects_checked, result.objects_removed, result.records_removed) == (2, 1, 1)
    assert seen == [(1, 2), (2, 2)]
    assert not path.exists()
    assert cache.lookup("2" * 32) is None and cache.lookup("1" * 32) == good


def test_a_truncated_object_is_caught_by_size_at_use(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "c")
    record = commit_json(cache, "3" * 32, "[1, 2, 3]", node="line:s1:0")
    path = cache.object_for_use(record, "cues.json")
    os.chmod(path, 0o644)
    path.write_bytes(b"[1]")
    with pytest.raises(CacheCorrupt) as caught:
        cache.object_for_use(record, "cues.json")
    assert str(caught.value) == (f"cache: object {record.outputs['cues.json'].digest} (cues.json of line:s1:0) "
                                 "changed size after it was checked; removed, run the build again to "
                                 "re-render it")
    assert not path.exists() and cache.actions.get("3" * 32) is None


def test_shared_locks_exclude_an_exclusive_one(tmp_path: Path) -> None:
    cache = Cache(tmp_path / "c")
    other = Cache(tmp_path / "c")
    with cache.lock("in-use", shared=True) as first, other.lock("in-use", shared=True) as second:
        assert first and second
        with other.lock("in-use", blocking=False) as exclusive:
            assert not exclusive
    with other.lock("in-use", blocking=False) as exclusive:
        assert exclusive


def object_of(drama: Path, node: str, output: str) -> Path:
    lock = tomllib.loads((drama / "drama.lock").read_text(encoding="utf-8"))["draft"]
    digest = lock[node]["outputs"][output]
    return drama / ".fanren-cache" / "objects" / digest[:2] / digest[2:]


def test_cache_verify_drops_a_same_size_corruption_and_the_build_rerenders_that_node(small_drama: Path) -> None:
    assert fanren("build", small_drama).code == 0  # the copy has new inodes: refresh the stat memo
    assert ran(small_drama) == set()
    obj = object_of(small_drama, "keyframe:s2", "image.png")
    original = obj.read_bytes()
    overwrite_keeping_stat(obj, original[:-8] + bytes(b ^ 0xFF for b in original[-8:]))
    status = fanren("status", small_drama)
    assert status.stdout.startswith("up to date")  # what issue 10 reported: nothing can see it
    objects = len(list((small_drama / ".fanren-cache" / "objects").glob("*/*")))
    result = fanren("cache", "verify", small_drama)
    assert result.code == 1, result.stderr
    assert result.stdout == f"checked {objects} objects: 1 corrupt removed, 1 action records removed\n"
    assert f"verified {objects}/{objects} objects" in result.stderr
    build = fanren("build", small_drama)
    assert build.code == 0, build.stderr
    # the card engine is deterministic: the keyframe comes back with the same bytes, so nothing else runs
    assert ran(small_drama) == {"keyframe:s2"}
    assert obj.read_bytes() == original
    again = fanren("cache", "verify", small_drama)
    assert (again.code, again.stdout) == (0, (f"checked {objects} objects: 0 corrupt removed, "
                                              "0 action records removed\n"))


def test_a_truncated_object_is_found_by_size_and_rebuilt(small_drama: Path) -> None:
    obj = object_of(small_drama, "clip:s1", "clip.mp4")
    original = obj.read_bytes()
    os.chmod(obj, 0o644)
    with open(obj, "r+b") as f:
        f.truncate(len(original) // 2)
    build = fanren("build", small_drama)
    assert build.code == 0, build.stderr
    assert "is missing or corrupt" in build.stderr and "clip:s1" in build.stderr
    assert ran(small_drama) == {"clip:s1"}
    assert obj.read_bytes() == original


def test_cache_verify_without_a_cache_is_a_usage_error(tmp_path: Path) -> None:
    result = fanren("cache", "verify", tmp_path)
    assert result.code == 2
    assert result.stderr == f"error: no cache at {tmp_path / '.fanren-cache'} (build first, or name it with --cache-dir)\n"
