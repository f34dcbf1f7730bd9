"""Kill fanren at any moment: the cache stays valid and the next build resumes without redoing work."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

from conftest import fanren, ran, report, write_drama

from fanren.cache import ActionRecord, digest_file


def start_build(drama: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "FANREN_CACHE_DIR"}
    return subprocess.Popen([sys.executable, "-m", "fanren", "build", str(drama)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


def cached_keys(drama: Path) -> set[str]:
    """Keys of every action record in the cache, each checked: parses and its objects verify."""
    keys = set()
    cache = drama / ".fanren-cache"
    for path in (cache / "actions").glob("*/*.json"):
        record = ActionRecord.from_json(path.read_text(encoding="utf-8"))
        for output in record.outputs.values():
            obj = cache / "objects" / output.digest[:2] / output.digest[2:]
            assert digest_file(obj) == output.digest, f"object of {record.node} is corrupt"
        keys.add(record.key)
    return keys


def test_sigkill_at_random_moments_then_resume(tmp_path: Path) -> None:
    drama = write_drama(tmp_path / "drama")
    rng = random.Random(1234)
    for _ in range(5):
        proc = start_build(drama)
        time.sleep(rng.uniform(0.3, 2.5))
        os.killpg(proc.pid, signal.SIGKILL)  # the build and its ffmpeg/espeak children
        proc.wait()
        cached_keys(drama)  # every record and object committed so far is intact
    before = cached_keys(drama)
    assert before, "the killed builds committed nothing; kill later"
    result = fanren("build", drama)
    assert result.code == 0, result.stderr
    lock = tomllib.loads((drama / "drama.lock").read_text(encoding="utf-8"))["draft"]
    redone = {nid for nid in ran(drama) if lock[nid]["key"] in before}
    assert redone == set()
    assert not list((drama / ".fanren-cache" / "tmp").iterdir())
    cached_keys(drama)


def test_two_builds_at_once_build_each_node_once(tmp_path: Path) -> None:
    drama = write_drama(tmp_path / "drama")
    first, second = start_build(drama), start_build(drama)
    assert first.wait(timeout=600) == 0, first.stderr.read().decode() if first.stderr else ""
    assert second.wait(timeout=600) == 0, second.stderr.read().decode() if second.stderr else ""
    # Each build wrote its own report.json last; the one written last saw everything cached.
    statuses = {n["status"] for n in report(drama)["nodes"]}
    assert statuses == {"cached"}
    records = [json.loads(p.read_text()) for p in (drama / ".fanren-cache" / "actions").glob("*/*.json")]
    nodes = [r["node"] for r in records]
    assert len(nodes) == len(set(nodes)) == len(report(drama)["nodes"])


def test_corrupt_object_is_detected_and_rebuilt(small_drama: Path) -> None:
    lock = tomllib.loads((small_drama / "drama.lock").read_text(encoding="utf-8"))["draft"]
    digest = lock["keyframe:s2"]["outputs"]["image.png"]
    obj = small_drama / ".fanren-cache" / "objects" / digest[:2] / digest[2:]
    os.chmod(obj, 0o644)
    obj.write_bytes(b"not a png at all")
    result = fanren("build", small_drama)
    assert result.code == 0, result.stderr
    assert "is missing or corrupt" in result.stderr and "keyframe:s2" in result.stderr
    # the card engine is deterministic: the rebuilt keyframe has the same bytes, so nothing else runs
    assert ran(small_drama) == {"keyframe:s2"}
    assert digest_file(obj) == digest


def test_corrupt_action_record_is_detected_and_rebuilt(small_drama: Path) -> None:
    lock = tomllib.loads((small_drama / "drama.lock").read_text(encoding="utf-8"))["draft"]
    key = lock["line:s1:0"]["key"]
    record = small_drama / ".fanren-cache" / "actions" / key[:2] / f"{key}.json"
    record.write_text('{"key": "trunc', encoding="utf-8")
    result = fanren("build", small_drama)
    assert result.code == 0, result.stderr
    assert "is corrupt" in result.stderr
    assert ran(small_drama) == {"line:s1:0"}
