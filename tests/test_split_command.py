"""`fanren split` as a user runs it: options, messages, exit codes, --force and its backup."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from fanren.project import load_project
from fanren.split.command import split_command
from fanren.split.coverage import TextLost, check_no_text_lost, differences, normalize, source_text

DATA = Path(__file__).parent / "data" / "split"
QINGSHI = DATA / "qingshi.txt"

# The command as a real process; the lead's `fanren` group adds it as `fanren split`.
COMMAND = [sys.executable, "-c", "from fanren.split.command import split_command; split_command()"]


def run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COMMAND, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120,
                          check=False)


def test_split_writes_a_drama_folder_that_validates(tmp_path: Path) -> None:
    result = run(QINGSHI, "--characters", "linyuan=林远,林母,石伯", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "qingshi"  # named after the chapter by default
    assert result.stdout.splitlines() == [
        "wrote qingshi/drama.toml: 2 scene(s), 11 shot(s), 3 character(s) (林远, 林母, 石伯)",
        "every sentence of the chapter is in a shot, in order",
        "next: fanren build qingshi",
    ]
    project = load_project(folder)
    assert list(project.characters) == ["linyuan", "linmu", "shibo"]
    assert (folder / ".gitignore").read_text(encoding="utf-8") == ".fanren-cache/\nout/\n"
    text = (folder / "drama.toml").read_text(encoding="utf-8")
    assert text.startswith("# drama.toml, written by `fanren split` from qingshi.txt (engine: rules).\n")


def test_existing_drama_is_kept_unless_forced_and_then_backed_up(tmp_path: Path) -> None:
    folder = tmp_path / "ep1"
    folder.mkdir()
    mine = '[drama]\ntitle = "my edits"\n'
    (folder / "drama.toml").write_text(mine, encoding="utf-8")
    refused = run(QINGSHI, "-o", folder, cwd=tmp_path)
    assert refused.returncode == 2
    assert refused.stderr == (f"error: {folder}/drama.toml already exists; pass --force to replace it "
                              "(the old one is kept as drama.toml.bak)\n")
    assert (folder / "drama.toml").read_text(encoding="utf-8") == mine

    forced = run(QINGSHI, "-o", folder, "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert (folder / "drama.toml.bak").read_text(encoding="utf-8") == mine
    assert f"re-split: 0 shot(s) kept their ids, 11 new, 0 gone; the previous file is {folder}/drama.toml.bak" \
        in forced.stdout

    again = run(QINGSHI, "-o", folder, "--force", cwd=tmp_path)
    assert "re-split: 11 shot(s) kept their ids, 0 new, 0 gone" in again.stdout
    assert (folder / "drama.toml.bak").read_bytes() == (folder / "drama.toml").read_bytes()


@pytest.mark.parametrize(("content", "message"), [
    (b"", "is empty: there is no text to split"),
    (b" \n\r\n\t\n", "is empty: there is no text to split"),
    (b"\x80\x80\x80 not a chapter", "is neither UTF-8 nor GB18030/GBK text (undecodable bytes at offset 0)"),
])
def test_unreadable_chapters_exit_2_with_a_message(tmp_path: Path, content: bytes, message: str) -> None:
    chapter = tmp_path / "bad.txt"
    chapter.write_bytes(content)
    result = run(chapter, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {chapter} {message}")
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "bad").exists()


def test_bad_options_exit_2(tmp_path: Path) -> None:
    missing = run(tmp_path / "nope.txt", cwd=tmp_path)
    assert (missing.returncode, missing.stderr) == (
        2, f"error: {tmp_path}/nope.txt: no such file (expected a chapter of a novel as a .txt file)\n")
    reserved = run(QINGSHI, "--characters", "narrator=旁白", cwd=tmp_path)
    assert (reserved.returncode, reserved.stderr) == (
        2, "error: --characters: 'narrator' is reserved for the narrator; choose another id\n")
    twice = run(QINGSHI, "--characters", "林远,林远", cwd=tmp_path)
    assert (twice.returncode, twice.stderr) == (2, "error: --characters: '林远' is listed twice\n")
    not_ascii = run(QINGSHI, "--characters", "林=林远", cwd=tmp_path)
    assert (not_ascii.returncode, not_ascii.stderr) == (
        2, "error: --characters: the id '林' may hold only ASCII letters, digits, '_', '-' and '.'\n")
    engine = CliRunner().invoke(split_command, [str(QINGSHI), "--engine", "gpt"])
    assert engine.exit_code == 2 and "'gpt' is not one of 'rules', 'openai'" in engine.output


def test_help_teaches_with_examples() -> None:
    result = CliRunner().invoke(split_command, ["--help"])
    assert result.exit_code == 0
    assert "fanren split chapter1.txt -o ep1 --characters \"林远,林母,石伯\"" in result.output
    assert "--engine openai" in result.output and "--base-url http://localhost:11434/v1" in result.output


def test_language_option_overrides_detection(tmp_path: Path) -> None:
    result = CliRunner().invoke(split_command, [str(QINGSHI), "-o", str(tmp_path / "d"), "--language", "en"])
    assert result.exit_code == 0, result.output
    assert load_project(tmp_path / "d").drama.language == "en"


# ── the guarantee itself ─────────────────────────────────────────────────────


def test_the_text_check_ignores_whitespace_quotes_and_break_lines_only() -> None:
    chapter = "第一章\n\n　　林远说：“走吧。”\n\n* * *\n\n　　他们走了。\n"
    check_no_text_lost(chapter, ["第一章", "林远说：", "走吧。", "他们走了。"])
    assert source_text(chapter) == "第一章林远说：走吧。他们走了。"
    assert normalize(" “a” 「b」\t『c』\n") == "abc"
    with pytest.raises(TextLost) as lost:
        check_no_text_lost(chapter, ["第一章", "林远说：", "他们走了。"])
    assert str(lost.value) == ("the split does not keep the chapter's text (whitespace and quotation marks aside):\n"
                               "  missing at character 7: '走吧。'")
    assert [d.show() for d in differences("甲乙丙丁", "甲乙X丙丁")] == ["added at character 2: 'X' is not in the chapter"]
    assert [d.show() for d in differences("甲乙丙丁", "甲乙戊丁")] == [
        "changed at character 2: the chapter has '丙', the shots have '戊'"]
    assert differences("甲乙丙丁", "甲乙丙丁") == []


def test_control_characters_in_a_chapter_are_dropped_not_lost_text(tmp_path: Path) -> None:
    chapter = tmp_path / "ch.txt"
    chapter.write_text("第一章\n\n韩立\x07走进了\u202e山门。\x1b[31m他说：“你好。”\n\n长老点了点头。\n", encoding="utf-8")
    result = run(chapter, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "ch" / "drama.toml").read_text(encoding="utf-8")
    assert "韩立走进了山门。" in text
    assert not any(c in text for c in "\x07\x1b\u202e")
    load_project(tmp_path / "ch")
