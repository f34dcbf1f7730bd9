"""The offline `rules` split engine on chapters written for these tests (tests/data/split/)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from fanren.project import NARRATOR, Project, load_project
from fanren.split import SplitSettings, split_chapter
from fanren.split.outline import is_heading, outline, segments_of

DATA = Path(__file__).parent / "data" / "split"
QINGSHI = DATA / "qingshi.txt"   # Chinese: a heading, two scenes, “” and 「」 dialogue, a 『』 title
LANTERN = DATA / "lantern.txt"   # English: a heading, a *** scene break, "" dialogue


def shots(project: Project) -> list[tuple[str, str, list[str], str, list[tuple[str, str]]]]:
    return [(scene.id, shot.id, shot.characters, shot.narration, [(line.who, line.text) for line in shot.lines])
            for scene, shot in project.shots()]


def spoken(project: Project) -> str:
    return "".join(shot.narration + "".join(line.text for line in shot.lines) for _, shot in project.shots())


def bare(text: str) -> str:
    """The text without whitespace and quotation marks, the way the guarantee compares it."""
    return re.sub(r"[\s\"'“”‘’「」『』]", "", text)


def split(chapter: Path, folder: Path, **settings: object) -> Project:
    split_chapter(chapter, folder, SplitSettings(**settings))  # type: ignore[arg-type]
    return load_project(folder)


def test_chinese_chapter_becomes_scenes_shots_and_lines(tmp_path: Path) -> None:
    project = split(QINGSHI, tmp_path / "drama", characters="林远,mother=林母,石伯")
    assert project.drama.title == "第一章 青石村"
    assert project.drama.language == "zh"
    assert [(cid, c.name) for cid, c in project.characters.items()] == [
        ("linyuan", "林远"), ("mother", "林母"), ("shibo", "石伯")]
    assert [len(scene.shots) for scene in project.scenes] == [7, 4]
    assert project.scenes[0].setting == "青石村坐落在无名山的脚下，村口有一棵老槐树，树下是一口早已干涸的古井"
    assert project.scenes[1].setting == "灌木后面是一片从没见过的空地，空地中央坐着一个白发老人"
    got = shots(project)
    assert got[0][2:] == ([], "第一章 青石村", [])  # the heading is its own shot, read aloud
    # “…” before its tag: a line of the character the tag names, then the narrator reads the tag;
    # “…” after a tag: the next line; two short paragraphs of dialogue share one shot
    assert got[3][2:] == (["mother", "linyuan"], "", [
        ("mother", "远儿，早些回来。"),
        (NARRATOR, "林母站在门口，手里还攥着一块没缝完的布。林远回头笑了笑："),
        ("linyuan", "娘，我知道了。今天一定砍够两捆柴。")])
    # 「…」 works the same; a speaker the cast does not name ("老人") is the narrator's
    assert got[8][2:] == (["linyuan"], "小娃娃，你不怕么？老人头也不抬地问道。林远咽了口唾沫：",
                          [("linyuan", "怕。可是我娘说，怕也要看清楚再跑。")])
    assert got[10][2:] == (["shibo"], "", [("shibo", "明天这个时辰，再来。"), (NARRATOR, "石伯说完，身影便淡进了晨雾里。")])
    # 『…』 inside narration is a title, not speech
    assert got[9][3] == "老人终于抬起头，眼里闪过一丝笑意。石伯后来常说，就是这一句话，让他决定把那本『青木诀』交给这个孩子。"
    shot = project.scenes[0].shots[2]
    assert (shot.action, shot.camera) == ("天刚蒙蒙亮，林远就背着柴刀出了门", "medium shot")
    shot = project.scenes[0].shots[1]
    assert (shot.action, shot.camera) == ("青石村坐落在无名山的脚下，村口有一棵老槐树", "wide shot")
    assert bare(spoken(project)) == bare(QINGSHI.read_text(encoding="utf-8"))


def test_characters_are_found_around_quotes_when_not_given(tmp_path: Path) -> None:
    project = split(QINGSHI, tmp_path / "drama")
    # ids are the names in pinyin: they appear in node ids (character:linyuan), so they are ASCII
    assert [(cid, c.name) for cid, c in project.characters.items()] == [("linyuan", "林远"), ("linmu", "林母"),
                                                                          ("shibo", "石伯")]
    given = split(QINGSHI, tmp_path / "given", characters="lin=林远,林母,石伯")
    assert given.characters["lin"].name == "林远"
    assert [s.id for _, s in given.shots()] == [s.id for _, s in project.shots()]  # ids come from text only


def test_english_chapter(tmp_path: Path) -> None:
    project = split(LANTERN, tmp_path / "drama")
    assert project.drama.language == "en"
    assert project.drama.title == "Chapter One: The Lantern Maker"
    assert [(cid, c.name) for cid, c in project.characters.items()] == [("mara", "Mara"), ("old-chen", "Old Chen")]
    assert [scene.id for scene in project.scenes] == ["town-of-greywater-368f51b3", "night-fell-over-6f7dba28"]
    got = shots(project)
    assert [s[1] for s in got] == ["chapter-one-ee82132d", "town-of-greywater-e6762426", "mara-lin-kept-d385e116",
                                   "youre-late-again-685a1b92", "old-chen-shook-5484fcf5", "then-sit-down-a410daa8",
                                   "night-fell-over-ec7d7953", "mara-was-already-09dd39de"]
    assert got[3][3:] == ("", [("mara", "You're late again,"), (NARRATOR, "Mara said, without looking up from her bench.")])
    # a beat that names one person gives the paragraph's quote to that person
    assert got[4][3:] == ("Old Chen shook the rain from his hat.",
                          [("old-chen", "The bridge is out. I walked the long way round.")])
    # no name near the quotes: the narrator reads them
    assert got[5][3:] == ("Then sit down and dry off. She pushed a stool towards the stove. The kettle is still warm.", [])
    assert got[6][4] == [("old-chen", "Did you see that?"), (NARRATOR, "Old Chen asked.")]
    source = LANTERN.read_text(encoding="utf-8").replace("* * *", "")
    assert bare(spoken(project)) == bare(source)


def test_no_shot_is_longer_than_the_limit(tmp_path: Path) -> None:
    project = split(QINGSHI, tmp_path / "drama", max_shot_chars=12)
    texts = [shot.narration + "".join(line.text for line in shot.lines) for _, shot in project.shots()]
    sizes = [sum(c.isalnum() for c in text) for text in texts]  # punctuation does not count
    assert max(sizes) <= 12
    assert len(sizes) == 39
    assert bare(spoken(project)) == bare(QINGSHI.read_text(encoding="utf-8"))


def test_same_chapter_gives_the_same_bytes_in_any_process(tmp_path: Path) -> None:
    first = tmp_path / "one" / "drama"
    split(QINGSHI, first)
    code = ("import sys; from pathlib import Path; from fanren.split import SplitSettings, split_chapter; "
            "split_chapter(Path(sys.argv[1]), Path(sys.argv[2]), SplitSettings())")
    for seed in ("1", "2"):
        folder = tmp_path / seed / "drama"
        subprocess.run([sys.executable, "-c", code, str(QINGSHI), str(folder)], check=True,
                       env={**os.environ, "PYTHONHASHSEED": seed})
        assert (folder / "drama.toml").read_bytes() == (first / "drama.toml").read_bytes()


def test_gb18030_chapter_gives_the_same_drama_as_utf8(tmp_path: Path) -> None:
    text = QINGSHI.read_text(encoding="utf-8")
    (tmp_path / "gbk").mkdir()
    encoded = tmp_path / "gbk" / QINGSHI.name
    encoded.write_bytes(text.encode("gb18030"))
    with pytest.raises(UnicodeDecodeError):
        encoded.read_bytes().decode("utf-8")
    split(encoded, tmp_path / "from-gbk")
    split(QINGSHI, tmp_path / "from-utf8")
    assert (tmp_path / "from-gbk" / "drama.toml").read_bytes() == \
        (tmp_path / "from-utf8" / "drama.toml").read_bytes()


def edited(tmp_path: Path, old: str, new: str) -> Path:
    text = QINGSHI.read_text(encoding="utf-8")
    assert text.count(old) == 1, old
    chapter = tmp_path / "edited" / QINGSHI.name
    chapter.parent.mkdir()
    chapter.write_text(text.replace(old, new), encoding="utf-8")
    return chapter


def test_resplitting_an_edited_chapter_keeps_untouched_shot_ids(tmp_path: Path) -> None:
    before = split(QINGSHI, tmp_path / "before")
    chapter = edited(tmp_path, "他握紧柴刀，慢慢拨开面前的灌木。", "他握紧柴刀，小心翼翼地拨开面前的灌木。")
    after = split(chapter, tmp_path / "after")
    old = [(s.id, s.narration, s.lines) for _, s in before.shots()]
    new = [(s.id, s.narration, s.lines) for _, s in after.shots()]
    changed = [k for k, (a, b) in enumerate(zip(old, new)) if a != b]
    assert len(old) == len(new) and changed == [6]
    assert new[6][1] == "他握紧柴刀，小心翼翼地拨开面前的灌木。"
    assert [s.id for s in before.scenes] == [s.id for s in after.scenes]


def test_inserting_a_paragraph_adds_shots_and_moves_no_other_id(tmp_path: Path) -> None:
    before = split(QINGSHI, tmp_path / "before")
    added = "　　林远在灌木前站了很久，心里想着母亲叠好的那块布，想着家里快要见底的米缸。\n"
    chapter = edited(tmp_path, "　　山路又陡又滑", added + "　　山路又陡又滑")
    after = split(chapter, tmp_path / "after")
    old_ids = [s.id for _, s in before.shots()]
    new_ids = [s.id for _, s in after.shots()]
    inserted = [i for i in new_ids if i not in old_ids]
    assert len(inserted) == 1
    assert [i for i in new_ids if i in old_ids] == old_ids
    assert after.scenes[0].shots[5].narration == added.strip()


def test_scene_breaks_headings_and_quoted_terms() -> None:
    assert is_heading("第一章 青石村") and is_heading("第十二章：夜") and is_heading("楔子")
    assert is_heading("Chapter 3: The Well") and is_heading("CHAPTER IV")
    assert not is_heading("第三节课下课后，他走了。") and not is_heading("Part of me wanted to run.")
    assert segments_of("他们叫它“鬼井”，谁也不敢靠近。")[0].speech is False
    assert [(s.text, s.speech) for s in segments_of("“你来了，”林母说，“快坐下。”")] == [
        ("你来了，", True), ("林母说，", False), ("快坐下。", True)]
    assert [(s.text, s.speech) for s in segments_of("她只说了一个字：“走”。")] == [("她只说了一个字：", False),
                                                                                 ("走。", True)]
    # a silent “……” is not a line of its own: it stays with the text around it
    assert [(s.text, s.speech) for s in segments_of("“……”林远没有说话。")] == [("……林远没有说话。", False)]
    assert [(s.text, s.speech) for s in segments_of("林远看着他：“……”")] == [("林远看着他：……", False)]
    # blank lines between every paragraph are not scene breaks; two blank lines or *** are
    spaced = "甲走了。\n\n乙来了。\n\n丙笑了。\n\n\n丁睡了。\n\n***\n\n戊醒了。\n"
    assert [[p.text for p in scene.paragraphs] for scene in outline(spaced, "zh")] == [
        ["甲走了。", "乙来了。", "丙笑了。"], ["丁睡了。"], ["戊醒了。"]]
    # blocks of several paragraphs: each blank line is a scene break
    blocked = "甲走了。\n乙来了。\n\n丙笑了。\n丁睡了。\n"
    assert [[p.text for p in scene.paragraphs] for scene in outline(blocked, "zh")] == [
        ["甲走了。", "乙来了。"], ["丙笑了。", "丁睡了。"]]


def test_hard_wrapped_english_is_joined_into_paragraphs() -> None:
    wrapped = (
        "The town of Greywater sat at the bottom of a narrow valley, where the\n"
        "fog arrived every evening like a guest who never knocked. Nobody minded\n"
        "it much.\n"
        "\n"
        "Mara Lin kept the last lantern shop on Bell Street. She was seventeen,\n"
        "and she could mend anything that held a flame, or so the neighbours said.\n")
    scenes = outline(wrapped, "en")
    assert [p.text for scene in scenes for p in scene.paragraphs] == [
        ("The town of Greywater sat at the bottom of a narrow valley, where the fog arrived every evening "
         "like a guest who never knocked. Nobody minded it much."),
        ("Mara Lin kept the last lantern shop on Bell Street. She was seventeen, and she could mend anything "
         "that held a flame, or so the neighbours said.")]
