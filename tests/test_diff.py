"""`fanren diff`: a drama in a real git repository, compared at two revisions; the page in Chromium."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO, SMALL_DRAMA, Run, fanren

from fanren.cache import digest_bytes
from fanren.diff.page import text_diff

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]

S1_ACTION = 'action = "Lin Qing climbs the stone steps"'
S2_NARRATION = 'narration = "长老拦住了她。"'

# The nodes one narration line (s2) and one shot action (s1) change, with the fields that say why.
EDITED = {
    "keyframe:s1": ("changed", ["params.action", "params.prompt"], []),
    "clip:s1": ("changed", ["params.prompt"], ["keyframe:s1"]),
    "shot:s1": ("input-changed", [], ["clip:s1"]),
    "line:s2:0": ("changed", ["params.sentences[0]", "params.text"], []),
    "shot:s2": ("changed", ["params.lines[0].text"], ["line:s2:0"]),
    "subtitles": ("input-changed", [], ["shot:s1", "shot:s2"]),
    "episode": ("input-changed", [], ["shot:s1", "shot:s2", "subtitles"]),
    "storyboard": ("changed", ["params.shots[0].action", "params.shots[1].narration"],
                   ["keyframe:s1", "shot:s1", "shot:s2"]),
}


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}
    return subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True,
                          timeout=60).stdout


def edit(drama: Path, old: str, new: str) -> None:
    toml = drama / "drama.toml"
    text = toml.read_text(encoding="utf-8")
    assert old in text
    toml.write_text(text.replace(old, new), encoding="utf-8")


@pytest.fixture
def repo(small_drama: Path) -> Path:
    """A git repository whose folder `drama/` is the built small drama: HEAD~1 is the drama as built,
    HEAD edits s1's action and s2's narration (not built)."""
    top = small_drama.parent
    git(top, "init", "-q", "-b", "main")
    (top / ".gitignore").write_text(".fanren-cache/\nout/\n", encoding="utf-8")
    git(top, "add", ".gitignore")
    git(top, "commit", "-q", "-m", "no drama yet")
    git(top, "add", "drama")
    git(top, "commit", "-q", "-m", "the drama")
    edit(small_drama, S1_ACTION, 'action = "Lin Qing runs up the stone steps"')
    edit(small_drama, S2_NARRATION, 'narration = "长老在门前拦住了她。"')
    git(top, "commit", "-q", "-am", "an action and a narration line")
    return top


def differences(result: Run) -> dict[str, tuple[str, list[str], list[str]]]:
    assert result.code == 0, result.stderr
    out = json.loads(result.stdout)
    return {d["id"]: (d["status"], [f["path"] for f in d["fields"]], d["inputs"]) for d in out["differ"]}


def test_two_revisions_name_exactly_the_changed_nodes_and_why(repo: Path) -> None:
    assert differences(fanren("diff", "HEAD~1", "HEAD", "drama", "--json", cwd=repo)) == EDITED
    # the terminal output gives the same, with explain's before/after lines
    result = fanren("diff", "HEAD~1", "HEAD", "-C", "drama", cwd=repo)
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "HEAD~1 → HEAD (profile draft): 8 of 18 nodes differ (0 added, 0 removed)"
    assert lines[1:5] == ["  changed        keyframe:s1 [card]", "      params.action:",
                          "        - Lin Qing climbs the stone steps", "        + Lin Qing runs up the stone steps"]
    assert "  input-changed  shot:s1 [mux]  (reads clip:s1)" in lines
    assert ["      params.text:", "        - 长老拦住了她。", "        + 长老在门前拦住了她。"] == \
        lines[lines.index("      params.text:"):][:3]


def test_head_against_the_working_tree_by_default(repo: Path) -> None:
    drama = repo / "drama"
    result = fanren("diff", "--exit-code", cwd=drama)
    assert (result.code, result.stdout) == (0, ("HEAD → working tree (profile draft): 0 of 18 nodes differ "
                                               "(0 added, 0 removed)\n"))
    # one revision: that revision against the working tree
    assert differences(fanren("diff", "HEAD~1", "--json", cwd=drama)) == EDITED
    assert fanren("diff", "HEAD~1", "--exit-code", cwd=drama).code == 1


def test_added_and_removed_shots(repo: Path) -> None:
    drama = repo / "drama"
    text = (drama / "drama.toml").read_text(encoding="utf-8")
    s3 = text[text.index('[[scenes.shots]]\nid = "s3"'):text.index("[profiles.draft]")]
    (drama / "drama.toml").write_text(text.replace(s3, s3.replace('"s3"', '"s4"').replace("他点了点头。", "他走了。")),
                                      encoding="utf-8")
    found = differences(fanren("diff", "--json", cwd=drama))
    shots = {k: v[0] for k, v in found.items() if k.endswith(("s3", "s4", "s3:0", "s4:0"))}
    assert shots == {**{f"{kind}:s4": "added" for kind in ("keyframe", "clip", "shot")}, "line:s4:0": "added",
                     **{f"{kind}:s3": "removed" for kind in ("keyframe", "clip", "shot")}, "line:s3:0": "removed"}
    assert found["episode"] == ("changed", ["inputs"], ["shot:s4", "subtitles"])


def test_bad_revisions_and_folders_exit_2(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    drama = repo / "drama"
    result = fanren("diff", "nosuch", cwd=drama)
    assert (result.code, result.stderr) == (2, (f"error: unknown revision 'nosuch' in the git repository {repo} "
                                               "(the drama folder: drama/)\n"))
    result = fanren("diff", "HEAD~2", "HEAD", cwd=drama)
    assert (result.code, result.stderr) == (2, ("error: HEAD~2:drama/drama.toml: expected a drama.toml at "
                                               f"revision HEAD~2, got no such file in commit "
                                               f"{git(repo, 'rev-parse', 'HEAD~2')[:12]} (the drama folder is "
                                               "not in that commit; name another revision)\n"))
    edit(drama, 'fps = 12', 'fps = "twelve"')
    git(repo, "commit", "-q", "-am", "a bad fps")
    result = fanren("diff", "HEAD~1", "HEAD", cwd=drama)
    assert (result.code, result.stderr) == (2, ("error: HEAD:drama/drama.toml: drama.fps: expected an integer, "
                                               "got 'twelve'\n"))
    outside = tmp_path_factory.mktemp("no-git")
    (outside / "drama.toml").write_text(SMALL_DRAMA, encoding="utf-8")
    result = fanren("diff", outside)
    assert (result.code, result.stderr) == (2, (f"error: {outside} is not in a git repository (fanren diff "
                                               "compares git revisions of the drama folder)\n"))


def test_text_diff_marks_the_changed_words() -> None:
    left, right = text_diff(["action: Lin Qing climbs the steps", "narration: 长老拦住了她。", "same"],
                            ["action: Lin Qing runs up the steps", "narration: 长老在门前拦住了她。", "same"])
    assert left == ('<div class="line changed">action: Lin Qing <del>climbs</del> the steps</div>\n'
                    '<div class="line changed">narration: 长老拦住了她。</div>\n'
                    '<div class="line same">same</div>')
    assert right == ('<div class="line changed">action: Lin Qing <ins>runs up</ins> the steps</div>\n'
                     '<div class="line changed">narration: 长老<ins>在门前</ins>拦住了她。</div>\n'
                     '<div class="line same">same</div>')


def _playwright() -> object:
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("needs the playwright package (pip install playwright; its browsers are not needed)")
    return sync_playwright


SIDE = 'section[data-shot="{}"] .side.{}'


def test_the_page_shows_changed_shots_side_by_side_and_build_renders_the_missing(repo: Path) -> None:
    sync_playwright = _playwright()
    page_file = repo / "review" / "diff.html"
    result = fanren("diff", "HEAD~1", "HEAD", "drama", "--html", page_file, cwd=repo)
    assert result.code == 0, result.stderr
    with sync_playwright() as p:  # type: ignore[operator]
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(page_file.as_uri())
            assert page.eval_on_selector_all("section.shot", "s => s.map(e => e.dataset.shot)") == ["s1", "s2"]
            # side by side: the older revision left, the newer right, on one row
            left = page.locator(SIDE.format("s1", "before")).bounding_box()
            right = page.locator(SIDE.format("s1", "after")).bounding_box()
            assert left and right and left["x"] + left["width"] <= right["x"] and left["y"] == right["y"]
            assert page.text_content(SIDE.format("s1", "before") + " h3") == "HEAD~1"
            assert page.text_content(SIDE.format("s1", "after") + " h3") == "HEAD"
            # the changed words are marked, nothing else is
            assert page.eval_on_selector_all("del", "d => d.map(e => e.textContent)") == ["climbs"]
            assert page.eval_on_selector_all("ins", "d => d.map(e => e.textContent)") == ["runs up", "在门前"]
            # HEAD's s1 keyframe and s2 shot are not rendered; HEAD~1's are, and load
            assert page.eval_on_selector_all(SIDE.format("s1", "after") + " .missing",
                                             "m => m.map(e => e.textContent)") == [
                "keyframe not rendered — run with --build", "video not rendered — run with --build"]
            assert page.text_content(SIDE.format("s2", "after") + " .note") == \
                "the clip, silent: the shot video is not rendered"
            assert _image_widths(page) == [1280, 1280, 1280]
            assert _video_widths(page) == [1280, 1280, 1280]

            result = fanren("diff", "HEAD~1", "HEAD", "drama", "--html", page_file, "--build", cwd=repo)
            assert result.code == 0, result.stderr
            ran = {line.split()[1] for line in result.stderr.splitlines() if line.startswith("  run ")}
            assert ran == {"keyframe:s1", "clip:s1", "shot:s1", "line:s2:0", "shot:s2"}
            page.goto(page_file.as_uri())
            assert page.locator(".missing, .note").count() == 0
            assert _image_widths(page) == [1280] * 4
            assert _video_widths(page) == [1280] * 4
        finally:
            browser.close()


def _image_widths(page: object) -> list[int]:
    page.wait_for_function("[...document.images].every(i => i.complete)", timeout=20_000)  # type: ignore[attr-defined]
    return page.eval_on_selector_all("img.keyframe", "i => i.map(e => e.naturalWidth)")  # type: ignore[attr-defined,no-any-return]


def _video_widths(page: object) -> list[int]:
    page.wait_for_function(  # type: ignore[attr-defined]
        "[...document.querySelectorAll('video')].every(v => v.readyState >= 1 || v.error)", timeout=20_000)
    return page.eval_on_selector_all("video.clip", "v => v.map(e => e.videoWidth)")  # type: ignore[attr-defined,no-any-return]


def test_the_older_side_comes_from_the_remote_cache(repo: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    remote = tmp_path_factory.mktemp("remote")
    env = {"FANREN_REMOTE_CACHE": remote.as_uri()}
    pushed = fanren("cache", "push", "drama", cwd=repo, env=env)  # drama.lock names HEAD~1's build
    assert pushed.code == 0, pushed.stderr
    empty = tmp_path_factory.mktemp("empty-cache")

    def rendered(extra_env: dict[str, str]) -> dict[str, bool | None]:
        result = fanren("diff", "HEAD~1", "HEAD", "drama", "--json", "--cache-dir", empty, cwd=repo, env=extra_env)
        assert result.code == 0, result.stderr
        return {d["id"]: d["rendered"]["before"] for d in json.loads(result.stdout)["differ"]}

    assert set(rendered({}).values()) == {False}
    assert rendered(env) == dict.fromkeys(EDITED, True)  # pulled, checked against their sha256


def test_help_has_examples() -> None:
    result = fanren("diff", "--help")
    assert result.code == 0, result.stderr
    assert "fanren diff origin/main HEAD --html diff.html" in result.stdout


def test_the_example_drama_edited_and_never_rendered(tmp_path: Path) -> None:
    """The example drama, nothing rendered: an unchanged input reads the same on both sides, so
    exactly the edited nodes and those reading them differ."""
    drama = tmp_path / "xianxia"
    drama.mkdir()
    (drama / "drama.toml").write_text((REPO / "examples" / "xianxia" / "drama.toml").read_text(encoding="utf-8"),
                                      encoding="utf-8")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "the example")
    edit(drama, "the girl runs up a steep snowy path", "the girl stumbles up a steep snowy path")
    edit(drama, "雪里坐着一个人，白衣破碎，满身是霜。", "雪里坐着一个人，白衣破碎。")
    git(tmp_path, "commit", "-q", "-am", "one action, one narration line")
    found = differences(fanren("diff", "HEAD~1", "HEAD", "xianxia", "--json", cwd=tmp_path))
    assert found == {
        "keyframe:chase": ("changed", ["params.action", "params.prompt"], []),
        "clip:chase": ("changed", ["params.prompt"], ["keyframe:chase"]),
        "shot:chase": ("input-changed", [], ["clip:chase"]),
        "line:the_man:0": ("changed", ["params.sentences[0]", "params.text"], []),
        "shot:the_man": ("changed", ["params.lines[0].text"], ["line:the_man:0"]),
        "subtitles": ("input-changed", [], ["shot:chase", "shot:the_man"]),
        "episode": ("input-changed", [], ["shot:chase", "shot:the_man", "subtitles"]),
        "storyboard": ("changed", ["params.shots[4].action", "params.shots[5].narration"],
                       ["keyframe:chase", "shot:chase", "shot:the_man"]),
    }


def test_build_renders_both_revisions_changed_shots_into_an_empty_cache(repo: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty-cache"
    lock = (repo / "drama" / "drama.lock").read_bytes()
    report = (repo / "drama" / "out" / "draft" / "report.json").read_bytes()
    result = fanren("diff", "HEAD~1", "HEAD", "drama", "--json", "--build", "--cache-dir", empty, cwd=repo)
    assert result.code == 0, result.stderr
    ran = sorted(line.split()[1] for line in result.stderr.splitlines() if line.startswith("  run "))
    # HEAD~1 (read out of git into a temp folder): s1 and s2 and what they read; HEAD: what it changed
    older = ["character:elder", "character:lin", "clip:s1", "clip:s2", "keyframe:s1", "keyframe:s2",
             "line:s1:0", "line:s2:0", "line:s2:1", "shot:s1", "shot:s2"]
    assert ran == sorted([*older, "keyframe:s1", "clip:s1", "shot:s1", "line:s2:0", "shot:s2"])
    rendered = {d["id"]: d["rendered"] for d in json.loads(result.stdout)["differ"]}
    shown = ("keyframe:s1", "clip:s1", "shot:s1", "line:s2:0", "shot:s2")
    assert {nid: rendered[nid] for nid in shown} == {nid: {"before": True, "after": True} for nid in shown}
    # a review writes neither drama.lock nor out/
    assert (repo / "drama" / "drama.lock").read_bytes() == lock
    assert (repo / "drama" / "out" / "draft" / "report.json").read_bytes() == report


def test_references_and_templates_are_read_at_each_revision(tmp_path: Path) -> None:
    from PIL import Image

    drama = tmp_path / "drama"
    (drama / "refs").mkdir(parents=True)
    Image.new("RGB", (8, 8), "blue").save(drama / "refs" / "lin.png")
    blue = (drama / "refs" / "lin.png").read_bytes()
    (drama / "drama.toml").write_text(SMALL_DRAMA.replace('voice = "lin"\n', 'voice = "lin"\nreference = "refs/lin.png"\n'),
                                      encoding="utf-8")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "lin has a reference")
    Image.new("RGB", (8, 8), "red").save(drama / "refs" / "lin.png")
    red = (drama / "refs" / "lin.png").read_bytes()
    (drama / "templates").mkdir()
    (drama / "templates" / "motion.j2").write_text("{{ shot.action }}, slowly", encoding="utf-8")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "another reference, a motion template")
    found = differences(fanren("diff", "HEAD~1", "HEAD", "drama", "--json", "--html", tmp_path / "d.html",
                               cwd=tmp_path))
    page = (tmp_path / "d.html").read_text(encoding="utf-8")
    assert '<section class="character changed" id="character-lin" data-character="lin">' in page
    # the reference's digest is the text that changed; neither side's sheet is rendered
    assert page.count("character sheet not rendered — run with --build") == 2
    assert f"reference: refs/lin.png (<del>{digest_bytes(blue)[:12]}</del>)" in page
    assert f"reference: refs/lin.png (<ins>{digest_bytes(red)[:12]}</ins>)" in page
    assert {k: v for k, v in found.items() if k.startswith(("character", "keyframe", "clip"))} == {
        "character:lin": ("changed", ["sources.refs/lin.png"], []),
        "keyframe:s1": ("input-changed", [], ["character:lin"]),
        "keyframe:s2": ("input-changed", [], ["character:lin"]),
        **{f"clip:{s}": ("changed", ["params.prompt"], [f"keyframe:{s}"]) for s in ("s1", "s2")},
        "clip:s3": ("changed", ["params.prompt"], []),
    }


# ── a series ─────────────────────────────────────────────────────────────────

LIN_BLUE = 'description = "a young swordswoman in a blue robe"'
B1_NARRATION = 'narration = "多年以后。"'

# Lin's shared sheet (series.toml) and one narration line of ep2: per episode, the nodes that differ.
# ep2 shows Lin's `old` look, whose sheet is not the edited one: nothing of ep2 reads character:lin.
SERIES_EDITED = {
    None: {"character:lin": ("changed", ["params.description", "params.prompt"], [])},
    **{eid: {f"{eid}/keyframe:{shot}": ("changed", ["params.characters[0].description", "params.prompt"],
                                        ["character:lin"]),
             f"{eid}/clip:{shot}": ("input-changed", [], [f"{eid}/keyframe:{shot}"]),
             f"{eid}/shot:{shot}": ("input-changed", [], [f"{eid}/clip:{shot}"]),
             f"{eid}/subtitles": ("input-changed", [], [f"{eid}/shot:{shot}"]),
             f"{eid}/episode": ("input-changed", [], [f"{eid}/shot:{shot}", f"{eid}/subtitles"]),
             f"{eid}/storyboard": ("input-changed", [], [f"{eid}/keyframe:{shot}", f"{eid}/shot:{shot}"])}
       for eid, shot in (("ep1", "a1"), ("ep10", "c1"))},
    "ep2": {"ep2/line:b1:0": ("changed", ["params.sentences[0]", "params.text"], []),
            "ep2/shot:b1": ("changed", ["params.lines[0].text"], ["ep2/line:b1:0"]),
            "ep2/subtitles": ("input-changed", [], ["ep2/shot:b1"]),
            "ep2/episode": ("input-changed", [], ["ep2/shot:b1", "ep2/subtitles"]),
            "ep2/storyboard": ("changed", ["params.shots[0].narration"], ["ep2/shot:b1"])},
}


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


@pytest.fixture
def series_repo(tmp_path: Path) -> Path:
    """A git repository whose folder `s/` is the small series of test_series.py (never built):
    HEAD~1 as written, HEAD edits Lin's description in series.toml and ep2's first narration."""
    from test_series import edit as edit_file
    from test_series import write_series

    root = write_series(tmp_path / "s")
    git(tmp_path, "init", "-q", "-b", "main")
    commit_all(tmp_path, "the series")
    edit_file(root / "series.toml", LIN_BLUE, 'description = "a young swordswoman in a green robe"')
    edit_file(root / "ep2" / "drama.toml", B1_NARRATION, 'narration = "很多年以后。"')
    commit_all(tmp_path, "Lin's robe, one narration line of ep2")
    return tmp_path


def per_episode(result: Run) -> dict[str | None, dict[str, tuple[str, list[str], list[str]]]]:
    assert result.code == 0, result.stderr
    grouped: dict[str | None, dict[str, tuple[str, list[str], list[str]]]] = {}
    for d in json.loads(result.stdout)["differ"]:
        grouped.setdefault(d["episode"], {})[d["id"]] = (d["status"], [f["path"] for f in d["fields"]], d["inputs"])
    return grouped


def test_a_series_names_the_changed_nodes_per_episode(series_repo: Path) -> None:
    result = fanren("diff", "HEAD~1", "HEAD", "s", "--json", cwd=series_repo)
    assert per_episode(result) == SERIES_EDITED
    assert json.loads(result.stdout)["episodes"] == ["ep1", "ep2", "ep10"]
    # the terminal groups them: the shared sheets, then each episode in series order
    result = fanren("diff", "HEAD~1", "HEAD", "s", cwd=series_repo)
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert [line for line in lines if not line.startswith(" ")] == [
        "HEAD~1 → HEAD (profile draft): 18 of 32 nodes differ (0 added, 0 removed)",
        "shared: 1 node differs", "ep1: 6 nodes differ", "ep2: 5 nodes differ", "ep10: 6 nodes differ"]
    assert lines[2:5] == ["  changed        character:lin [card]", "      params.description:",
                          "        - a young swordswoman in a blue robe"]
    ep2 = lines[lines.index("ep2: 5 nodes differ"):]
    assert ep2[1:4] == ["  changed        ep2/line:b1:0 [espeak]", "      params.sentences[0]:",
                        "        - 多年以后。"]
    assert ["      params.lines[0].text:", "        - 多年以后。", "        + 很多年以后。"] == \
        ep2[ep2.index("      params.lines[0].text:"):][:3]


def test_an_episode_folder_diffs_that_episode_and_the_sheets_it_reads(series_repo: Path) -> None:
    result = fanren("diff", "HEAD~1", "HEAD", "s/ep2", "--json", cwd=series_repo)
    assert per_episode(result) == {"ep2": SERIES_EDITED["ep2"]}
    # ep2's 11 nodes and the two sheets it reads (Lin's old look, the elder)
    assert (json.loads(result.stdout)["nodes"], json.loads(result.stdout)["episode"]) == (13, "ep2")
    result = fanren("diff", "HEAD~1", "HEAD", "-C", "s/ep1", cwd=series_repo)
    assert result.stdout.splitlines()[:3] == [
        "HEAD~1 → HEAD (profile draft, episode ep1): 7 of 13 nodes differ (0 added, 0 removed)",
        "shared: 1 node differs", "  changed        character:lin [card]"]
    # an episode new in the working tree: its nodes are added, the sheets it reads are not
    shutil.copytree(series_repo / "s" / "ep2", series_repo / "s" / "ep3")
    found = per_episode(fanren("diff", "--json", cwd=series_repo / "s" / "ep3"))
    assert set(found) == {"ep3"} and {status for status, _, _ in found["ep3"].values()} == {"added"}
    assert len(found["ep3"]) == 11
    # a folder the series does not list at either revision is not an episode of it
    series_toml = series_repo / "s" / "series.toml"
    series_toml.write_text('[series]\nepisodes = ["ep1", "ep2"]\n' + series_toml.read_text(encoding="utf-8"),
                           encoding="utf-8")
    commit_all(series_repo, "ep3 and ep10 are not episodes")
    result = fanren("diff", "HEAD~1", cwd=series_repo / "s" / "ep10")
    removed = ["keyframe:c1 [card]", "clip:c1 [kenburns]", "line:c1:0 [espeak]", "shot:c1 [mux]",
               "subtitles [mux]", "episode [mux]", "storyboard [storyboard]"]
    assert result.code == 0, result.stderr
    assert result.stdout.splitlines() == [
        "HEAD~1 → working tree (profile draft, episode ep10): 7 of 8 nodes differ (0 added, 7 removed)",
        "ep10: 7 nodes differ", *(f"  removed        ep10/{node}" for node in removed)]
    result = fanren("diff", cwd=series_repo / "s" / "ep10")
    assert (result.code, result.stderr) == (2, (f"error: {series_repo}/s/ep10 is not an episode of the series in "
                                                f"{series_repo}/s at revision HEAD nor in the working tree\n"))


def test_a_series_exit_code(series_repo: Path) -> None:
    series = series_repo / "s"
    assert fanren("diff", "--exit-code", cwd=series).code == 0
    assert fanren("diff", "HEAD~1", "--exit-code", cwd=series).code == 1
    edit(series / "ep2", 'text = "你回来了。"', 'text = "你终于回来了。"')
    assert [fanren("diff", "--exit-code", folder, cwd=series_repo).code for folder in ("s", "s/ep1", "s/ep2")] == \
        [1, 0, 1]


def test_a_drama_that_became_a_series_exits_2(tmp_path: Path) -> None:
    from test_series import write_series

    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "drama.toml").write_text(SMALL_DRAMA, encoding="utf-8")
    git(tmp_path, "init", "-q")
    commit_all(tmp_path, "a drama")
    (tmp_path / "s" / "drama.toml").unlink()
    write_series(tmp_path / "s")
    commit_all(tmp_path, "now a series")
    message = ("error: HEAD~1:s/series.toml: expected a series.toml at revision HEAD~1, as at revision HEAD, "
               "got a single drama (drama.toml) (a drama and a series share no node ids; compare two "
               "revisions of the series)\n")
    for folder in ("s", "s/ep2"):
        result = fanren("diff", "HEAD~1", "HEAD", folder, cwd=tmp_path)
        assert (result.code, result.stderr) == (2, message)
    # bad input in an episode at a revision names that episode's file at that revision
    edit(tmp_path / "s" / "ep2", 'id = "b1"', 'id = "b 1"')
    commit_all(tmp_path, "a bad shot id")
    result = fanren("diff", "HEAD~1", "HEAD", "s", cwd=tmp_path)
    assert result.code == 2 and result.stderr.startswith("error: HEAD:s/ep2/drama.toml: scenes[0].shots[0].id: "), \
        result.stderr


def test_the_series_page_has_a_section_per_episode(series_repo: Path) -> None:
    sync_playwright = _playwright()
    page_file = series_repo / "diff.html"
    result = fanren("diff", "HEAD~1", "HEAD", "s", "--html", page_file, cwd=series_repo)
    assert result.code == 0, result.stderr
    with sync_playwright() as p:  # type: ignore[operator]
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(page_file.as_uri())
            assert page.eval_on_selector_all("section.episode", "s => s.map(e => e.id)") == [
                "shared", "episode-ep1", "episode-ep2", "episode-ep10"]
            assert page.eval_on_selector_all("section.episode > h2", "h => h.map(e => e.textContent)") == [
                "shared by the episodes 1 node differs", "ep1 · 第一集 6 nodes differ",
                "ep2 · 试炼 5 nodes differ", "ep10 · 试炼 6 nodes differ"]
            sections = "section.episode[id='{}'] > section"
            assert page.eval_on_selector_all(sections.format("shared"), "s => s.map(e => e.id)") == ["character-lin"]
            assert [page.eval_on_selector_all(sections.format(f"episode-{eid}"), "s => s.map(e => e.dataset.shot)")
                    for eid in ("ep1", "ep2", "ep10")] == [["a1"], ["b1"], ["c1"]]
            # the changed words: Lin's robe in her sheet, the narration of ep2's b1; nothing else
            assert page.eval_on_selector_all("del", "d => d.map(e => e.textContent)") == ["blue"]
            assert page.eval_on_selector_all("ins", "d => d.map(e => e.textContent)") == ["green", "很"]
            assert page.text_content("#ep2-shot-b1 .side.after ins") == "很"
            left = page.locator("#ep2-shot-b1 .side.before").bounding_box()
            right = page.locator("#ep2-shot-b1 .side.after").bounding_box()
            assert left and right and left["x"] + left["width"] <= right["x"] and left["y"] == right["y"]
        finally:
            browser.close()


def test_build_renders_the_changed_shots_of_every_episode(series_repo: Path, tmp_path: Path) -> None:
    result = fanren("diff", "HEAD~1", "HEAD", "s", "--json", "--build", "--cache-dir", tmp_path / "empty-cache",
                    cwd=series_repo)
    assert result.code == 0, result.stderr
    ran = sorted(line.split()[1] for line in result.stderr.splitlines() if line.startswith("  run "))
    # HEAD~1: the three changed shots and what they read; HEAD: what the two edits changed
    older = ["character:lin", "character:lin@old", *(f"{eid}/{kind}:{shot}" for eid, shot in
             (("ep1", "a1"), ("ep2", "b1"), ("ep10", "c1")) for kind in ("keyframe", "clip", "shot")),
             "ep1/line:a1:0", "ep2/line:b1:0", "ep10/line:c1:0"]
    newer = ["character:lin", *(f"{eid}/{kind}:{shot}" for eid, shot in (("ep1", "a1"), ("ep10", "c1"))
                                for kind in ("keyframe", "clip", "shot")), "ep2/line:b1:0", "ep2/shot:b1"]
    assert ran == sorted(older + newer)
    rendered = {d["id"]: d["rendered"] for d in json.loads(result.stdout)["differ"] if d["kind"] == "shot"}
    assert rendered == {nid: {"before": True, "after": True} for nid in ("ep1/shot:a1", "ep2/shot:b1", "ep10/shot:c1")}
