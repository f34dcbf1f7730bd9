"""`fanren split` of a whole novel: a series (series.toml + an episode folder per chapter), the
book's cast with aliases, the text kept over the whole book, ids stable under an edit, bounded memory."""

from __future__ import annotations

import io
import subprocess
import sys
import tomllib
import tracemalloc
from pathlib import Path

import pytest
from click.testing import CliRunner
from novels import chinese_novel
from test_split_llm import LIN, SHI, ChatServer, answer, endpoint, server, shot  # noqa: F401 (a fixture)

from fanren.project import Project
from fanren.series import load_series
from fanren.split.book import chapters_of, episodes_of
from fanren.split.cast import Mentions, Person, parse_characters, with_address_aliases
from fanren.split.chapter import SplitSettings, split_novel
from fanren.split.command import RichBookProgress, progress_display, split_command
from fanren.split.coverage import TextLost, check_no_text_lost, spoken_length
from fanren.split.writer import spoken_texts

DATA = Path(__file__).parent / "data" / "split"
QIXUAN = DATA / "qixuan.txt"        # a front line, then 3 chapters; 韩立 is also 韩师弟 and 二愣子
GREYWATER = DATA / "greywater.txt"  # 3 chapters in English
HANLI = "hanli=韩立|韩师弟|二愣子,韩母,墨大夫"
COMMAND = [sys.executable, "-c", "from fanren.split.command import split_command; split_command()"]


def run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*COMMAND, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120,
                          check=False)


def episodes(folder: Path) -> dict[str, Project]:
    """Every episode of the series in `folder`, loaded by the series loader (merged over series.toml
    and validated with the drama schema)."""
    series = tomllib.loads((folder / "series.toml").read_text(encoding="utf-8"))
    for eid in series["series"]["episodes"]:
        episode = tomllib.loads((folder / eid / "drama.toml").read_text(encoding="utf-8"))
        assert set(episode) == {"drama", "scenes"} and set(episode["drama"]) == {"title"}
    loaded = load_series(folder)
    assert list(loaded.episodes) == series["series"]["episodes"]
    return dict(loaded.episodes)


def spoken(projects: dict[str, Project]) -> list[str]:
    return [text for project in projects.values() for text in spoken_texts(project)]


def lines(project: Project) -> list[tuple[str, str]]:
    return [(line.who, line.text) for _, shot in project.shots() for line in shot.lines]


# ── a Chinese and an English book ────────────────────────────────────────────


def test_a_chinese_book_becomes_a_series_whose_episodes_speak_the_book(tmp_path: Path) -> None:
    result = run(QIXUAN, "-o", "qixuan", "--characters", HANLI, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "qixuan"
    assert result.stdout.splitlines() == [
        "wrote qixuan/series.toml: 3 episode(s), 10 shot(s), 3 character(s) (韩立, 韩母, 墨大夫)",
        "every sentence of the book is in a shot, in order",
        "next: fanren build qixuan",
    ]
    series = tomllib.loads((folder / "series.toml").read_text(encoding="utf-8"))
    assert series == {
        "drama": {"title": "qixuan", "language": "zh"},
        "series": {"episodes": ["ep-9a78bf92", "ep-60fc2c8f", "ep-ee30e5bf"]},
        "characters": {"hanli": {"name": "韩立", "description": "韩立", "aliases": ["韩师弟", "二愣子"]},
                       "hanmu": {"name": "韩母", "description": "韩母"},
                       "modafu": {"name": "墨大夫", "description": "墨大夫"}},
    }
    projects = episodes(folder)
    assert [p.drama.title for p in projects.values()] == ["第一章 山边小村", "第二章 七玄门", "第三章 炼骨崖"]
    check_no_text_lost(QIXUAN.read_text(encoding="utf-8"), spoken(projects))
    # the front line opens the first episode; the symbol line is a scene break of the second
    assert next(iter(projects["ep-9a78bf92"].shots()))[1].narration == "凡人修仙传（节选）"
    assert len(projects["ep-60fc2c8f"].scenes) == 2
    # 二愣子 and 韩师弟 are 韩立
    assert lines(projects["ep-9a78bf92"]) == [("hanmu", "二愣子，回家吃饭了！"), ("narrator", "韩母站在门口喊道。"),
                                              ("hanli", "来了！"), ("narrator", "他把柴捆好，扛在肩上往家走。")]
    assert ("hanli", "有劳师兄。") in lines(projects["ep-60fc2c8f"])
    assert sorted(p.name for p in folder.iterdir()) == [".gitignore", "ep-60fc2c8f", "ep-9a78bf92", "ep-ee30e5bf",
                                                       "series.toml"]


def test_an_english_book_finds_its_cast_across_chapters(tmp_path: Path) -> None:
    result = CliRunner().invoke(split_command, [str(GREYWATER), "-o", str(tmp_path / "g")])
    assert result.exit_code == 0, result.output
    projects = episodes(tmp_path / "g")
    assert list(projects) == ["chapter-one-ee82132d", "chapter-two-7c36403b", "chapter-three-1321b80d"]
    assert {cid: c.name for cid, c in next(iter(projects.values())).characters.items()} == {
        "mara": "Mara", "old-chen": "Old Chen"}
    check_no_text_lost(GREYWATER.read_text(encoding="utf-8"), spoken(projects))
    assert lines(projects["chapter-three-1321b80d"]) == [
        ("old-chen", "It was a good idea,"), ("narrator", "Old Chen said, when the first passengers stepped ashore.")]


def test_one_chapter_keeps_the_single_drama_output(tmp_path: Path) -> None:
    chapter = DATA / "qingshi.txt"
    written = split_novel(chapter, tmp_path / "one", SplitSettings(characters="linyuan=林远,林母,石伯"))
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == [".gitignore", "drama.toml"]
    assert written.path == tmp_path / "one" / "drama.toml"
    old = run(chapter, "-o", tmp_path / "cli", "--characters", "linyuan=林远,林母,石伯", cwd=tmp_path)
    assert (tmp_path / "one" / "drama.toml").read_bytes() == (tmp_path / "cli" / "drama.toml").read_bytes()
    assert old.stderr == ""  # no progress for one chapter


# ── chapters, episodes and their ids ─────────────────────────────────────────


def test_chapters_cover_the_book_and_a_volume_title_opens_the_next_chapter() -> None:
    text = "书名\n\n第一卷 少年\n\n第一章 村\n\n甲。\n\n第二章 门\n\n乙。\n"
    chapters = chapters_of(text)
    assert [(c.heading, text[c.start:c.end]) for c in chapters] == [
        ("第一卷 少年", "书名\n\n第一卷 少年\n\n第一章 村\n\n甲。\n\n"), ("第二章 门", "第二章 门\n\n乙。\n")]
    assert chapters_of("没有标题的一段。\n") == []


def test_episode_chars_groups_short_chapters_and_cuts_a_long_one_at_paragraph_ends() -> None:
    long_chapter = "第三章 长\n" + "".join(f"　　第{n}段写的是一件很长的事情，一直写到这里才完。\n" for n in range(30))
    text = "第一章 短\n甲乙丙。\n第二章 短\n丁戊己。\n" + long_chapter + "第四章 短\n庚。\n"
    chapters = chapters_of(text)
    found = episodes_of(text, chapters, episode_chars=200)
    by_id = episodes_of(text, chapters)
    assert [(e.id, e.title, e.chapters) for e in found] == [
        (by_id[0].id, "第一章 短", ("第一章 短", "第二章 短")),
        (by_id[2].id, "第三章 长", ("第三章 长",)),
        (by_id[2].id + "-part2", "第三章 长 (2)", ("第三章 长",)),
        (by_id[2].id + "-part3", "第三章 长 (3)", ("第三章 长",)),
        (by_id[2].id + "-part4", "第三章 长 (4)", ("第三章 长",)),
        (by_id[3].id, "第四章 短", ("第四章 短",)),
    ]
    assert "".join(text[e.start:e.end] for e in found) == text
    for part in found[1:5]:  # cut where a paragraph ends, never mid-sentence
        assert text[part.start:part.end].endswith("才完。\n")
    # 30 paragraphs of 22 letters: 660 in four parts of at most 200, each cut at the paragraph end
    # nearest its even share
    assert [spoken_length(text[e.start:e.end]) for e in found] == [14, 172, 152, 176, 154, 5]


@pytest.mark.parametrize(("gap", "scene_break"), [("", "* * *\n"), ("", "\n"), ("\n", "\n\n")])
def test_a_long_chapter_is_cut_at_a_scene_break_near_its_share(gap: str, scene_break: str) -> None:
    paragraphs = [f"　　第{n:02d}段写的是一件很长的事情，一直写到这里才完。\n" for n in range(20)]  # 22 letters each
    def book(body: str) -> str:
        return "第一章 长\n" + gap + body + "第二章 短\n" + gap + "庚。\n"

    text = book(gap.join(paragraphs[:8]) + scene_break + gap.join(paragraphs[8:]))
    first, *rest = episodes_of(text, chapters_of(text), episode_chars=300)
    # 444 letters (the heading's 4 too) in two parts: the even share ends after paragraph 10, the
    # scene break after paragraph 8 is within a quarter of 300 of it
    assert text[first.end:].startswith("　　第08段") and len(rest) == 2
    plain = book(gap.join(paragraphs))
    first, *_ = episodes_of(plain, chapters_of(plain), episode_chars=300)
    assert plain[first.end:].startswith("　　第10段")  # no scene break: the nearest paragraph end


def test_episode_chars_on_the_command_line(tmp_path: Path) -> None:
    result = run(QIXUAN, "-o", "s", "--episode-chars", "170", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    projects = episodes(tmp_path / "s")
    # chapters of 75, 115 and 46 letters (the front line counts with the first): the first two do
    # not fit together in 170, the last two do
    assert [(eid, p.drama.title) for eid, p in projects.items()] == [
        ("ep-9a78bf92", "第一章 山边小村"), ("ep-60fc2c8f", "第二章 七玄门")]
    check_no_text_lost(QIXUAN.read_text(encoding="utf-8"), spoken(projects))
    too_small = run(QIXUAN, "-o", "t", "--episode-chars", "50", cwd=tmp_path)
    assert too_small.returncode == 2
    assert "Invalid value for '--episode-chars': 50 is not in the range x>=100." in too_small.stderr


def test_editing_one_chapter_changes_no_other_episode(tmp_path: Path) -> None:
    book = tmp_path / "book.txt"
    text = chinese_novel(6, 1500, seed=3)
    book.write_text(text, encoding="utf-8")
    settings = SplitSettings(characters="韩立,墨大夫,厉飞雨,张铁,王门主")
    first = split_novel(book, tmp_path / "s", settings)
    before = {eid: (tmp_path / "s" / eid / "drama.toml").read_bytes() for eid in first.episodes}
    shots_before = {eid: [s.id for _, s in p.shots()] for eid, p in episodes(tmp_path / "s").items()}

    chapter_four = chapters_of(text)[3]
    paragraph = text.index("\n　　", chapter_four.start + 200) + 1  # a paragraph in the middle of chapter 4
    edited = text[:paragraph] + "　　韩立想了很久，终于下定了决心。\n" + text[paragraph:]
    book.write_text(edited, encoding="utf-8")
    second = split_novel(book, tmp_path / "s", settings, force=True)

    assert second.episodes == first.episodes
    changed = [eid for eid in first.episodes if (tmp_path / "s" / eid / "drama.toml").read_bytes() != before[eid]]
    assert changed == [first.episodes[3]]
    shots_after = [s.id for _, s in episodes(tmp_path / "s")[first.episodes[3]].shots()]
    new = [s for s in shots_after if s not in shots_before[first.episodes[3]]]
    gone = [s for s in shots_before[first.episodes[3]] if s not in shots_after]
    assert (second.kept, second.new, second.gone) == (first.shots - len(gone), len(new), len(gone))
    # the new paragraph is short: it joins the shot before it (the end of a long paragraph), which
    # gets a new id; every other shot of the book keeps its id
    assert (len(new), len(gone)) == (1, 1)
    [joined] = [shot for _, shot in episodes(tmp_path / "s")[first.episodes[3]].shots() if shot.id == new[0]]
    assert joined.narration == "韩立沿着山路慢慢走去，炼骨崖的石阶上落满了叶子。韩立想了很久，终于下定了决心。"
    assert (tmp_path / "s" / first.episodes[0] / "drama.toml.bak").read_bytes() == before[first.episodes[0]]


# ── the cast ─────────────────────────────────────────────────────────────────


def test_characters_option_takes_aliases() -> None:
    assert parse_characters(HANLI) == [Person("hanli", "韩立", ("韩师弟", "二愣子")), Person("hanmu", "韩母"),
                                       Person("modafu", "墨大夫")]
    assert parse_characters("韩立｜二愣子") == [Person("hanli", "韩立", ("二愣子",))]


SECT = ("第一章 入门\n\n　　厉飞雨走进院子，看见韩立正在劈柴。\n　　厉飞雨笑道：“你就是新来的？”\n"
        "　　韩立答道：“是，见过师兄。”\n\n第二章 练功\n\n　　“韩师弟，该去练功了。”厉飞雨说道。\n"
        "　　韩师弟点点头：“这就来。”\n　　张铁看着他们，说道：“厉师兄，等等我。”\n　　张铁跑了过去。\n")


def test_a_surname_and_a_sect_address_name_the_one_character_of_that_surname(tmp_path: Path) -> None:
    book = tmp_path / "sect.txt"
    book.write_text(SECT, encoding="utf-8")
    split_novel(book, tmp_path / "s", SplitSettings())
    projects = episodes(tmp_path / "s")
    assert {cid: (c.name, c.aliases) for cid, c in projects["ep-99758f2d"].characters.items()} == {
        "lifeiyu": ("厉飞雨", ["厉师兄"]), "hanli": ("韩立", ["韩师弟"]), "zhangtie": ("张铁", [])}
    # 韩师弟 stood where a speaker stands and recurs: without the rule it was a character of its own
    assert lines(projects["ep-99758f2d"])[1:3] == [("narrator", "厉飞雨说道。韩师弟点点头："), ("hanli", "这就来。")]


def test_an_address_of_a_shared_or_unknown_surname_stays_as_found() -> None:
    text = "韩立 韩云 韩师弟 韩师弟 厉师兄 王五"
    people = [Person("hanli", "韩立"), Person("hanyun", "韩云"), Person("hanshidi", "韩师弟"),
              Person("lishixiong", "厉师兄"), Person("wangwu", "王五")]
    assert with_address_aliases(people, Mentions(text)) == people  # two 韩; no 厉 but the address itself
    assert with_address_aliases([Person("wangwu", "王五")], Mentions("王师兄来了")) == [
        Person("wangwu", "王五", ("王师兄",))]
    assert with_address_aliases([Person("wangwu", "王五")], Mentions("王五来了")) == [Person("wangwu", "王五")]


@pytest.mark.parametrize(("spec", "message"), [
    ("hanli=韩立|二愣子,zhang=二愣子", "error: --characters: '二愣子' is listed twice\n"),
    ("hanli=韩立|韩立", "error: --characters: '韩立' is listed twice\n"),
    ("hanli=韩立||二愣子", ("error: --characters: 'hanli=韩立||二愣子' has an empty alias "
                         "(expected 'id=name|alias|alias')\n")),
    ("hanli=|二愣子", ("error: --characters: 'hanli=|二愣子' has no name "
                    "(expected 'name', 'id=name' or 'id=name|alias|alias')\n")),
])
def test_bad_aliases_exit_2(tmp_path: Path, spec: str, message: str) -> None:
    result = run(QIXUAN, "--characters", spec, cwd=tmp_path)
    assert (result.returncode, result.stderr) == (2, message)
    assert list(tmp_path.iterdir()) == []


# ── writing over an existing series ──────────────────────────────────────────


def test_an_existing_series_is_kept_unless_forced(tmp_path: Path) -> None:
    assert run(QIXUAN, "-o", "s", cwd=tmp_path).returncode == 0
    series = (tmp_path / "s" / "series.toml").read_bytes()
    refused = run(QIXUAN, "-o", "s", cwd=tmp_path)
    assert (refused.returncode, refused.stderr) == (2, ("error: s/series.toml already exists; pass --force to "
                                                       "replace the series (each replaced file is kept as .bak "
                                                       "beside it)\n"))
    forced = run(QIXUAN, "-o", "s", "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert "re-split: 10 shot(s) kept their ids, 0 new, 0 gone; each previous file is kept as .bak beside it" \
        in forced.stdout.splitlines()
    assert (tmp_path / "s" / "series.toml.bak").read_bytes() == series


def test_a_single_drama_folder_is_not_turned_into_a_series_unless_forced(tmp_path: Path) -> None:
    folder = tmp_path / "d"
    folder.mkdir()
    (folder / "drama.toml").write_text('[drama]\ntitle = "mine"\n', encoding="utf-8")
    refused = run(QIXUAN, "-o", folder, cwd=tmp_path)
    assert (refused.returncode, refused.stderr) == (
        2, (f"error: {folder}/drama.toml already exists: the folder holds a single drama, and the book has 3 "
           "episodes, which make a series; choose another -o, or pass --force to write the series there (the "
           "drama.toml is kept as drama.toml.bak)\n"))
    assert sorted(p.name for p in folder.iterdir()) == ["drama.toml"]
    assert run(QIXUAN, "-o", folder, "--force", cwd=tmp_path).returncode == 0
    assert (folder / "drama.toml.bak").read_text(encoding="utf-8") == '[drama]\ntitle = "mine"\n'
    assert not (folder / "drama.toml").exists()


def test_a_split_killed_midway_leaves_the_series_as_it_was(tmp_path: Path) -> None:
    book = tmp_path / "book.txt"
    text = chinese_novel(60, 1500, seed=5)
    book.write_text(text, encoding="utf-8")
    assert run(book, "-o", "s", cwd=tmp_path).returncode == 0
    before = {p: p.read_bytes() for p in (tmp_path / "s").rglob("*") if p.is_file()}
    book.write_text(text.replace("第1章", "第1章（修订）", 1), encoding="utf-8")  # every episode id stays but one

    split = subprocess.Popen([*COMMAND, book, "-o", "s", "--force"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert split.stderr is not None
        for line in split.stderr:  # the process ends by itself within a minute at worst
            if line.startswith("  episode 5/60 "):
                split.kill()
                break
    finally:
        split.kill()
        split.wait(timeout=30)
    assert split.returncode == -9  # killed, not finished
    after = {p: p.read_bytes() for p in (tmp_path / "s").rglob("*") if p.is_file() and ".fanren-split" not in p.parts}
    assert after == before
    assert len(list((tmp_path / "s" / ".fanren-split").iterdir())) >= 5  # the episodes it had staged
    again = run(book, "-o", "s", "--force", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert not (tmp_path / "s" / ".fanren-split").exists()  # what the killed one staged is gone


def test_progress_without_a_terminal_is_a_line_per_episode(tmp_path: Path) -> None:
    result = run(QIXUAN, "-o", "s", cwd=tmp_path)
    assert result.stderr.splitlines() == [
        "splitting 3 episode(s)",
        "  episode 1/3 ep-9a78bf92 第一章 山边小村: 4 shot(s)",
        "  episode 2/3 ep-60fc2c8f 第二章 七玄门: 4 shot(s)",
        "  episode 3/3 ep-ee30e5bf 第三章 炼骨崖: 2 shot(s)",
    ]


def test_progress_on_a_terminal_is_a_bar_of_episodes_done(tmp_path: Path) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    shown = progress_display(screen)
    assert isinstance(shown, RichBookProgress)
    written = split_novel(QIXUAN, tmp_path / "s", SplitSettings(), progress=shown)
    assert len(written.episodes) == 3
    drawings = [line for line in screen.getvalue().split("\r") if "splitting episodes" in line]
    assert "3/3" in drawings[-1] and "ep-ee30e5bf 第三章 炼骨崖" in drawings[-1]  # drawn as it stops
    assert screen.getvalue().endswith("\x1b[2K")  # and then cleared: the summary follows on a clean line


def test_episodes_no_longer_in_the_book_are_named_and_left_in_place(tmp_path: Path) -> None:
    book = tmp_path / "book.txt"
    text = QIXUAN.read_text(encoding="utf-8")
    book.write_text(text, encoding="utf-8")
    assert run(book, "-o", "s", cwd=tmp_path).returncode == 0
    book.write_text(text[:text.index("第三章")], encoding="utf-8")
    result = run(book, "-o", "s", "--force", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "no longer in the series (their folders are left as they were): ep-ee30e5bf" in result.stdout.splitlines()
    assert tomllib.loads((tmp_path / "s" / "series.toml").read_text(encoding="utf-8"))["series"] == {
        "episodes": ["ep-9a78bf92", "ep-60fc2c8f"]}
    assert (tmp_path / "s" / "ep-ee30e5bf" / "drama.toml").is_file()


# ── the whole-book check ─────────────────────────────────────────────────────


def test_the_whole_book_check_names_what_no_episode_speaks() -> None:
    from fanren.split.book import _BookCheck

    check = _BookCheck("第一章\n甲乙。\n第二章\n丙丁。\n")
    check.add(["第一章", "甲乙。"], "ep1")
    with pytest.raises(TextLost) as lost:
        check.add(["第二章", "丁。"], "ep2")
    assert str(lost.value) == ("the series (at episode ep2) does not keep the book's text (whitespace and "
                               "quotation marks aside):\n  missing at character 9: '丙'\n  added at character 11: "
                               "'。' is not in the chapter")  # compared over what the episode speaks: 3 letters
    check = _BookCheck("第一章\n甲乙。\n第二章\n丙丁。\n")
    check.add(["第一章", "甲乙。"], "ep1")
    with pytest.raises(TextLost) as lost:
        check.finish()
    assert str(lost.value) == ("the series (after its last episode) does not keep the book's text (whitespace "
                               "and quotation marks aside):\n  missing at character 6: '第二章丙丁。'")


# ── the openai engine ────────────────────────────────────────────────────────


def test_the_openai_engine_carries_the_cast_and_its_aliases_across_chapters(server: ChatServer,  # noqa: F811
                                                                             tmp_path: Path) -> None:
    book = tmp_path / "well.txt"
    book.write_text("第一章 古井\n\n　　夜里，古井边起了雾。\n\n第二章 天亮\n\n　　远儿回头说：“走吧。”\n", encoding="utf-8")
    lin = {**LIN, "aliases": ["远儿"]}
    server.answers(answer(shot(0, 1), characters=[lin, SHI]),
                   answer(shot(0, 0), shot(1, 2, characters=["linyuan"], speakers=[{"segment": 2, "who": "远儿"}]),
                          characters=[]))
    result = CliRunner().invoke(split_command, [str(book), "-o", str(tmp_path / "s"), "--engine", "openai",
                                                "--base-url", server.url, "--model", "test-model"])
    assert result.exit_code == 0, result.output
    projects = episodes(tmp_path / "s")
    assert {cid: (c.name, c.aliases) for cid, c in projects["ep-5908442f"].characters.items()} == {
        "linyuan": ("林远", ["远儿"])}
    assert lines(projects["ep-5908442f"]) == [("linyuan", "走吧。")]
    second_prompt = server.received[1].messages[1]["content"].splitlines()
    assert second_prompt[:3] == ["Known characters (use these ids):",
                                 f"- linyuan: 林远 (also 远儿) — {LIN['description']}",
                                 f"- shibo: 石伯 — {SHI['description']}"]


def test_a_failing_episode_leaves_the_series_as_it_was(server: ChatServer, tmp_path: Path) -> None:  # noqa: F811
    folder = tmp_path / "s"
    assert run(QIXUAN, "-o", folder, cwd=tmp_path).returncode == 0
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    server.answers(answer(shot(0, 7), characters=[]))  # the first chapter; the second gets no answer (500)
    result = CliRunner().invoke(split_command, [str(QIXUAN), "-o", str(folder), "--force", "--engine", "openai",
                                                "--base-url", server.url, "--model", "test-model"])
    assert result.exit_code == 1, result.output
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before
    server.answers(answer(shot(0, 7), characters=[]))
    fresh = CliRunner().invoke(split_command, [str(QIXUAN), "-o", str(tmp_path / "new"), "--engine", "openai",
                                               "--base-url", server.url, "--model", "test-model"])
    assert fresh.exit_code == 1 and not (tmp_path / "new").exists()  # a folder it made is not left behind


# ── memory ───────────────────────────────────────────────────────────────────


def peak_bytes(tmp_path: Path, chapters: int) -> tuple[int, int]:
    """(characters of a generated book of `chapters` chapters, peak bytes traced while splitting it)."""
    book = tmp_path / f"book{chapters}.txt"
    text = chinese_novel(chapters, 1500)
    book.write_text(text, encoding="utf-8")
    tracemalloc.start()
    try:
        split_novel(book, tmp_path / f"s{chapters}", SplitSettings(characters="韩立,墨大夫,厉飞雨,张铁,王门主"))
        return len(text), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_follows_the_longest_chapter_not_the_book(tmp_path: Path) -> None:
    peak_bytes(tmp_path, 1)  # imports and compiled patterns are not the split's
    small_chars, small = peak_bytes(tmp_path, 3)
    large_chars, large = peak_bytes(tmp_path, 30)
    # The text is read whole: its bytes and decoded copies peak near 10 bytes a character. A Story
    # of the whole book would add about 30 more (fanren.split.rules on this book: 1.5 MB for 47k).
    assert large - small < 16 * (large_chars - small_chars), (small, large)
