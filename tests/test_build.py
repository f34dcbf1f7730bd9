"""End to end: `fanren build` as a user runs it, and exactly which nodes each kind of edit re-runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SMALL_DRAMA, fanren, ran, report, write_drama

from fanren.build import report_text
from fanren.media import probe

IMAGE_VIDEO = ("character:", "keyframe:", "clip:")


def edit(drama: Path, old: str, new: str) -> None:
    path = drama / "drama.toml"
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def rebuild(drama: Path) -> set[str]:
    result = fanren("build", drama)
    assert result.code == 0, result.stderr
    return ran(drama)


def gpu_side(nodes: set[str]) -> set[str]:
    return {n for n in nodes if n.startswith(IMAGE_VIDEO)}


def test_cold_build_makes_the_episode(built_small: Path) -> None:
    out = built_small / "out" / "draft"
    nodes = {n["id"]: n for n in report(built_small)["nodes"]}
    assert set(nodes) == {
        "character:lin", "character:elder",
        "keyframe:s1", "clip:s1", "line:s1:0", "shot:s1",
        "keyframe:s2", "clip:s2", "line:s2:0", "line:s2:1", "shot:s2",
        "keyframe:s3", "clip:s3", "line:s3:0", "shot:s3",
        "subtitles", "episode", "storyboard",
    }
    assert {n["status"] for n in nodes.values()} == {"ran"}
    episode = probe(out / "episode.mp4")
    assert episode.size == (1280, 720)
    assert episode.audio is not None
    shots = sum(probe(built_small / ".fanren-cache" / "objects" / d[:2] / d[2:]).duration
                for d in _shot_digests(built_small))
    assert abs(episode.duration - shots) < 0.2
    srt = (out / "episode.srt").read_text(encoding="utf-8")
    for sentence in ["山门在雾中。", "长老拦住了她。", "你为何而来？", "他点了点头。"]:
        assert sentence in srt
    assert srt.index("山门在雾中") < srt.index("你为何而来") < srt.index("他点了点头")
    assert (out / "storyboard.html").is_file() and (out / "report.js").is_file()
    lock = (built_small / "drama.lock").read_text(encoding="utf-8")
    assert '[draft."keyframe:s1"]' in lock


def test_noop_build_runs_nothing(small_drama: Path) -> None:
    assert rebuild(small_drama) == set()
    assert {n["status"] for n in report(small_drama)["nodes"]} == {"cached"}


def test_report_files_are_json_indented_by_one(small_drama: Path) -> None:
    rebuild(small_drama)
    text = (small_drama / "out" / "draft" / "report.json").read_text(encoding="utf-8")
    assert text == json.dumps(json.loads(text), ensure_ascii=False, indent=1) + "\n"
    js = (small_drama / "out" / "draft" / "report.js").read_text(encoding="utf-8")
    assert js == f"window.FANREN_REPORT = {text[:-1]};\n"


def test_report_text_writes_what_json_dumps_with_indent_writes() -> None:
    odd = ["", "a,\n   b", "},\n   {", "换行\n\u2028\"", "\0nodes\0"]
    for nodes in ([], [{"id": "a"}], [{"id": s, "seconds": 1.5e-07, "n": 3, "ok": True, "x": None} for s in odd],
                  [{"id": "a", "nested": {"b": [1, 2]}}]):
        report = {"profile": "draft", "counts": {"ran": 1}, "nodes": nodes, "seconds": 0.25, "workers": {}}
        assert report_text(report) == json.dumps(report, ensure_ascii=False, indent=1)


def test_narration_edit_reruns_only_that_line_and_its_mux(small_drama: Path) -> None:
    edit(small_drama, "长老拦住了她。", "长老挡在她面前。")
    assert rebuild(small_drama) == {"line:s2:0", "shot:s2", "subtitles", "episode", "storyboard"}


def test_action_edit_reruns_that_shots_keyframe_and_clip(small_drama: Path) -> None:
    edit(small_drama, "Lin Qing climbs the stone steps", "Lin Qing runs up the stone steps")
    # the shot keeps its timing, so the subtitles are cached again (early cutoff)
    assert rebuild(small_drama) == {"keyframe:s1", "clip:s1", "shot:s1", "episode", "storyboard"}


def test_the_draft_repeats_frames_whatever_the_motion(small_drama: Path) -> None:
    # Ken Burns clips are never interpolated (kenburns.py says why): the setting changes no key
    edit(small_drama, 'id = "s1"\n', 'id = "s1"\nmotion = "interpolate"\n')
    assert rebuild(small_drama) == set()


def test_inserting_a_shot_renders_only_its_own_images(small_drama: Path) -> None:
    edit(small_drama, '[[scenes.shots]]\nid = "s2"', '[[scenes.shots]]\nid = "s1b"\naction = "A crane flies '
         'over the gate"\nnarration = "一只白鹤飞过。"\n\n[[scenes.shots]]\nid = "s2"')
    nodes = rebuild(small_drama)
    assert gpu_side(nodes) == {"keyframe:s1b", "clip:s1b"}
    assert nodes == {"keyframe:s1b", "clip:s1b", "line:s1b:0", "shot:s1b", "subtitles", "episode",
                     "storyboard"}


def test_reordering_scenes_renders_no_image_or_video(small_drama: Path) -> None:
    text = (small_drama / "drama.toml").read_text(encoding="utf-8")
    head, rest = text.split("[[scenes]]", 1)
    gate, hall_and_profiles = rest.split("[[scenes]]", 1)
    hall, profiles = hall_and_profiles.split("[profiles.draft]", 1)
    (small_drama / "drama.toml").write_text(
        head + "[[scenes]]" + hall + "[[scenes]]" + gate + "[profiles.draft]" + profiles, encoding="utf-8")
    assert rebuild(small_drama) == {"subtitles", "episode", "storyboard"}


def test_style_edit_rerenders_every_keyframe(small_drama: Path) -> None:
    edit(small_drama, 'style = "ink wash painting"', 'style = "oil painting"')
    nodes = rebuild(small_drama)
    assert {"keyframe:s1", "keyframe:s2", "keyframe:s3"} <= nodes
    assert not any(n.startswith("line:") for n in nodes)


def test_character_edit_rerenders_the_keyframes_that_show_it(small_drama: Path) -> None:
    edit(small_drama, "an old sect elder with a white beard", "an old sect elder with a black beard")
    nodes = rebuild(small_drama)
    assert {n for n in nodes if n.startswith(("character:", "keyframe:"))} == {
        "character:elder", "keyframe:s2", "keyframe:s3"}
    assert not any(n.startswith("line:") for n in nodes)


def test_early_cutoff_identical_bytes_stop_the_cascade(small_drama: Path) -> None:
    # 1.3 → 1.3000001 changes the narrator voice's key but espeak-ng gets the same words per minute,
    # so the lines re-run into identical WAVs and nothing downstream runs.
    edit(small_drama, "[voices.narrator]\nspeed = 1.3", "[voices.narrator]\nspeed = 1.3000001")
    assert rebuild(small_drama) == {"line:s1:0", "line:s2:0", "line:s3:0"}
    statuses = {n["id"]: n["status"] for n in report(small_drama)["nodes"]}
    assert statuses["shot:s1"] == statuses["episode"] == "cached"


def test_status_reports_reasons_from_the_planner(small_drama: Path) -> None:
    edit(small_drama, "他点了点头。", "他微微点头。")
    result = fanren("status", small_drama, "--json")
    assert result.code == 0, result.stderr
    stale = {s["id"]: s["reason"] for s in json.loads(result.stdout)["stale"]}
    assert stale == {"line:s3:0": "changed", "shot:s3": "input-changed", "subtitles": "input-changed",
                     "episode": "input-changed", "storyboard": "input-changed"}


def test_explain_shows_the_changed_field(small_drama: Path) -> None:
    edit(small_drama, "The elder nods", "The elder bows")
    result = fanren("explain", "keyframe:s3", "-C", small_drama)
    assert result.code == 0, result.stderr
    assert "params.action:" in result.stdout
    assert "- The elder nods" in result.stdout and "+ The elder bows" in result.stdout


def test_explain_names_an_input_that_will_be_rebuilt(small_drama: Path) -> None:
    # subtitles read only a line's timing.json: the stand-in for the stale line must carry that
    # name, or explain shows a vanished digest instead of the input that changed
    edit(small_drama, "他点了点头。", "他微微点头。")
    result = fanren("explain", "subtitles", "-C", small_drama)
    assert result.code == 0, result.stderr
    assert "(will be rebuilt)" in result.stdout, result.stdout


def test_explain_unknown_node_suggests(small_drama: Path) -> None:
    result = fanren("explain", "keyframe:s9", "-C", small_drama)
    assert result.code == 2
    assert "no node 'keyframe:s9'" in result.stderr


def test_drama_lock_is_stable_across_noop_builds(small_drama: Path) -> None:
    before = (small_drama / "drama.lock").read_bytes()
    rebuild(small_drama)
    assert (small_drama / "drama.lock").read_bytes() == before


def test_init_then_build(tmp_path: Path) -> None:
    folder = tmp_path / "new"
    assert fanren("init", folder).code == 0
    assert (folder / ".gitignore").read_text().count(".fanren-cache") == 1
    result = fanren("build", folder)
    assert result.code == 0, result.stderr
    assert (folder / "out" / "draft" / "episode.mp4").is_file()


def test_unknown_profile_is_bad_input(small_drama: Path) -> None:
    result = fanren("build", small_drama, "--profile", "fnial")
    assert result.code == 2
    assert "no profile named 'fnial'" in result.stderr



def _shot_digests(drama: Path) -> list[str]:
    import tomllib

    lock = tomllib.loads((drama / "drama.lock").read_text(encoding="utf-8"))["draft"]
    return [lock[f"shot:{s}"]["outputs"]["shot.mp4"] for s in ("s1", "s2", "s3")]


def test_noop_build_leaves_drama_lock_untouched_and_memoizes_it(small_drama: Path) -> None:
    lock = small_drama / "drama.lock"
    before = lock.stat().st_mtime_ns
    rebuild(small_drama)
    assert lock.stat().st_mtime_ns == before
    assert (small_drama / ".fanren-cache" / "lockmemo.json").is_file()
    # a drama.lock edited by hand (or by git) is read again, not taken from the memo
    text = lock.read_text(encoding="utf-8")
    lock.write_text(text.replace('[draft."keyframe:s1"]', '[draft."keyframe:old"]'), encoding="utf-8")
    result = fanren("status", small_drama, "--json")
    assert json.loads(result.stdout)["stale"] == []
    rebuild(small_drama)
    assert "keyframe:old" not in lock.read_text(encoding="utf-8")


@pytest.mark.parametrize("how", ["option", "environment"])
def test_a_relative_cache_dir_builds(small_drama: Path, tmp_path: Path, how: str) -> None:
    """ffmpeg's episode playlist names the shots by their path in the cache: a relative cache
    folder must be made absolute once, where the command line takes it."""
    work = tmp_path / "work"
    work.mkdir()
    args = ("--cache-dir", "rel-cache") if how == "option" else ()
    env = {"FANREN_CACHE_DIR": "rel-cache"} if how == "environment" else {}
    result = fanren("build", small_drama, *args, cwd=work, env=env)
    assert result.code == 0, result.stderr
    assert (work / "rel-cache").is_dir() and not (small_drama / "rel-cache").exists()
    again = fanren("status", small_drama, *args, cwd=work, env=env)
    assert again.code == 0 and again.stdout.startswith("up to date"), again.stdout


@pytest.mark.parametrize("subtitles", ["burn", "soft"])
def test_a_drama_in_which_nobody_speaks_builds(tmp_path: Path, subtitles: str) -> None:
    text = "\n".join(line for line in SMALL_DRAMA.splitlines()
                     if not line.startswith(("narration = ", "lines = ")))
    drama = write_drama(tmp_path / "silent", text.replace('seed = 7', f'seed = 7\nsubtitles = "{subtitles}"'))
    result = fanren("build", drama)
    assert result.code == 0, result.stderr
    out = drama / "out" / "draft"
    assert (out / "episode.srt").read_text(encoding="utf-8") == "\n"  # a valid SRT without cues
    assert "Dialogue:" not in (out / "episode.ass").read_text(encoding="utf-8")
    episode = probe(out / "episode.mp4")
    assert episode.video is not None and episode.audio is not None and episode.duration > 2
