"""A failing node always ends the build: unwritable logs, over-long node ids, a full disk."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from conftest import SMALL_DRAMA, fanren, report, write_drama
from speech_servers import closed_port_url
from test_crash import cached_keys

LONG_SHOT = "s" + "x" * 249  # 250 characters: "line:<shot>:0.log" is longer than a file name may be


def test_a_250_character_shot_id_with_its_voice_server_down_fails_cleanly(tmp_path: Path) -> None:
    text = SMALL_DRAMA.replace('id = "s1"', f'id = "{LONG_SHOT}"')
    text += f'voice = {{ engine = "cosyvoice", url = "{closed_port_url()}", retries = 0, timeout = 2 }}\n'
    drama = write_drama(tmp_path / "d", text)
    started = time.monotonic()
    result = fanren("build", drama, timeout=120)
    assert time.monotonic() - started < 120
    assert result.code == 1, result.stderr
    assert f"line:{LONG_SHOT}:0: the CosyVoice server" in result.stderr
    assert "Traceback" not in result.stderr
    logs = list((drama / ".fanren-cache" / "logs").iterdir())
    assert logs and all(len(p.name.encode()) <= 255 for p in logs)
    long_log = next(p for p in logs if p.name.startswith("line_sxxx"))
    assert f"line:{LONG_SHOT}:0" in long_log.read_text(encoding="utf-8")
    assert str(long_log) in result.stderr  # the message names the log that was written
    statuses = {n["id"]: n["status"] for n in report(drama)["nodes"]}
    assert statuses[f"line:{LONG_SHOT}:0"] == "failed" and statuses["episode"] == "skipped"


def _mount_tmpfs(target: Path, options: str) -> None:
    target.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")


def test_an_unwritable_log_folder_is_reported_not_fatal(tmp_path: Path) -> None:
    text = SMALL_DRAMA + f'voice = {{ engine = "cosyvoice", url = "{closed_port_url()}", retries = 0 }}\n'
    drama = write_drama(tmp_path / "d", text)
    logs = tmp_path / "cache" / "logs"
    _mount_tmpfs(logs, "ro,size=64k")  # a read-only file system: writing a log fails with EROFS
    try:
        result = fanren("build", drama, "--cache-dir", logs.parent, "--keep-going", timeout=120)
    finally:
        subprocess.run(["umount", "-l", str(logs)], check=False)
    assert result.code == 1, result.stderr
    assert "line:s1:0: the CosyVoice server" in result.stderr
    assert "could not write the log of line:s1:0" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 640 KiB tmpfs: a real file system that fills up half-way through the small drama's build."""
    mount = tmp_path / "disk"
    _mount_tmpfs(mount, "size=640k")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.parametrize("keep_going", [False, True])
def test_a_full_disk_ends_the_build_naming_the_node_and_leaves_the_cache_consistent(
        tmp_path: Path, small_disk: Path, keep_going: bool) -> None:
    drama = write_drama(tmp_path / "d")
    cache = small_disk / "cache"
    started = time.monotonic()
    result = fanren("build", drama, "--cache-dir", cache, *(["-k"] if keep_going else []), timeout=180)
    assert time.monotonic() - started < 180
    assert result.code == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "no space left on the disk of the cache" in result.stderr
    failed = [n for n in report(drama)["nodes"] if n["status"] == "failed"]
    assert failed and all(f"  {n['id']}: no space left" in result.stderr
                          for n in failed if "no space" in n.get("error", ""))
    # everything the cache holds still verifies, and no tmp dir of the build is left behind
    assert not any((cache / "tmp").iterdir())
    keys = _verified_keys(cache)
    assert keys, "some nodes finished before the disk filled up"


def _verified_keys(cache: Path) -> set[str]:
    probe = cache.parent / "probe"
    probe.mkdir(exist_ok=True)
    link = probe / ".fanren-cache"
    if not link.exists():
        link.symlink_to(cache)
    return cached_keys(probe)


def test_ctrl_c_ends_a_build_whose_voice_server_hangs(tmp_path: Path) -> None:
    import signal
    import sys

    from speech_servers import CosyVoiceServer

    with CosyVoiceServer() as server:
        server.fail_next(*["hang"] * 8)  # every line's request hangs (HANG_SECONDS each)
        text = SMALL_DRAMA + f'voice = {{ engine = "cosyvoice", url = "{server.url}", retries = 0 }}\n'
        drama = write_drama(tmp_path / "d", text)
        proc = subprocess.Popen([sys.executable, "-m", "fanren", "build", str(drama)], stderr=subprocess.PIPE,
                                text=True)
        assert proc.stderr is not None
        for line in proc.stderr:  # wait until a voice node is running
            if "run     line:" in line:
                break
        proc.send_signal(signal.SIGINT)
        interrupted = time.monotonic()
        try:
            proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            pytest.fail("the build ignored Ctrl-C")
        assert proc.returncode != 0
        assert time.monotonic() - interrupted < 30
