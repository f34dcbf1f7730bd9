"""The command line itself: help that teaches, doctor, graph, gc."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import fanren


@pytest.mark.parametrize("command", ["init", "build", "status", "explain", "graph", "gc", "cache", "split", "watch", "doctor"])
def test_every_command_help_has_an_example(command: str) -> None:
    result = fanren(command, "--help")
    assert result.code == 0, result.stderr
    assert "Example" in result.stdout or "example" in result.stdout


def test_doctor_checks_the_tools_this_machine_has() -> None:
    result = fanren("doctor")
    assert result.code == 0, result.stdout + result.stderr
    lines = {line.split()[1]: line.split()[0] for line in result.stdout.splitlines() if line[:3].strip()}
    assert lines["ffmpeg"] == lines["ffprobe"] == lines["espeak-ng"] == lines["mandarin"] == "ok"
    assert "cjk" in lines
    assert "weights" in result.stdout and "huggingface-cli download" in result.stdout


def test_graph_formats(small_drama: Path) -> None:
    dot = fanren("graph", small_drama)
    assert dot.code == 0 and '"clip:s1" -> "shot:s1";' in dot.stdout
    mermaid = fanren("graph", small_drama, "--format", "mermaid")
    assert mermaid.stdout.startswith("flowchart LR") and "keyframe:s2" in mermaid.stdout


def test_gc_keeps_what_the_drama_reaches(small_drama: Path) -> None:
    objects = small_drama / ".fanren-cache" / "objects"
    stray = objects / "ff" / ("0" * 30)
    stray.parent.mkdir(exist_ok=True)
    stray.write_bytes(b"left over")
    result = fanren("gc", small_drama)
    assert result.code == 0, result.stderr
    assert "removed 0 records and 1 objects" in result.stdout
    assert not stray.exists()
    rebuilt = fanren("build", small_drama)
    assert rebuilt.code == 0 and "0 ran" in rebuilt.stdout


def test_gc_max_size_zero_evicts_everything_then_build_restores(small_drama: Path) -> None:
    assert fanren("gc", small_drama, "--max-size", "0").code == 0
    assert not list((small_drama / ".fanren-cache" / "objects").glob("*/*"))
    status = fanren("status", small_drama)
    assert "not-cached" in status.stdout
    assert fanren("gc", small_drama, "--max-size", "lots").code == 2
