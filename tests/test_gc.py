"""gc of a cache shared by several dramas, and gc beside running builds (real subprocesses)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

from conftest import SMALL_DRAMA, fanren, ran, write_drama

from fanren.cache import Cache

# The second drama shares the characters and the first two shots; its third shot differs.
OTHER_DRAMA = SMALL_DRAMA.replace('action = "The elder nods"', 'action = "The elder turns away"')


def keys(drama: Path) -> set[str]:
    lock = tomllib.loads((drama / "drama.lock").read_text(encoding="utf-8"))["draft"]
    return {entry["key"] for entry in lock.values()}


def cached_keys(cache: Path) -> set[str]:
    return {p.stem for p in (cache / "actions").glob("*/*.json")}


def start(*args: str | Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "FANREN_CACHE_DIR"}
    return subprocess.Popen([sys.executable, "-m", "fanren", *map(str, args)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_for(condition, seconds: float = 120) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_gc_of_one_drama_keeps_what_another_drama_sharing_the_cache_reaches(tmp_path: Path) -> None:
    shared = tmp_path / "cache"
    first = write_drama(tmp_path / "first")
    second = write_drama(tmp_path / "second", OTHER_DRAMA)
    for drama in (first, second):
        result = fanren("build", drama, "--cache-dir", shared)
        assert result.code == 0, result.stderr
    # s3's timing is unchanged, so the subtitles are an early cutoff
    assert ran(second) == {"keyframe:s3", "clip:s3", "shot:s3", "episode", "storyboard"}
    both = keys(first) | keys(second)
    assert cached_keys(shared) == both

    result = fanren("gc", first, "--cache-dir", shared)
    assert result.code == 0, result.stderr
    assert result.stdout.startswith("removed 0 records and 0 objects")
    assert result.stdout.endswith("kept for 2 drama(s)\n")
    assert cached_keys(shared) == both
    assert fanren("build", second, "--cache-dir", shared).code == 0
    assert ran(second) == set()

    # the second drama's folder is deleted: gc says so and drops what only it reached
    second_only = keys(second) - keys(first)
    subprocess.run(["rm", "-rf", str(second)], check=True)
    result = fanren("gc", first, "--cache-dir", shared)
    assert result.code == 0, result.stderr
    assert f"note: {second}: no drama.toml there any more; dropped from the dramas using this cache\n" \
        in result.stderr
    assert result.stdout.startswith(f"removed {len(second_only)} records and ")
    assert result.stdout.endswith("kept for 1 drama(s)\n")
    assert cached_keys(shared) == keys(first)
    assert Cache(shared).drama_roots() == [first.resolve()]


def test_gc_waits_for_a_running_build_and_removes_nothing_it_needs(tmp_path: Path) -> None:
    shared = tmp_path / "cache"
    drama = write_drama(tmp_path / "drama")
    build = start("build", drama, "--cache-dir", shared)
    # once an engine is writing into tmp/, the build holds the cache
    wait_for(lambda: (shared / "tmp").is_dir() and any((shared / "tmp").iterdir()) or build.poll() is not None)
    assert build.poll() is None, "the build ended before gc could start"
    gc = start("gc", drama, "--cache-dir", shared, "--max-size", "0")
    build_out, build_err = build.communicate(timeout=600)
    gc_out, gc_err = gc.communicate(timeout=120)
    assert build.returncode == 0, build_err
    assert "18 ran" in build_out
    assert (drama / "out" / "draft" / "episode.mp4").stat().st_size > 0
    assert gc.returncode == 0, gc_err
    assert gc_err == "builds are using this cache; gc waits for them to finish...\n"
    # gc ran after the build: it found all 18 records the build wrote and evicted them (max size 0)
    assert gc_out.startswith("removed 18 records and ")
    assert cached_keys(shared) == set()


def test_a_build_waits_for_a_running_gc(small_drama: Path) -> None:
    cache = Cache(small_drama / ".fanren-cache")
    with cache.exclusive():
        build = start("build", small_drama)
        time.sleep(2)  # long enough for the no-op build to reach the lock; its message proves it waited
    _, err = build.communicate(timeout=120)
    assert build.returncode == 0, err
    assert f"warning: cache {small_drama / '.fanren-cache'}: gc or verify is running; waiting for it to finish\n" \
        in err
    assert ran(small_drama) == set()

