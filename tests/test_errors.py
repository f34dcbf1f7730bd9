"""Every kind of bad input: exit code 2, one clear message with file and key path, nothing touched."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from conftest import fanren

from fanren.errors import DramaError
from fanren.project import parse_project


def snapshot(drama: Path) -> dict[str, tuple[int, int]]:
    """Every file under out/ and the cache with its size and mtime: what bad input must not change."""
    files: dict[str, tuple[int, int]] = {}
    for folder in (drama / "out", drama / ".fanren-cache"):
        for path in folder.rglob("*"):
            if path.is_file():
                st = path.stat()
                files[str(path.relative_to(drama))] = (st.st_size, st.st_mtime_ns)
    return files


def replace(drama: Path, old: str, new: str) -> None:
    path = drama / "drama.toml"
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def build_fails(drama: Path, *expected: str) -> str:
    before = snapshot(drama)
    result = fanren("build", drama)
    assert result.code == 2, (result.code, result.stderr)
    assert "Traceback" not in result.stderr
    for text in expected:
        assert text in result.stderr, result.stderr
    assert snapshot(drama) == before
    return result.stderr


def test_toml_syntax_error_names_the_line(small_drama: Path) -> None:
    replace(small_drama, 'camera = "wide shot"', 'camera = "wide shot')
    build_fails(small_drama, "drama.toml:35: expected valid TOML")


def test_unknown_key_suggests_the_right_one(small_drama: Path) -> None:
    replace(small_drama, 'action = "The elder nods"', 'acton = "The elder nods"')
    build_fails(small_drama, "scenes[1].shots[0].acton", "did you mean 'action'?",
                "scenes[1].shots[0].action: expected this required key")


def test_wrong_type(small_drama: Path) -> None:
    replace(small_drama, "fps = 12", 'fps = "twelve"')
    build_fails(small_drama, "drama.fps: expected an integer, got 'twelve'")


def test_missing_required_key(small_drama: Path) -> None:
    replace(small_drama, 'title = "试炼"\n', "")
    build_fails(small_drama, "drama.title: expected this required key")


def test_duplicate_shot_id(small_drama: Path) -> None:
    replace(small_drama, 'id = "s3"', 'id = "s1"')
    build_fails(small_drama, "scenes[1].shots[0].id: expected a shot id used once in the drama, got 's1'",
                "also used by scenes[0].shots[0]")


def test_duplicate_scene_id(small_drama: Path) -> None:
    replace(small_drama, 'id = "hall"', 'id = "gate"')
    build_fails(small_drama, "scenes[1].id: expected a scene id used once")


def test_shot_names_unknown_character(small_drama: Path) -> None:
    replace(small_drama, 'characters = ["lin", "elder"]', 'characters = ["lin", "eldre"]')
    build_fails(small_drama, "scenes[0].shots[1].characters[1]", "'eldre'", "did you mean 'elder'?")


def test_line_names_unknown_character(small_drama: Path) -> None:
    replace(small_drama, 'who = "elder"', 'who = "master"')
    build_fails(small_drama, "scenes[0].shots[1].lines[0].who", "'master'")


def test_unknown_voice(small_drama: Path) -> None:
    replace(small_drama, 'voice = "lin"', 'voice = "lin2"')
    build_fails(small_drama, "characters.lin.voice: expected the id of a [voices.*] entry, got 'lin2'",
                "did you mean 'lin'?")


def test_missing_reference_file(small_drama: Path) -> None:
    replace(small_drama, 'voice = "lin"', 'voice = "lin"\nreference = "refs/lin.png"')
    build_fails(small_drama, "characters.lin.reference: expected an existing file, got 'refs/lin.png'")


@pytest.mark.parametrize("path", ["../outside.png", "/etc/hostname"])
def test_reference_outside_the_drama(small_drama: Path, path: str) -> None:
    (small_drama.parent / "outside.png").write_bytes(b"x")
    replace(small_drama, 'voice = "lin"', f'voice = "lin"\nreference = "{path}"')
    build_fails(small_drama, "characters.lin.reference: expected a", repr(path))


def test_reference_symlink_out_of_the_drama(small_drama: Path) -> None:
    (small_drama.parent / "secret.png").write_bytes(b"x")
    (small_drama / "refs").mkdir()
    os.symlink(small_drama.parent / "secret.png", small_drama / "refs" / "lin.png")
    replace(small_drama, 'voice = "lin"', 'voice = "lin"\nreference = "refs/lin.png"')
    build_fails(small_drama, "characters.lin.reference: expected a path inside the drama folder",
                "symbolic link")


def test_drama_with_no_shots(tmp_path: Path) -> None:
    with pytest.raises(DramaError) as err:
        parse_project('[drama]\ntitle = "x"\n', tmp_path)
    assert "scenes: expected at least one [[scenes.shots]] entry" in err.value.show()


def test_template_syntax_error(small_drama: Path) -> None:
    (small_drama / "templates").mkdir()
    (small_drama / "templates" / "keyframe.j2").write_text("{{ shot.action ", encoding="utf-8")
    build_fails(small_drama, "templates/keyframe.j2", "expected a valid jinja2 template")


def test_template_undefined_variable(small_drama: Path) -> None:
    (small_drama / "templates").mkdir()
    (small_drama / "templates" / "keyframe.j2").write_text("{{ shot.acton }}", encoding="utf-8")
    build_fails(small_drama, "templates/keyframe.j2", "rendering for scenes[0].shots[0]", "acton")


def test_all_schema_errors_in_one_message(small_drama: Path) -> None:
    replace(small_drama, "fps = 12", "fps = -1")
    replace(small_drama, 'aspect = "16:9"', 'aspect = "4:3"')
    replace(small_drama, 'camera = "wide shot"', 'camra = "wide shot"')
    stderr = build_fails(small_drama, "3 problems", "drama.fps", "drama.aspect", "scenes[0].shots[0].camra")
    assert stderr.count("drama.toml") == 3


def test_no_drama_toml(tmp_path: Path) -> None:
    result = fanren("build", tmp_path)
    assert result.code == 2
    assert "drama.toml" in result.stderr and "fanren init" in result.stderr


def test_character_id_may_not_be_narrator(tmp_path: Path) -> None:
    text = ('[drama]\ntitle = "x"\n[characters.narrator]\ndescription = "d"\n'
            '[[scenes]]\nid = "a"\nsetting = "s"\n[[scenes.shots]]\nid = "s1"\naction = "x"\n')
    with pytest.raises(DramaError) as err:
        parse_project(text, tmp_path)
    assert "characters.narrator: expected an id of letters" in err.value.show()


def test_character_id_may_not_end_in_a_newline(tmp_path: Path) -> None:
    text = ('[drama]\ntitle = "x"\n[characters."lin\\n"]\ndescription = "d"\n'
            '[[scenes]]\nid = "a"\nsetting = "s"\n[[scenes.shots]]\nid = "s1"\naction = "x"\n')
    with pytest.raises(DramaError) as err:
        parse_project(text, tmp_path)
    assert "expected an id of letters, digits, '_', '-' or '.' other than 'narrator', got 'lin\\n'" in err.value.show()


def test_blank_line_text(tmp_path: Path) -> None:
    text = ('[drama]\ntitle = "x"\n[[scenes]]\nid = "a"\nsetting = "s"\n[[scenes.shots]]\nid = "s1"\n'
            'action = "x"\nlines = [{ who = "narrator", text = "   " }]\n')
    with pytest.raises(DramaError) as err:
        parse_project(text, tmp_path)
    assert "scenes[0].shots[0].lines[0].text: expected text to speak, got only spaces" in err.value.show()


def test_scene_music_is_a_table_or_none(small_drama: Path) -> None:
    replace(small_drama, 'setting = "a candle-lit hall"', 'setting = "a candle-lit hall"\nmusic = "off"')
    build_fails(small_drama, "scenes[1].music: expected a table or \"none\", got 'off'")


def test_scene_music_without_a_file_needs_a_drama_music(small_drama: Path) -> None:
    replace(small_drama, 'setting = "a candle-lit hall"', 'setting = "a candle-lit hall"\nmusic = { volume = 0.1 }')
    build_fails(small_drama, "scenes[1].music.file: expected a music file (the drama has no [music] to take it "
                "from), got nothing")


def test_scene_music_file_must_exist_inside_the_drama(small_drama: Path) -> None:
    replace(small_drama, 'setting = "a candle-lit hall"',
            'setting = "a candle-lit hall"\nmusic = { file = "../theme.ogg" }')
    build_fails(small_drama, "scenes[1].music.file: expected a path inside the drama folder, got '../theme.ogg'")


def test_drama_toml_not_utf8(small_drama: Path) -> None:
    text = (small_drama / "drama.toml").read_bytes()
    (small_drama / "drama.toml").write_bytes(text.replace("试炼".encode(), "试炼".encode("gbk")))
    offset = text.index("试炼".encode())
    build_fails(small_drama, f"drama.toml:2: expected UTF-8 text, got byte 0xca at byte offset {offset}, "
                "which is not UTF-8 (save it as UTF-8)")


def test_drama_toml_in_utf16(small_drama: Path) -> None:
    text = (small_drama / "drama.toml").read_text(encoding="utf-8")
    (small_drama / "drama.toml").write_bytes(text.encode("utf-16"))
    build_fails(small_drama, "not UTF-8 (it looks like UTF-16: save it as UTF-8)")


def test_drama_toml_with_a_byte_order_mark_builds(tmp_path: Path) -> None:
    text = ('[drama]\ntitle = "x"\n[[scenes]]\nid = "a"\nsetting = "s"\n[[scenes.shots]]\nid = "s1"\n'
            'action = "x"\n')
    assert parse_project("\ufeff".encode() + text.encode(), tmp_path).drama.title == "x"


@pytest.mark.parametrize("text", ["", "\n# nothing yet\n"])
def test_empty_drama_toml_says_what_a_drama_needs(small_drama: Path, text: str) -> None:
    (small_drama / "drama.toml").write_text(text, encoding="utf-8")
    build_fails(small_drama, "drama.toml: expected a drama, got an empty file (a drama needs at least "
                "`[drama] title`, one [[scenes]] with an id and a setting, and one [[scenes.shots]] under "
                "it with an id and an action; `fanren init` writes a commented example)")


def test_drama_toml_without_a_drama_table(small_drama: Path) -> None:
    (small_drama / "drama.toml").write_text('[[scenes]]\nid = "a"\n', encoding="utf-8")
    build_fails(small_drama, "drama.toml: drama: expected this required key, got nothing (a drama needs "
                "at least `[drama] title`", "`fanren init` writes a commented example")


@pytest.mark.parametrize(("template", "line", "got"), [
    ("{{ shot.action }}\n{{ 1/0 }}", ":2", "ZeroDivisionError: division by zero"),
    ("{% include '/etc/passwd' %}", ":1", "no template named '/etc/passwd'"),
    ("{% extends 'keyframe.j2' %}", ":1", "a template that extends or includes itself (endless recursion)"),
    ("{{ range(10**9)|list }}", ":1", "the number 1000000000 is too large for a prompt template"),
    ("{% for i in range(99999) %}{% for j in range(99999) %}{% endfor %}{% endfor %}", ":1",
     "range() with 199,998 elements in one prompt is too large for a prompt template"),
    ("{{ 'x' * 10**9 }}", ":1", "a repeated string or list is too large for a prompt template"),
    ("{{ 'x' | center(10**8) }}", ":1", "the number 100000000 is too large for a prompt template"),
    ("{% for i in range(5000) %}{{ shot.action }}{% endfor %}", "",
     "the prompt is longer than 100,000 characters"),
])
def test_template_runtime_errors_are_bad_input(small_drama: Path, template: str, line: str, got: str) -> None:
    (small_drama / "templates").mkdir()
    (small_drama / "templates" / "keyframe.j2").write_text(template, encoding="utf-8")
    build_fails(small_drama, f"templates/keyframe.j2{line}: rendering for scenes[0].shots[0]: expected a "
                f"template that renders, got {got}")


def test_template_symlink_out_of_the_drama(small_drama: Path) -> None:
    (small_drama.parent / "secret.j2").write_text("{{ shot.action }} secret", encoding="utf-8")
    (small_drama / "templates").mkdir()
    os.symlink(small_drama.parent / "secret.j2", small_drama / "templates" / "keyframe.j2")
    build_fails(small_drama, "templates/keyframe.j2: expected a template inside the drama folder, got "
                "'templates/keyframe.j2' (it is a symbolic link that leaves the folder)")


def test_template_not_utf8(small_drama: Path) -> None:
    (small_drama / "templates").mkdir()
    (small_drama / "templates" / "keyframe.j2").write_bytes(b"{{ shot.action }}\n\xff")
    build_fails(small_drama, "templates/keyframe.j2:2: expected UTF-8 text, got byte 0xff at byte offset 18")


@pytest.mark.parametrize("profile", ["/abs/dir", "../../x", "a/b", "..", ".hidden", "-x", "draft\n"])
def test_profile_name_is_not_a_path(small_drama: Path, profile: str) -> None:
    result = fanren("build", small_drama, "--profile", profile)
    assert result.code == 2, result.stderr
    assert result.stderr == (f"error: --profile: expected a profile name (up to 64 letters, digits, '_' and '-', "
                             f"not starting with '-'), got {profile!r}\n")
    assert not (small_drama.parent / "x").exists() and not Path("/abs").exists()


def test_profile_name_in_drama_toml_is_not_a_path(small_drama: Path) -> None:
    replace(small_drama, "[profiles.draft]", '[profiles."../../escape"]\nimage = "card"\n\n[profiles.draft]')
    build_fails(small_drama, "drama.toml: profiles.../../escape: expected a profile name of up to 64 letters, "
                "digits, '_' and '-', not starting with '-', got '../../escape' (it names the folder "
                "out/<profile>/)")


@pytest.mark.parametrize("link", ["out", "out/draft"])
def test_out_folder_symlinked_out_of_the_drama(small_drama: Path, tmp_path: Path, link: str) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    if link == "out":
        shutil.rmtree(small_drama / "out")
    else:
        shutil.rmtree(small_drama / "out" / "draft")
    os.symlink(elsewhere, small_drama / link)
    result = fanren("build", small_drama)
    assert result.code == 2, result.stderr
    assert result.stderr == (f"error: {small_drama / link}: expected a folder inside the drama folder, where fanren "
                             f"writes the episode, got a symbolic link (remove {link}; the build creates it)\n")
    assert list(elsewhere.iterdir()) == []


CONTROLS = "\x07\x1b\x85\u202e\u2066\x00\x7f\u2028"


def test_control_characters_and_bidi_overrides_never_leave_fanren(small_drama: Path) -> None:
    escaped = "\\u0007\\u001b[31m\\u0085\\u202e\\u2066\\u0000\\u007f\\u2028"  # as TOML escapes
    replace(small_drama, 'narration = "山门在雾中。"', f'narration = "山门{escaped}在雾中。"')
    replace(small_drama, 'text = "你为何而来？"', f'text = "你为何{escaped}而来？"')
    replace(small_drama, 'action = "The elder nods"', f'action = "The elder{escaped} nods"')
    result = fanren("build", small_drama)
    assert result.code == 0, result.stderr
    out = small_drama / "out" / "draft"
    for name in ("episode.srt", "episode.ass", "storyboard.html", "report.json"):
        text = (out / name).read_text(encoding="utf-8")
        assert not any(c in text for c in CONTROLS), (name, [c for c in CONTROLS if c in text])
    srt = (out / "episode.srt").read_text(encoding="utf-8")
    assert "山门[31m在雾中。" in srt and "你为何[31m而来？" in srt  # only the characters go, not the text
    assert "The elder[31m nods" in (out / "storyboard.html").read_text(encoding="utf-8")


def test_control_characters_in_error_messages_are_escaped(small_drama: Path) -> None:
    replace(small_drama, 'action = "The elder nods"', 'action = "The elder nods"\n"act\\u202eion\\u001b" = 1')
    stderr = build_fails(small_drama, "scenes[1].shots[0].act\\u202eion\\x1b: expected a known key")
    assert not any(c in stderr for c in CONTROLS)


def test_drama_toml_nested_too_deep(small_drama: Path) -> None:
    replace(small_drama, "fps = 12", "fps = 12\nx = " + "[" * 5000 + "]" * 5000)
    build_fails(small_drama, "drama.toml: expected valid TOML, got arrays or tables nested too deep")


@pytest.mark.parametrize("tty", [True, False])
def test_a_node_error_is_shown_as_text_on_the_terminal(tty: bool) -> None:
    """A node's error quotes ffmpeg, a server or the drama: '[/x]' in it is not rich markup, and
    an ESC in it does not reach the terminal."""
    import io

    from fanren.graph import Node
    from fanren.progress import PlainReporter, RichReporter
    from fanren.run import FAILED, NodeResult

    node = Node("episode", "episode", "mux", "mux", {}, {})
    stream = io.StringIO()
    reporter = RichReporter(stream) if tty else PlainReporter(stream)
    reporter.begin([node], {})
    reporter.start(node)
    reporter.finish(NodeResult(node, FAILED, 1.0, error="[ogg @ 0x1] [/ogg] bad \x1b[31m file"))
    reporter.end()
    assert "[ogg @ 0x1] [/ogg] bad \\x1b[31m file" in stream.getvalue()
    assert "\x1b[31m file" not in stream.getvalue()
