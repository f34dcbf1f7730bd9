"""End to end: split a chapter, build it, edit the chapter, split again, and the build redoes only
the shot whose text changed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("fanren.compile")

from fanren.project import Project, load_project

CHAPTER = Path(__file__).parent / "data" / "split" / "gujing.txt"
# Appended after every split so the draft clips are one second long: the same both times, so it
# changes no key between the two builds.
SHORT_CLIPS = '\n[profiles.draft]\nvideo = { engine = "kenburns", seconds = 1.0 }\n'


def fanren(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fanren", *map(str, args)], capture_output=True, text=True,
                          timeout=600, check=False)


def split_and_build(chapter: Path, drama: Path, *options: str) -> dict[str, str]:
    split = fanren("split", chapter, "-o", drama, *options)
    assert split.returncode == 0, split.stderr
    with (drama / "drama.toml").open("a", encoding="utf-8") as file:
        file.write(SHORT_CLIPS)
    build = fanren("build", drama)
    assert build.returncode == 0, build.stderr
    report = json.loads((drama / "out" / "draft" / "report.json").read_text(encoding="utf-8"))
    return {node["id"]: node["status"] for node in report["nodes"]}


def nodes_of_shot(project: Project, shot_id: str) -> set[str]:
    [shot] = [shot for _, shot in project.shots() if shot.id == shot_id]
    spoken = ([shot.narration] if shot.narration else []) + [line.text for line in shot.lines]
    return {f"keyframe:{shot_id}", f"clip:{shot_id}", f"shot:{shot_id}"} | {
        f"line:{shot_id}:{n}" for n in range(len(spoken))}


@pytest.mark.slow
def test_resplit_of_an_edited_chapter_rebuilds_only_the_changed_shot(tmp_path: Path) -> None:
    drama = tmp_path / "drama"
    first = split_and_build(CHAPTER, drama)
    assert set(first.values()) == {"ran"}
    before = load_project(drama)

    edited = tmp_path / "edited" / CHAPTER.name
    edited.parent.mkdir()
    text = CHAPTER.read_text(encoding="utf-8")
    assert text.count("灯光照下去") == 1
    edited.write_text(text.replace("灯光照下去", "灯光照进去"), encoding="utf-8")
    second = split_and_build(edited, drama, "--force")
    after = load_project(drama)

    old_ids = [shot.id for _, shot in before.shots()]
    new_ids = [shot.id for _, shot in after.shots()]
    [changed] = [i for i in new_ids if i not in old_ids]
    assert [i for i in new_ids if i != changed] == [i for i in old_ids if i in new_ids]
    ran = {node for node, status in second.items() if status == "ran"}
    assert ran == nodes_of_shot(after, changed) | {"subtitles", "episode", "storyboard"}
