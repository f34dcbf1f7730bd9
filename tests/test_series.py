"""A series: series.toml + episode folders, merged, checked, compiled into one graph and built."""

from __future__ import annotations

import json
import shutil
import tomllib
from pathlib import Path

import pytest
from conftest import fanren, ran

from fanren.cache import digest_file
from fanren.compile import compile_drama, resolve_engines
from fanren.errors import DramaError, UsageError
from fanren.media import probe
from fanren.series import Series, choose_episodes, load_drama, load_series

SERIES = """\
[drama]
title = "试炼"
language = "zh"
fps = 12
style = "ink wash painting"
seed = 7

[narrator]
voice = "narrator"

[voices.narrator]
speed = 1.3

[characters.lin]
name = "林青"
description = "a young swordswoman in a blue robe"

[characters.lin.looks.old]
description = "an old swordswoman with white hair"

[characters.elder]
name = "白长老"
description = "an old sect elder with a white beard"

[profiles.draft]
video = { engine = "kenburns", seconds = 1.0 }
"""

EPISODES = {
    "ep1": """\
[drama]
title = "第一集"

[[scenes]]
id = "gate"
setting = "a mountain gate in the mist"

[[scenes.shots]]
id = "a1"
characters = ["lin"]
action = "Lin Qing climbs the stone steps"
narration = "山门在雾中。"

[[scenes.shots]]
id = "a2"
characters = ["elder"]
action = "The elder waits at the gate"
narration = "长老在等。"
""",
    "ep2": """\
[[scenes]]
id = "hall"
setting = "a candle-lit hall"
looks = { lin = "old" }

[[scenes.shots]]
id = "b1"
characters = ["lin"]
action = "Old Lin Qing remembers"
narration = "多年以后。"

[[scenes.shots]]
id = "b2"
characters = ["elder"]
action = "The elder's portrait on the wall"
lines = [{ who = "elder", text = "你回来了。" }]
""",
    "ep10": """\
[[scenes]]
id = "cliff"
setting = "a cliff above the clouds"

[[scenes.shots]]
id = "c1"
characters = ["lin"]
action = "Lin Qing looks at the sea of clouds"
narration = "云海无边。"
""",
}


def write_series(folder: Path, series: str = SERIES, episodes: dict[str, str] = EPISODES) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "series.toml").write_text(series, encoding="utf-8")
    for eid, text in episodes.items():
        (folder / eid).mkdir(exist_ok=True)
        (folder / eid / "drama.toml").write_text(text, encoding="utf-8")
    return folder


def edit(file: Path, old: str, new: str) -> None:
    text = file.read_text(encoding="utf-8")
    assert old in text, old
    file.write_text(text.replace(old, new, 1), encoding="utf-8")


def problem(root: Path) -> str:
    """The one problem loading the series at `root` finds, as the CLI shows it."""
    with pytest.raises(DramaError) as caught:
        load_series(root)
    assert len(caught.value.problems) == 1, caught.value.show()
    return caught.value.problems[0].show()


# ── loading and merging ─────────────────────────────────────────────────────


def test_episodes_in_natural_order_merged_over_the_series(tmp_path: Path) -> None:
    series = load_series(write_series(tmp_path / "s"))
    assert list(series.episodes) == ["ep1", "ep2", "ep10"]
    assert series.selected == ("ep1", "ep2", "ep10")
    ep1, ep2 = series.episodes["ep1"], series.episodes["ep2"]
    assert (ep1.drama.title, ep1.drama.style, ep1.drama.fps) == ("第一集", "ink wash painting", 12)
    assert ep2.drama.title == "试炼"
    assert set(ep2.characters) == {"lin", "elder"}
    assert ep2.file == tmp_path / "s" / "ep2" / "drama.toml"
    assert ep2.root == tmp_path / "s"


def test_the_series_table_orders_the_episodes(tmp_path: Path) -> None:
    root = write_series(tmp_path / "s", '[series]\nepisodes = ["ep10", "ep1"]\n' + SERIES)
    assert list(load_series(root).episodes) == ["ep10", "ep1"]


def test_an_episode_entry_replaces_the_series_entry_of_that_id(tmp_path: Path) -> None:
    episodes = dict(EPISODES, ep10=EPISODES["ep10"] + '\n[characters.lin]\ndescription = "Lin in armour"\n')
    series = load_series(write_series(tmp_path / "s", episodes=episodes))
    assert series.episodes["ep10"].characters["lin"].description == "Lin in armour"
    assert series.episodes["ep10"].characters["lin"].looks == {}
    assert series.episodes["ep1"].characters["lin"].description == "a young swordswoman in a blue robe"


def test_an_episodes_own_reference_overrides_the_series_one(tmp_path: Path) -> None:
    from PIL import Image

    text = SERIES.replace('name = "林青"\n', 'name = "林青"\nreference = "refs/lin.png"\n')
    root = write_series(tmp_path / "s", text)
    for folder in (root / "refs", root / "ep2" / "refs"):
        folder.mkdir()
        Image.new("RGB", (8, 8)).save(folder / "lin.png")
    series = load_series(root)
    assert series.episodes["ep1"].characters["lin"].reference == "refs/lin.png"
    assert series.episodes["ep2"].characters["lin"].reference == "ep2/refs/lin.png"


def test_music_is_found_in_the_episode_folder_first(tmp_path: Path) -> None:
    root = write_series(tmp_path / "s", SERIES + '\n[music]\nfile = "music/theme.ogg"\n')
    for folder in (root / "music", root / "ep10" / "music"):
        folder.mkdir()
        (folder / "theme.ogg").write_bytes(b"a tune")
    series = load_series(root)
    assert series.episodes["ep1"].music.file == "music/theme.ogg"
    assert series.episodes["ep10"].music.file == "ep10/music/theme.ogg"


def test_a_folder_inside_an_episode_selects_that_episode(tmp_path: Path) -> None:
    root = write_series(tmp_path / "s")
    drama = load_drama(root / "ep2")
    assert isinstance(drama, Series) and drama.selected == ("ep2",)


def test_a_folder_the_series_does_not_list_is_not_an_episode(tmp_path: Path) -> None:
    root = write_series(tmp_path / "s", '[series]\nepisodes = ["ep1", "ep2"]\n' + SERIES)
    with pytest.raises(UsageError) as caught:
        load_drama(root / "ep10")
    assert str(caught.value) == (f"{root}/ep10 is not an episode of the series in {root}: [series] episodes "
                                 "of series.toml does not list 'ep10'")


@pytest.mark.parametrize(("spec", "chosen"), [
    ("ep2", ("ep2",)), ("2-3", ("ep2", "ep10")), ("ep1-ep2", ("ep1", "ep2")), ("3,1", ("ep1", "ep10")),
])
def test_choose_episodes(tmp_path: Path, spec: str, chosen: tuple[str, ...]) -> None:
    assert choose_episodes(load_series(write_series(tmp_path / "s")), spec).selected == chosen


def test_choose_an_unknown_episode(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as caught:
        choose_episodes(load_series(write_series(tmp_path / "s")), "ep3-ep9")
    assert str(caught.value) == "--episodes 'ep3-ep9': no episode 'ep3' (did you mean 'ep2'?)"


# ── bad input ───────────────────────────────────────────────────────────────


def test_an_episode_names_a_character_the_series_lacks(tmp_path: Path) -> None:
    root = write_series(tmp_path / "s")
    edit(root / "ep2" / "drama.toml", 'characters = ["elder"]', 'characters = ["eldr"]')
    assert problem(root) == (f"{root}/ep2/drama.toml: scenes[0].shots[1].characters[0]: expected the id "
                              "of a [characters.*] entry, got 'eldr' (did you mean 'elder'?)")


def test_an_episode_listed_twice(tmp_path: Path) -> None:
    root = write_series(tmp_path / "s", '[series]\nepisodes = ["ep1", "ep2", "ep1"]\n' + SERIES)
    assert problem(root) == (f"{root}/series.toml: series.episodes[2]: expected an episode listed once, "
                              "got 'ep1' (also listed at series.episodes[0])")


def test_a_listed_episode_without_drama_toml(tmp_path: Path) -> None:
    root = write_series(tmp_path / "s", '[series]\nepisodes = ["ep1", "ep3"]\n' + SERIES)
    (root / "ep3").mkdir()
    assert problem(root) == (f"{root}/series.toml: series.episodes[1]: expected a folder holding a "
                              "drama.toml, got 'ep3' (no such file ep3/drama.toml)")


def test_a_look_that_does_not_exist(tmp_path: Path) -> None:
    root = write_series(tmp_path / "s")
    edit(root / "ep2" / "drama.toml", 'looks = { lin = "old" }', 'looks = { lin = "olde" }')
    assert problem(root) == (f"{root}/ep2/drama.toml: scenes[0].looks.lin: expected a look of character "
                              "'lin', got 'olde' (did you mean 'old'?)")


def test_a_look_of_a_character_without_looks(tmp_path: Path) -> None:
    root = write_series(tmp_path / "s")
    edit(root / "ep2" / "drama.toml", 'looks = { lin = "old" }', 'looks = { elder = "old" }')
    assert problem(root) == (f"{root}/ep2/drama.toml: scenes[0].looks.elder: expected a look of character "
                              "'elder', got 'old' (elder has no [characters.elder.looks.*])")


@pytest.mark.parametrize(("key", "value", "series_value"), [("aspect", '"9:16"', "'16:9'"), ("fps", "24", "12")])
def test_an_episode_may_not_change_the_format(tmp_path: Path, key: str, value: str, series_value: str) -> None:
    root = write_series(tmp_path / "s")
    edit(root / "ep1" / "drama.toml", 'title = "第一集"', f'title = "第一集"\n{key} = {value}')
    assert problem(root) == (f"{root}/ep1/drama.toml: drama.{key}: expected the series' {key} {series_value} "
                              f"or nothing, got {value.replace(chr(34), chr(39))} (every episode of a series has "
                              f"the {key} of series.toml)")


def test_an_episode_may_not_have_profiles(tmp_path: Path) -> None:
    root = write_series(tmp_path / "s")
    (root / "ep1" / "drama.toml").write_text(EPISODES["ep1"] + '\n[profiles.draft]\nimage = "card"\n',
                                             encoding="utf-8")
    assert problem(root) == (f"{root}/ep1/drama.toml: profiles: expected no [profiles] in an episode, got a "
                              "[profiles] table ([profiles] is set for the whole series in series.toml)")


def test_series_toml_holds_no_scenes(tmp_path: Path) -> None:
    root = write_series(tmp_path / "s", SERIES + '\n[[scenes]]\nid = "x"\nsetting = "y"\n')
    assert problem(root) == (f"{root}/series.toml: scenes: expected no [[scenes]] in series.toml, got a "
                              "[[scenes]] table (each episode's drama.toml holds its own scenes)")


def test_bad_input_in_a_series_exits_2_naming_the_file(tmp_path: Path) -> None:
    root = write_series(tmp_path / "s")
    edit(root / "ep2" / "drama.toml", 'looks = { lin = "old" }', 'looks = { lin = "olde" }')
    result = fanren("build", root)
    assert result.code == 2
    assert result.stderr == (f"error: {root}/ep2/drama.toml: scenes[0].looks.lin: expected a look of "
                             "character 'lin', got 'olde' (did you mean 'old'?)\n")
    assert not (root / "out").exists() and not (root / "drama.lock").exists()


# ── one graph ───────────────────────────────────────────────────────────────


def graph_of(root: Path) -> dict[str, tuple[str, ...]]:
    drama = load_drama(root)
    return {n.id: n.inputs for n in compile_drama(drama, resolve_engines(drama, "draft")).topological()}


def test_one_graph_shares_the_sheets_and_prefixes_the_episodes(tmp_path: Path) -> None:
    graph = graph_of(write_series(tmp_path / "s"))
    assert {n for n in graph if "/" not in n} == {"character:lin", "character:lin@old", "character:elder"}
    assert graph["ep1/keyframe:a1"] == ("character:lin",)
    assert graph["ep2/keyframe:b1"] == ("character:lin@old",)
    assert graph["ep10/keyframe:c1"] == ("character:lin",)
    assert graph["ep2/shot:b2"] == ("ep2/clip:b2", "ep2/line:b2:0")
    assert graph["ep2/episode"] == ("ep2/shot:b1", "ep2/shot:b2", "ep2/subtitles")
    assert len(graph) == 3 + 2 * (4 + 4 + 3) + (4 + 3)


def test_an_episode_that_redefines_a_character_gets_its_own_sheet(tmp_path: Path) -> None:
    episodes = dict(EPISODES, ep10=EPISODES["ep10"] + '\n[characters.lin]\ndescription = "Lin in armour"\n')
    graph = graph_of(write_series(tmp_path / "s", episodes=episodes))
    assert graph["ep10/keyframe:c1"] == ("ep10/character:lin",)
    assert graph["ep1/keyframe:a1"] == ("character:lin",)
    assert "ep10/character:elder" not in graph  # equal to the series' sheet: shared


def test_an_episode_that_changes_the_style_draws_its_own_sheets(tmp_path: Path) -> None:
    episodes = dict(EPISODES, ep2='[drama]\nstyle = "oil painting"\n' + EPISODES["ep2"])
    graph = graph_of(write_series(tmp_path / "s", episodes=episodes))
    assert graph["ep2/keyframe:b1"] == ("ep2/character:lin@old",)
    assert graph["ep1/keyframe:a1"] == ("character:lin",)


# ── building: the incremental matrix over a series ──────────────────────────


@pytest.fixture(scope="module")
def built_series(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write_series(tmp_path_factory.mktemp("series") / "s")
    result = fanren("build", root)
    assert result.code == 0, result.stderr
    return root


@pytest.fixture
def series(built_series: Path, tmp_path: Path) -> Path:
    target = tmp_path / "s"
    shutil.copytree(built_series, target, symlinks=True)
    return target


def rebuild(root: Path, *args: str, folder: Path | None = None) -> set[str]:
    """Build `folder` (default: the series root) and return the nodes the build ran."""
    result = fanren("build", folder or root, *args)
    assert result.code == 0, result.stderr
    return ran(root)


def test_a_series_builds_every_episode(built_series: Path) -> None:
    out = built_series / "out" / "draft"
    for eid in ("ep1", "ep2", "ep10"):
        for name in ("episode.mp4", "episode.srt", "episode.ass", "storyboard.html", "report.json"):
            assert (out / eid / name).is_file(), (eid, name)
    ep2 = json.loads((out / "ep2" / "report.json").read_text(encoding="utf-8"))
    assert {n["id"] for n in ep2["nodes"]} == {
        "character:lin", "character:lin@old", "character:elder", "keyframe:b1", "clip:b1", "line:b1:0",
        "shot:b1", "keyframe:b2", "clip:b2", "line:b2:0", "shot:b2", "subtitles", "episode", "storyboard"}
    lock = (built_series / "drama.lock").read_text(encoding="utf-8")
    assert '[draft."ep10/keyframe:c1"]' in lock and '[draft."character:lin@old"]' in lock
    assert not (built_series / "ep1" / "drama.lock").exists()


def test_each_episodes_report_holds_its_own_timeline(built_series: Path) -> None:
    """report.json's `timeline` (fanren/export/report.py) of each episode: its own shots, lines and
    cues, as its episode.mp4 and episode.srt have them; the series' report has none."""
    out = built_series / "out" / "draft"
    texts = {"ep1": [("line:a1:0", "山门在雾中。"), ("line:a2:0", "长老在等。")],
             "ep2": [("line:b1:0", "多年以后。"), ("line:b2:0", "你回来了。")],
             "ep10": [("line:c1:0", "云海无边。")]}
    for eid, lines in texts.items():
        timeline = json.loads((out / eid / "report.json").read_text(encoding="utf-8"))["timeline"]
        assert timeline["fps"] == 12
        assert timeline["frames"] == probe(out / eid / "episode.mp4").frames
        assert [s["id"] for s in timeline["shots"]] == [line.split(":")[1] for line, _ in lines]
        assert sum(s["frames"] for s in timeline["shots"]) == timeline["frames"]
        assert [(line["id"], line["text"]) for s in timeline["shots"] for line in s["lines"]] == lines
        srt = (out / eid / "episode.srt").read_text(encoding="utf-8").strip().split("\n\n")
        assert [c["text"] for c in timeline["cues"]] == [block.split("\n", 2)[2] for block in srt]
    assert "timeline" not in json.loads((out / "report.json").read_text(encoding="utf-8"))


def test_a_noop_series_build_runs_nothing(series: Path) -> None:
    assert rebuild(series) == set()


def test_a_shared_character_edit_reruns_the_shots_that_show_it_in_every_episode(series: Path) -> None:
    edit(series / "series.toml", "an old sect elder with a white beard", "an old sect elder with a black beard")
    assert rebuild(series) == {
        "character:elder",
        "ep1/keyframe:a2", "ep1/clip:a2", "ep1/shot:a2", "ep1/episode", "ep1/storyboard",
        "ep2/keyframe:b2", "ep2/clip:b2", "ep2/shot:b2", "ep2/episode", "ep2/storyboard",
    }


def test_a_look_edit_reruns_only_the_shots_in_that_look(series: Path) -> None:
    edit(series / "series.toml", "an old swordswoman with white hair", "an old swordswoman with grey hair")
    assert rebuild(series) == {"character:lin@old", "ep2/keyframe:b1", "ep2/clip:b1", "ep2/shot:b1",
                               "ep2/episode", "ep2/storyboard"}


def test_a_narration_edit_touches_only_its_episode(series: Path) -> None:
    edit(series / "ep10" / "drama.toml", "云海无边。", "云海茫茫。")
    assert rebuild(series) == {"ep10/line:c1:0", "ep10/shot:c1", "ep10/subtitles", "ep10/episode",
                               "ep10/storyboard"}


def test_building_some_episodes_keeps_the_others_in_drama_lock(series: Path) -> None:
    edit(series / "series.toml", "an old sect elder with a white beard", "an old sect elder with a black beard")
    assert rebuild(series, "--episodes", "2-3") == {
        "character:elder", "ep2/keyframe:b2", "ep2/clip:b2", "ep2/shot:b2", "ep2/episode", "ep2/storyboard"}
    assert '[draft."ep1/keyframe:a2"]' in (series / "drama.lock").read_text(encoding="utf-8")
    assert rebuild(series, folder=series / "ep1") == {"ep1/keyframe:a2", "ep1/clip:a2", "ep1/shot:a2", "ep1/episode",
                                       "ep1/storyboard"}
    assert rebuild(series) == set()


# ── the example ─────────────────────────────────────────────────────────────


def test_the_series_example_builds_in_draft(tmp_path: Path) -> None:
    root = tmp_path / "series-xianxia"
    shutil.copytree(Path(__file__).resolve().parent.parent / "examples" / "series-xianxia", root)
    result = fanren("build", root)
    assert result.code == 0, result.stderr
    report = json.loads((root / "out" / "draft" / "report.json").read_text(encoding="utf-8"))
    nodes = {n["id"]: n for n in report["nodes"]}
    assert {n for n in nodes if "/" not in n} == {"character:ayuan", "character:lu", "character:lu@young",
                                                    "character:wensong"}
    assert {n["status"] for n in nodes.values()} == {"ran"}
    graph = graph_of(root)
    assert [k for k, inputs in graph.items() if "character:lu@young" in inputs] == [
        "ep02/keyframe:last_stand", "ep03/keyframe:memory"]
    assert graph["ep03/keyframe:the_man"] == ("character:lu",)
    for eid in ("ep01", "ep02", "ep03"):
        assert (root / "out" / "draft" / eid / "episode.mp4").is_file()


# ── the season page, status, explain, graph, gc, watch ──────────────────────


def season(root: Path) -> dict:
    return json.loads((root / "out" / "draft" / "season.json").read_text(encoding="utf-8"))


def shot_seconds(root: Path, episode: str) -> float:
    """An episode's length from its shots' timing.json, as the season reports it."""
    lock = (root / "drama.lock").read_text(encoding="utf-8")
    entries = tomllib.loads(lock)["draft"]
    total = 0.0
    for node_id, entry in entries.items():
        if node_id.startswith(f"{episode}/shot:"):
            digest = entry["outputs"]["timing.json"]
            total += json.loads((root / ".fanren-cache" / "objects" / digest[:2] / digest[2:]).read_text())["duration"]
    return round(total, 3)


def test_the_season_lists_every_episode(built_series: Path) -> None:
    got = season(built_series)
    assert [(e["id"], e["title"], e["shots"], e["stale"]) for e in got["episodes"]] == [
        ("ep1", "第一集", 2, []), ("ep2", "试炼", 2, []), ("ep10", "试炼", 1, [])]
    assert [e["seconds"] for e in got["episodes"]] == [shot_seconds(built_series, e) for e in ("ep1", "ep2", "ep10")]
    assert all(e["seconds"] > 0 for e in got["episodes"])
    assert (got["title"], got["profile"], got["shared_stale"]) == ("试炼", "draft", [])
    page = (built_series / "out" / "draft" / "index.html").read_text(encoding="utf-8")
    for eid in ("ep1", "ep2", "ep10"):
        assert f'<a href="{eid}/storyboard.html">{eid}</a>' in page
        assert f'<a href="{eid}/episode.mp4">' in page


def test_the_season_names_what_a_partial_build_left_stale(series: Path) -> None:
    edit(series / "series.toml", "an old sect elder with a white beard", "an old sect elder with a black beard")
    rebuild(series, "--episodes", "ep2")
    got = {e["id"]: e for e in season(series)["episodes"]}
    assert got["ep1"]["stale"] == ["ep1/clip:a2", "ep1/episode", "ep1/keyframe:a2", "ep1/shot:a2",
                                   "ep1/storyboard", "ep1/subtitles"]
    assert got["ep2"]["stale"] == [] and got["ep10"]["stale"] == []
    assert got["ep1"]["seconds"] is None
    assert "6 stale: ep1/clip:a2" in (series / "out" / "draft" / "index.html").read_text(encoding="utf-8")


def test_status_of_a_series_and_of_one_episode(series: Path) -> None:
    edit(series / "ep10" / "drama.toml", "云海无边。", "云海茫茫。")
    edit(series / "ep1" / "drama.toml", "山门在雾中。", "山门在云中。")
    whole = json.loads(fanren("status", series, "--json").stdout)
    assert [(d["id"], d["reason"]) for d in whole["stale"]] == [
        ("ep1/line:a1:0", "changed"), ("ep1/shot:a1", "input-changed"), ("ep1/subtitles", "input-changed"),
        ("ep1/episode", "input-changed"), ("ep1/storyboard", "input-changed"),
        ("ep10/line:c1:0", "changed"), ("ep10/shot:c1", "input-changed"), ("ep10/subtitles", "input-changed"),
        ("ep10/episode", "input-changed"), ("ep10/storyboard", "input-changed")]
    one = json.loads(fanren("status", series / "ep10", "--json").stdout)
    assert [d["id"] for d in one["stale"]] == ["ep10/line:c1:0", "ep10/shot:c1", "ep10/subtitles",
                                               "ep10/episode", "ep10/storyboard"]
    assert one["nodes"] == 1 + 7  # the one sheet it reads (character:lin) and its own nodes
    chosen = json.loads(fanren("status", series, "--episodes", "1", "--json").stdout)
    assert [d["id"] for d in chosen["stale"]] == ["ep1/line:a1:0", "ep1/shot:a1", "ep1/subtitles",
                                                  "ep1/episode", "ep1/storyboard"]


def test_explain_a_node_of_an_episode(series: Path) -> None:
    edit(series / "ep10" / "drama.toml", "云海无边。", "云海茫茫。")
    result = fanren("explain", "ep10/line:c1:0", "-C", series)
    assert result.code == 0, result.stderr
    assert result.stdout.splitlines() == ["ep10/line:c1:0 would run: changed",
                                          "  params.sentences[0]:", "    - 云海无边。", "    + 云海茫茫。",
                                          "  params.text:", "    - 云海无边。", "    + 云海茫茫。"]


def test_explain_in_an_episode_folder_takes_ids_within_the_episode(series: Path) -> None:
    edit(series / "ep10" / "drama.toml", "云海无边。", "云海茫茫。")
    result = fanren("explain", "line:c1:0", "-C", series / "ep10")
    assert result.code == 0, result.stderr
    assert result.stdout.splitlines()[0] == "ep10/line:c1:0 would run: changed"
    assert fanren("explain", "character:lin", "-C", series / "ep10").stdout.startswith("character:lin is up to date")


def test_graph_of_one_episode_holds_its_nodes_and_the_sheets_it_reads(series: Path) -> None:
    result = fanren("graph", series / "ep2", "--format", "mermaid")
    assert result.code == 0, result.stderr
    ids = {line.split('["')[1].split("<br/>")[0] for line in result.stdout.splitlines() if '["' in line}
    assert {i for i in ids if "/" not in i} == {"character:lin@old", "character:elder"}
    assert {i.split("/")[0] for i in ids if "/" in i} == {"ep2"}


def test_gc_keeps_what_every_episode_reaches(series: Path) -> None:
    before = set((series / ".fanren-cache" / "actions").rglob("*.json"))
    result = fanren("gc", series / "ep1")
    assert result.code == 0, result.stderr
    assert result.stdout.startswith("removed 0 records and 0 objects")
    assert set((series / ".fanren-cache" / "actions").rglob("*.json")) == before
    assert rebuild(series) == set()


def save(file: Path, old: str, new: str) -> None:
    """Save as editors do: a temp file renamed over the file (see tests/test_watch.py)."""
    text = file.read_text(encoding="utf-8")
    assert old in text, old
    tmp = file.parent / f".{file.name}.swp"
    tmp.write_text(text.replace(old, new), encoding="utf-8")
    tmp.replace(file)


def test_watch_rebuilds_on_edits_to_series_toml_and_to_any_episode(series: Path) -> None:
    from test_watch import statuses, wait_outcomes

    from fanren.watch import WatchSession

    session = WatchSession(series, debounce=0.05)
    session.start()
    try:
        assert statuses(wait_outcomes(session, 1)[0], "ran") == set()
        assert session.board.shown == "ep1/"
        save(series / "series.toml", "an old swordswoman with white hair", "an old swordswoman with grey hair")
        second = wait_outcomes(session, 2)[1]
        assert second.trigger == ("series.toml",)
        assert statuses(second, "ran") == {"character:lin@old", "ep2/keyframe:b1", "ep2/clip:b1",
                                           "ep2/shot:b1", "ep2/episode", "ep2/storyboard"}
        save(series / "ep10" / "drama.toml", "云海无边。", "云海茫茫。")
        third = wait_outcomes(session, 3)[2]
        assert third.trigger == ("ep10/drama.toml",)
        assert statuses(third, "ran") == {"ep10/line:c1:0", "ep10/shot:c1", "ep10/subtitles", "ep10/episode",
                                          "ep10/storyboard"}
    finally:
        session.stop()


def test_watch_of_an_episode_folder_shows_that_episode(series: Path) -> None:
    from test_watch import wait_outcomes

    from fanren.watch import WatchSession

    session = WatchSession(series / "ep2", debounce=0.05)
    session.start()
    try:
        wait_outcomes(session, 1)
        assert session.root == series
        assert session.board.shown == "ep2/"
        assert [card.shot for card in session.board.cards] == ["b1", "b2"]
        # the series' sheets and the episode's own nodes, by their ids within the episode
        assert set(session.board.nodes) == {"character:lin", "character:lin@old", "character:elder",
                                            "keyframe:b1", "clip:b1",
                                            "line:b1:0", "shot:b1", "keyframe:b2", "clip:b2", "line:b2:0",
                                            "shot:b2", "subtitles", "episode", "storyboard"}
        page = session.board.snapshot()
        digest = (series / "out" / "draft" / "ep2" / "episode.mp4").resolve()
        assert page["episode"]["url"] == f"/out/draft/ep2/episode.mp4?v={page['episode']['digest'][:16]}"
        assert page["episode"]["digest"] == digest_file(digest)
    finally:
        session.stop()


def test_watch_of_a_series_keeps_every_episodes_exports_current(series: Path) -> None:
    from test_watch import statuses, wait_outcomes

    from fanren.watch import WatchSession

    out = series / "out" / "draft"
    session = WatchSession(series, debounce=0.05)
    session.start()
    try:
        wait_outcomes(session, 1)
        save(series / "series.toml", "[profiles.draft]", '[export]\nformats = ["otio"]\n\n[profiles.draft]')
        second = wait_outcomes(session, 2)[1]
        shots = {"ep1": ["a1", "a2"], "ep2": ["b1", "b2"], "ep10": ["c1"]}
        assert statuses(second, "ran") == {f"{e}/picture:{s}" for e, ids in shots.items() for s in ids} | {
            f"{e}/export:otio" for e in shots}
        assert {e for e in shots if (out / e / "episode.otio").is_file()} == set(shots)
        before = (out / "ep1" / "episode.otio").read_bytes()
        save(series / "ep10" / "drama.toml", "云海无边。", "云海茫茫。")
        third = wait_outcomes(session, 3)[2]
        assert statuses(third, "ran") == {"ep10/line:c1:0", "ep10/shot:c1", "ep10/subtitles", "ep10/episode",
                                          "ep10/storyboard", "ep10/picture:c1", "ep10/export:otio"}
        assert (out / "ep1" / "episode.otio").read_bytes() == before
    finally:
        session.stop()


def test_the_series_example_in_smoke_loads_each_model_once_for_every_episode(tmp_path: Path) -> None:
    """The real flux and cogvideox engine code (tiny random pipelines): the four sheets and six
    keyframes of three episodes on one image model, the six clips on one video model."""
    from fanren.build import build
    from fanren.run import EnginePool

    root = tmp_path / "series-xianxia"
    shutil.copytree(Path(__file__).resolve().parent.parent / "examples" / "series-xianxia", root)
    drama = load_drama(root)
    engines = resolve_engines(drama, "smoke")
    result = build(root, profile="smoke", pool=EnginePool(engines.by_family()), project=drama, engines=engines)
    assert result.count("ran") == len(result.results) == 37
    assert engines.image.loads == 1 and engines.video.loads == 1
    for eid in ("ep01", "ep02", "ep03"):
        assert (root / "out" / "smoke" / eid / "episode.mp4").is_file()
    assert [e["stale"] for e in json.loads((root / "out" / "smoke" / "season.json").read_text())["episodes"]] \
        == [[], [], []]


def test_cache_push_of_a_series_uploads_what_its_one_drama_lock_names(series: Path, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    remote.mkdir()
    keys = {entry["key"] for entry in tomllib.loads((series / "drama.lock").read_text(encoding="utf-8"))["draft"].values()}
    result = fanren("cache", "push", series / "ep2", env={"FANREN_REMOTE_CACHE": remote.as_uri()})
    assert result.code == 0, result.stderr
    assert result.stdout.startswith(f"pushed {len(keys)} of {len(keys)} results to {remote.as_uri()}")


def test_episodes_of_a_single_drama_is_a_usage_error(tmp_path: Path) -> None:
    from conftest import write_drama

    drama = write_drama(tmp_path / "drama")
    result = fanren("build", drama, "--episodes", "2")
    assert result.code == 2
    assert result.stderr == f"error: --episodes: {drama} is a single drama, not a series (no series.toml)\n"
    assert not (drama / "out").exists()


def test_bad_input_in_a_built_series_loses_nothing(series: Path) -> None:
    from test_errors import snapshot

    before = snapshot(series), (series / "drama.lock").read_bytes()
    edit(series / "series.toml", 'fps = 12', 'fps = 12\naspect = "4:3"')
    result = fanren("build", series)
    assert result.code == 2
    assert result.stderr == (f"error: {series}/series.toml: drama.aspect: expected one of '16:9', '9:16' or "
                             "'1:1', got '4:3'\n")
    assert (snapshot(series), (series / "drama.lock").read_bytes()) == before


# ── exports and the consistency check in a series ───────────────────────────


def test_every_episode_gets_its_exports_and_the_season_one_consistency_verdict(tmp_path: Path) -> None:
    import opentimelineio as otio

    extra = ('\n[export]\nformats = ["otio"]\n\n[check.consistency]\n'
             'model = "fanren-tiny:dinov2"\ndevice = "cpu"\nthreshold = -1.0\n')
    root = write_series(tmp_path / "s", SERIES + extra)
    result = fanren("build", root)
    assert result.code == 0, result.stderr
    shots = {"ep1": ["a1", "a2"], "ep2": ["b1", "b2"], "ep10": ["c1"]}
    for episode, ids in shots.items():
        timeline = otio.adapters.read_from_file(str(root / "out" / "draft" / episode / "episode.otio"))
        assert [clip.name for clip in timeline.video_tracks()[0].find_clips()] == ids
        for clip in timeline.video_tracks()[0].find_clips():  # media beside the episode's timeline
            assert (root / "out" / "draft" / episode / clip.media_reference.target_url).is_file()
        verdict = json.loads((root / "out" / "draft" / episode / "report.json").read_text())["consistency"]
        cast = {"ep1": {"lin", "elder"}, "ep2": {"lin", "elder"}, "ep10": {"lin"}}[episode]
        assert set(verdict["characters"]) == {f"{episode}/{cid}" for cid in cast}
    # an episode's exports and checks name their inputs within the episode: keyed as if built alone
    assert fanren("build", root).code == 0
    assert ran(root) == set()


def test_an_episode_may_not_set_its_own_check(tmp_path: Path) -> None:
    episodes = dict(EPISODES, ep1=EPISODES["ep1"] + '\n[check.consistency]\nmodel = "fanren-tiny:dinov2"\n')
    assert problem(write_series(tmp_path / "s", episodes=episodes)) == (
        f"{tmp_path / 's' / 'ep1' / 'drama.toml'}: check: expected no [check] in an episode, got a [check] "
        "table ([check] is set for the whole series in series.toml)")


# ── fanren export and fanren check of a series ─────────────────────────────

CHECK = '\n[check.consistency]\nmodel = "fanren-tiny:dinov2"\ndevice = "cpu"\nthreshold = -1.0\n'
NO_FORMATS = "no [export] formats; pass --format (one or more of otio, fcpxml, jianying, comma-separated)"


def written(result) -> list[Path]:  # type: ignore[no-untyped-def]
    assert result.code == 0, result.stderr
    return [Path(line) for line in result.stdout.splitlines()]


def test_export_of_a_series_writes_each_episodes_timelines(series: Path) -> None:
    import opentimelineio as otio

    out = series / "out" / "draft"
    assert written(fanren("export", series, "--format", "otio", "-q")) == [
        out / "ep1" / "episode.otio", out / "ep2" / "episode.otio", out / "ep10" / "episode.otio"]
    shots = {"ep1": ["a1", "a2"], "ep2": ["b1", "b2"], "ep10": ["c1"]}
    assert ran(series) == {f"{e}/picture:{s}" for e, ids in shots.items() for s in ids} | {
        f"{e}/export:otio" for e in shots}
    for episode, ids in shots.items():
        timeline = otio.adapters.read_from_file(str(out / episode / "episode.otio"))
        assert [clip.name for clip in timeline.video_tracks()[0].find_clips()] == ids
        media = sorted(p.name for p in (out / episode / "media" / "shots").iterdir())
        assert media == [f"{s}.mp4" for s in ids]
    # an episode folder: that episode, as part of its series
    ep2 = fanren("export", series / "ep2", "--format", "fcpxml", "-q")
    assert written(ep2) == [out / "ep2" / "episode.xml"]
    assert ran(series) == {"ep2/export:fcpxml"}
    assert written(fanren("export", series, "--format", "otio", "--episodes", "3", "-q")) == [
        out / "ep10" / "episode.otio"]
    assert ran(series) == set()


def test_export_of_a_series_without_formats_names_series_toml(series: Path) -> None:
    for folder in (series, series / "ep1"):
        result = fanren("export", folder)
        assert (result.code, result.stderr) == (2, f"error: {series / 'series.toml'}: {NO_FORMATS}\n")
    assert (series / "out" / "draft" / "ep1" / "episode.mp4").is_file()  # nothing rendered is lost
    edit(series / "series.toml", "[profiles.draft]", '[export]\nformats = ["otio"]\n\n[profiles.draft]')
    out = series / "out" / "draft"
    assert written(fanren("export", series / "ep1", "-q")) == [out / "ep1" / "episode.otio"]
    assert not (out / "ep2" / "episode.otio").exists()
    result = fanren("export", series, "--episodes", "ep3")
    assert (result.code, result.stderr) == (
        2, "error: --episodes 'ep3': no episode 'ep3' (did you mean 'ep2'?)\n")


def test_check_of_a_series_without_check_names_series_toml(series: Path) -> None:
    result = fanren("check", series / "ep2")
    assert (result.code, result.stderr) == (2, (
        f"error: {series / 'series.toml'} sets no [check] consistency (see docs/consistency.md), so there is "
        "nothing to check\n"))


def test_check_of_a_series_gives_the_seasons_verdict_or_one_episodes(tmp_path: Path) -> None:
    root = write_series(tmp_path / "s", SERIES + CHECK)
    result = fanren("check", root / "ep10")
    assert (result.code, result.stderr) == (2, (
        "error: not scored yet for profile 'draft': ep10/consistency:lin; run `fanren build --profile draft` "
        "first\n"))
    assert fanren("build", root).code == 0

    def verdict(*args: str | Path) -> dict:
        result = fanren("check", *args, "--json")
        assert result.code == 0, result.stderr
        return json.loads(result.stdout)

    season = verdict(root)
    assert list(season["characters"]) == ["ep1/lin", "ep1/elder", "ep2/lin", "ep2/elder", "ep10/lin"]
    assert season == json.loads((root / "out" / "draft" / "report.json").read_text())["consistency"]
    ep2 = verdict(root / "ep2")
    assert ep2 == json.loads((root / "out" / "draft" / "ep2" / "report.json").read_text())["consistency"]
    assert list(ep2["characters"]) == ["ep2/lin", "ep2/elder"]
    assert list(verdict(root, "--episodes", "1,3")["characters"]) == ["ep1/lin", "ep1/elder", "ep10/lin"]
    text = fanren("check", root / "ep10")
    assert text.code == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0] == "fanren-tiny:dinov2, threshold -1, outliers at z ≤ -2"
    assert len(lines) == 2
    assert lines[1].startswith("  林青 (ep10/lin): 1 shots, similarity to the sheet mean ")
    # the thresholds series.toml sets now, over the cached scores: every shot under 1.0 fails
    edit(root / "series.toml", "threshold = -1.0", "threshold = 1.0")
    strict = fanren("check", root)
    below = sum(shot["similarity"] < 1.0 for c in season["characters"].values() for shot in c["shots"])
    assert (strict.code, strict.stderr.splitlines()[0]) == (1, (
        f"error: {below} shot(s) fell below the consistency threshold 1 ([check] consistency in series.toml; "
        "scores in out/<profile>/report.json)"))
