"""drama.toml → graph: node ids, edges, seeds, prompts; and heavy imports staying lazy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import SMALL_DRAMA, fanren, write_drama

from fanren.compile import PromptMemo, compile_project, derive_seed, resolve_engines
from fanren.project import load_project


def graph_of(folder: Path, text: str = SMALL_DRAMA):  # type: ignore[no-untyped-def]
    project = load_project(write_drama(folder, text))
    return compile_project(project, resolve_engines(project, "draft"))


def test_node_ids_and_edges(tmp_path: Path) -> None:
    g = graph_of(tmp_path)
    assert list(g.nodes)[:2] == ["character:lin", "character:elder"]
    assert g["keyframe:s2"].inputs == ("character:lin", "character:elder")
    assert g["shot:s2"].inputs == ("clip:s2", "line:s2:0", "line:s2:1")
    assert g["line:s2:0"].params["speaker"] == "narrator"
    assert g["line:s2:1"].params["speaker"] == "elder"
    assert g["subtitles"].inputs == ("shot:s1", "shot:s2", "shot:s3")
    assert g["episode"].inputs == ("shot:s1", "shot:s2", "shot:s3", "subtitles")
    # the narrator's voice has no espeak name: the engine falls back to the language default
    assert g["line:s1:0"].params["voice"] == {"speed": 1.3}


def test_seeds_come_from_ids_not_positions(tmp_path: Path) -> None:
    g = graph_of(tmp_path / "a")
    reordered = SMALL_DRAMA.replace('id = "s1"', 'id = "s0"\naction = "x"\n\n[[scenes.shots]]\nid = "s1"', 1)
    h = graph_of(tmp_path / "b", reordered)
    for shot in ("s1", "s2", "s3"):
        assert g[f"keyframe:{shot}"].params == h[f"keyframe:{shot}"].params
    assert g["keyframe:s1"].params["seed"] == derive_seed(7, "shot:s1")
    assert derive_seed(7, "shot:s1") != derive_seed(7, "shot:s2")


def test_explicit_seed_wins(tmp_path: Path) -> None:
    g = graph_of(tmp_path, SMALL_DRAMA.replace('id = "s3"', 'id = "s3"\nseed = 99'))
    assert g["keyframe:s3"].params["seed"] == 99 and g["clip:s3"].params["seed"] == 99


def test_prompt_comes_from_the_drama_template_override(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    (folder / "templates").mkdir(parents=True)
    (folder / "templates" / "keyframe.j2").write_text("{{ shot.action }} | {{ style }}", encoding="utf-8")
    g = graph_of(folder)
    assert g["keyframe:s1"].params["prompt"] == "Lin Qing climbs the stone steps | ink wash painting"
    # shots keep the packaged motion template
    assert g["clip:s1"].params["prompt"].startswith("Lin Qing climbs the stone steps, camera: wide shot.")


def test_status_does_not_import_torch_or_httpx(tmp_path: Path) -> None:
    folder = write_drama(tmp_path / "d")
    code = ("import sys\nfrom fanren.cli import main\nsys.argv = ['fanren', 'status', sys.argv[1]]\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            # the HTTP engines' modules load for their identity; httpx waits for a request
            "import fanren.engines.voice.cosyvoice, fanren.engines.voice.openai, fanren.split.command\n"
            "print('HEAVY', sorted(m for m in ('torch', 'diffusers', 'transformers', 'rich', 'httpx')\n"
            "                    if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True)
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr


def test_each_scene_gives_the_episode_its_music_and_shots(tmp_path: Path) -> None:
    (tmp_path / "music").mkdir(parents=True)
    for name in ("theme.ogg", "hall.ogg"):
        (tmp_path / "music" / name).write_bytes(b"a tune")
    text = SMALL_DRAMA + '\n[music]\nfile = "music/theme.ogg"\nvolume = 0.3\n'
    hall = text.replace('setting = "a candle-lit hall"', 'setting = "a candle-lit hall"\nmusic = { file = "music/hall.ogg" }')
    quiet = text.replace('setting = "a candle-lit hall"', 'setting = "a candle-lit hall"\nmusic = "none"')
    softer = text.replace('setting = "a candle-lit hall"', 'setting = "a candle-lit hall"\nmusic = { volume = 0.1 }')
    assert graph_of(tmp_path, SMALL_DRAMA)["episode"].params["music"] == []
    episode = graph_of(tmp_path, hall)["episode"]
    assert episode.params["music"] == [{"shots": ["s1", "s2"], "file": "music/theme.ogg", "volume": 0.3},
                                       {"shots": ["s3"], "file": "music/hall.ogg", "volume": 0.3}]
    assert episode.sources == ("music/hall.ogg", "music/theme.ogg")
    assert graph_of(tmp_path, quiet)["episode"].params["music"] == [
        {"shots": ["s1", "s2"], "file": "music/theme.ogg", "volume": 0.3}]
    assert graph_of(tmp_path, softer)["episode"].params["music"][1] == {
        "shots": ["s3"], "file": "music/theme.ogg", "volume": 0.1}


FINAL_ASPECTS = """
import json, sys
from pathlib import Path
from fanren.compile import compile_project, resolve_engines
from fanren.project import load_project
seen = {}
for folder in sys.argv[1:]:
    project = load_project(Path(folder))
    engines = resolve_engines(project, "final")
    graph = compile_project(project, engines)
    seen[project.drama.aspect] = [engines.image.name, engines.video.name, engines.voice.name,
                                  engines.video.identity()["model"], graph["keyframe:s1"].params["size"],
                                  graph["clip:s1"].params["size"], graph["clip:s1"].params["fps"],
                                  engines.image.loaded or engines.video.loaded]
seen["heavy imports"] = sorted(m for m in ("torch", "diffusers", "transformers") if m in sys.modules)
print(json.dumps(seen))
"""


def test_final_renders_every_aspect_natively_with_flux2_and_ltx2_without_loading_anything(tmp_path: Path) -> None:
    # CogVideoX-5b, the former final, refused 9:16 and rendered 8 fps: LTX-2 renders each aspect at 24 fps
    folders = [str(write_drama(tmp_path / aspect.replace(":", "x"),
                               SMALL_DRAMA.replace('aspect = "16:9"', f'aspect = "{aspect}"')))
               for aspect in ("16:9", "9:16", "1:1")]
    done = subprocess.run([sys.executable, "-c", FINAL_ASPECTS, *folders], capture_output=True, text=True,
                          timeout=120, check=True)
    engines = ["flux2", "ltx2", "cosyvoice", "Lightricks/LTX-2"]
    assert json.loads(done.stdout) == {
        "16:9": [*engines, [1280, 704], [1280, 704], 24, False],
        "9:16": [*engines, [704, 1280], [704, 1280], 24, False],
        "1:1": [*engines, [960, 960], [960, 960], 24, False],
        "heavy imports": [],
    }


COGVIDEOX_PROFILE = '\n[profiles.x]\nvideo = { engine = "cogvideox", model = "fanren-tiny:cogvideox" }\n'


def test_motion_comes_from_the_shot_else_the_drama_and_goes_only_to_the_shot(tmp_path: Path) -> None:
    def graph(folder: Path, text: str):  # type: ignore[no-untyped-def]
        project = load_project(write_drama(folder, text + COGVIDEOX_PROFILE))
        return compile_project(project, resolve_engines(project, "x"))

    g = graph(tmp_path / "a", SMALL_DRAMA)
    assert {g[f"shot:{s}"].params["motion"] for s in ("s1", "s2", "s3")} == {"interpolate"}  # the default
    text = SMALL_DRAMA.replace("seed = 7", 'seed = 7\nmotion = "duplicate"').replace(
        'id = "s3"', 'id = "s3"\nmotion = "interpolate"')
    h = graph(tmp_path / "b", text)
    assert [h[f"shot:{s}"].params["motion"] for s in ("s1", "s2", "s3")] == ["duplicate", "duplicate", "interpolate"]
    # the clips' key fields stay as they were: only the shots render again
    for s in ("s1", "s2", "s3"):
        assert (h[f"clip:{s}"].params, h[f"clip:{s}"].identity) == (g[f"clip:{s}"].params, g[f"clip:{s}"].identity)
    # Ken Burns clips (the draft) are never interpolated, whatever the drama says
    draft = graph_of(tmp_path / "c", SMALL_DRAMA.replace("seed = 7", 'seed = 7\nmotion = "interpolate"'))
    assert {draft[f"shot:{s}"].params["motion"] for s in ("s1", "s2", "s3")} == {"duplicate"}


def test_an_unknown_motion_is_bad_input(tmp_path: Path) -> None:
    folder = write_drama(tmp_path / "d", SMALL_DRAMA.replace("seed = 7", 'seed = 7\nmotion = "smooth"'))
    result = fanren("status", folder)
    assert result.code == 2
    assert result.stderr.strip() == (f"error: {folder / 'drama.toml'}: drama.motion: expected one of "
                                     f"'interpolate' or 'duplicate', got 'smooth'")
LOOKS = SMALL_DRAMA.replace('voice = "lin"\n', 'voice = "lin"\n\n[characters.lin.looks.wounded]\n'
                            'description = "a young swordswoman in a torn blue robe, her arm bandaged"\n', 1) \
    .replace('setting = "a candle-lit hall"\n', 'setting = "a candle-lit hall"\nlooks = { lin = "wounded" }\n', 1)


def test_a_look_is_a_sheet_of_its_own_and_a_shot_in_it_is_drawn_from_it(tmp_path: Path) -> None:
    text = LOOKS.replace('characters = ["elder"]\naction = "The elder nods"',
                         'characters = ["lin", "elder"]\naction = "The elder nods"', 1)
    text = text.replace('action = "The elder blocks her way"',
                        'action = "The elder blocks her way"\nlooks = { lin = "wounded" }', 1)
    graph = graph_of(tmp_path, text)
    sheet = graph["character:lin@wounded"]
    assert sheet.params["description"] == "a young swordswoman in a torn blue robe, her arm bandaged"
    assert sheet.params["look"] == "wounded"
    assert sheet.params["seed"] == derive_seed(7, "character:lin@wounded")
    assert graph["keyframe:s1"].inputs == ("character:lin",)                      # no look: the base sheet
    assert graph["keyframe:s2"].inputs == ("character:lin@wounded", "character:elder")  # the shot's pick
    assert graph["keyframe:s3"].inputs == ("character:lin@wounded", "character:elder")  # the scene's pick
    assert graph["keyframe:s3"].params["characters"][0] == {
        "id": "lin", "name": "林青", "description": "a young swordswoman in a torn blue robe, her arm bandaged",
        "look": "wounded"}
    assert "look" not in graph["character:lin"].params  # a drama without looks keys as before


def test_prompts_come_from_the_memo_until_a_template_changes(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    (folder / "templates").mkdir(parents=True)
    template = folder / "templates" / "keyframe.j2"
    template.write_text("{{ shot.action }} | {{ style }}", encoding="utf-8")
    project = load_project(write_drama(folder))
    engines = resolve_engines(project, "draft")
    first = PromptMemo()
    assert compile_project(project, engines, first).nodes == compile_project(project, engines).nodes
    assert len(first.used) == 8  # two sheets, a keyframe and a motion prompt for each of three shots

    def prompts(memo: PromptMemo) -> dict[str, str]:
        graph = compile_project(project, engines, memo)
        return {n.id: n.params["prompt"] for n in graph.topological() if "prompt" in n.params}

    # a prompt the memo holds is taken from it, not rendered
    marked = PromptMemo(known={key: f"memo: {prompt}" for key, prompt in first.used.items()})
    assert all(p.startswith("memo: ") for p in prompts(marked).values())
    assert len(prompts(marked)) == 8
    # editing a template misses every entry: each prompt is rendered again, as without a memo
    template.write_text("{{ shot.action }} || {{ style }}", encoding="utf-8")
    after = prompts(marked)
    assert after["keyframe:s1"] == "Lin Qing climbs the stone steps || ink wash painting"
    assert not any(p.startswith("memo: ") for p in after.values())
    # so does a template added in the drama's folder in front of a packaged one
    edited = PromptMemo()
    prompts(edited)
    marked = PromptMemo(known={key: f"memo: {prompt}" for key, prompt in edited.used.items()})
    (folder / "templates" / "motion.j2").write_text("moving: {{ shot.action }}", encoding="utf-8")
    assert prompts(marked)["clip:s1"] == "moving: Lin Qing climbs the stone steps"


def test_the_prompt_memo_is_kept_in_the_cache_and_spares_jinja2(tmp_path: Path) -> None:
    folder = write_drama(tmp_path / "d")
    code = ("import sys\nfrom fanren.cli import main\nsys.argv = ['fanren', 'status', sys.argv[1]]\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('JINJA2', 'jinja2' in sys.modules)")
    runs = [subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, check=False)
            for _ in range(2)]
    assert ["JINJA2 True" in runs[0].stdout, "JINJA2 False" in runs[1].stdout] == [True, True], \
        runs[1].stdout + runs[1].stderr
    assert runs[0].stdout.replace("True", "False") == runs[1].stdout
    assert [p.parent.name for p in (folder / ".fanren-cache" / "prompts").iterdir()] == ["prompts"]
