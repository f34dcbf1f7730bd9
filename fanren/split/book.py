"""A whole novel → a series: series.toml (the book's cast) and one episode folder per chapter.

A book is cut into chapters at its heading lines (the outline's `is_heading`: 第一章 …, Chapter 3,
楔子 …). Text before the first heading opens the first chapter; a heading with no text before the
next one (a volume's title) opens the chapter after it. Chapters become episodes — one each, or,
with a target length, consecutive short chapters together and a long chapter cut at a scene break
or a paragraph's end — and each episode is split by the chosen engine on its own, so memory holds the book's text and
one episode's Story, never the whole book's.

Episode ids come from the chapter heading that opens them (`stable_ids`: a hash, with a slug of
English words: `ep-3f2a91c0`, `chapter-3-well-5484fcf5`), so editing a chapter's text changes no
other episode's id or file. Everything is written into a staging folder first and moved into place
only once every episode validated and the whole book's text checked out: a failed split changes
nothing.
"""

from __future__ import annotations

import os
import shutil
import tomllib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..project import DRAMA_FILE, Project, validate_project
from ..series import merge
from .cast import (
    Mentions,
    Person,
    detect_book_characters,
    parse_characters,
    speaker_candidates,
    with_address_aliases,
)
from .chat import ChatClient
from .coverage import (
    Difference,
    TextLost,
    check_no_text_lost,
    differences,
    is_break_line,
    normalize,
    source_text,
    spoken_length,
)
from .llm import Registry, registry_of, split_chapter_with_llm
from .outline import PARAGRAPH_END, is_heading, outline
from .rules import split_by_rules
from .story import CharacterDraft, Story, characters_table, drama_table, stable_ids
from .writer import BACKUP_SUFFIX, GITIGNORE, render, render_series, shot_ids, spoken_texts

SERIES_FILE = "series.toml"
STAGING = ".fanren-split"  # where a split is written before it replaces anything

_SERIES_HEADER = """\
# series.toml, written by `fanren split` from {source} ({engine}).
#
# What every episode of the series shares: [drama] (language, style, …) and the cast. Each episode
# is a folder listed in [series] episodes, its drama.toml holding the episode's title and scenes.
#   [characters.<id>]  `description` is all the image model knows of a character: say how they look.
#                      `aliases` are the book's other names for them, used to tell who speaks.
#
# Episode ids come from chapter headings and shot ids from the text a shot covers:
# `fanren split --force` on an edited book keeps every id whose text did not change, so the next
# build re-renders only what changed. It replaces these files (each previous one is kept as .bak).
"""

_EPISODE_HEADER = """\
# {episode}/drama.toml, an episode of the series in ../series.toml, written by `fanren split` from
# {source} ({engine}). The language and the cast are in ../series.toml; here are the episode's
# title and its scenes. The narration and lines of all shots are the book's text, in order, word
# for word. Shot ids come from the text a shot covers; `fanren split --force` replaces this file
# (the previous one is kept as drama.toml.bak).
"""

# ── chapters and episodes ────────────────────────────────────────────────────


@dataclass(frozen=True)
class Chapter:
    heading: str  # the heading line, stripped
    start: int    # offsets into the book's text: a chapter is text[start:end]
    end: int


@dataclass(frozen=True)
class Episode:
    id: str
    title: str
    start: int
    end: int
    chapters: tuple[str, ...]  # the headings of the chapters it holds (of a part of one: that one)


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """(offset, line) of each line, without building a list of a whole book's lines."""
    start = 0
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end + 1
        yield start, text[start:end]
        start = end


def chapters_of(text: str) -> list[Chapter]:
    """The book's chapters, in order, covering all of its text; [] when it has no heading."""
    starts: list[tuple[int, str]] = [(offset, line.strip()) for offset, line in _lines(text) if is_heading(line)]
    if not starts:
        return []
    chapters = []
    for k, (start, heading) in enumerate(starts):
        end = starts[k + 1][0] if k + 1 < len(starts) else len(text)
        chapters.append(Chapter(heading, 0 if k == 0 else start, end))
    # a heading with nothing under it (a volume's or a part's title) opens the next chapter
    joined: list[Chapter] = []
    pending: Chapter | None = None
    for chapter in chapters:
        if pending is not None:
            chapter = Chapter(pending.heading, pending.start, chapter.end)
            pending = None
        if not _has_text_below_heading(text[chapter.start:chapter.end]):
            pending = chapter
            continue
        joined.append(chapter)
    if pending is not None:
        if joined:
            joined[-1] = Chapter(joined[-1].heading, joined[-1].start, pending.end)
        else:
            joined.append(pending)
    return joined


def _has_text_below_heading(chapter: str) -> bool:
    below = False
    for _, line in _lines(chapter):
        if below and line.strip() and not is_break_line(line):
            return True
        below = below or is_heading(line)
    return False


def episodes_of(text: str, chapters: Sequence[Chapter], episode_chars: int | None = None) -> list[Episode]:
    """One episode per chapter; or, with `episode_chars`, consecutive chapters up to that many
    letters or Hanzi together and a longer chapter cut into parts at paragraph ends."""
    ids = dict(zip(chapters, stable_ids([c.heading for c in chapters], "ep")))
    if episode_chars is None:
        return [Episode(ids[c], c.heading, c.start, c.end, (c.heading,)) for c in chapters]
    episodes: list[Episode] = []
    group: list[Chapter] = []
    size = 0

    def close() -> None:
        if group:
            episodes.append(Episode(ids[group[0]], group[0].heading, group[0].start, group[-1].end,
                                    tuple(c.heading for c in group)))
            group.clear()

    for chapter in chapters:
        length = spoken_length(text[chapter.start:chapter.end])
        if length > episode_chars:
            close()
            size = 0
            cuts = paragraph_cuts(text, chapter, episode_chars)
            for k, (start, end) in enumerate(zip([chapter.start, *cuts], [*cuts, chapter.end])):
                suffix = "" if k == 0 else f"-part{k + 1}"
                title = chapter.heading if k == 0 else f"{chapter.heading} ({k + 1})"
                episodes.append(Episode(ids[chapter] + suffix, title, start, end, (chapter.heading,)))
            continue
        if group and size + length > episode_chars:
            close()
            size = 0
        group.append(chapter)
        size += length
    close()
    return episodes


@dataclass(frozen=True)
class _Boundary:
    offset: int    # a line start in the book, after a line that ends a sentence
    letters: int   # letters and Hanzi of the chapter before it
    blank: int     # blank lines before it
    symbols: bool  # a symbol line (***) before it


def paragraph_cuts(text: str, chapter: Chapter, episode_chars: int) -> list[int]:
    """Offsets at which to cut a long chapter into even parts of at most about `episode_chars`: each
    at the scene break nearest its even share when one is within a quarter of `episode_chars`, else
    at the nearest paragraph end (a line that ends a sentence): never mid-sentence."""
    boundaries: list[_Boundary] = []
    letters = 0
    ended = False    # the last line with text ended a sentence
    blank = 0        # blank lines since it
    symbols = False  # a symbol line since it
    for offset, line in _lines(text[chapter.start:chapter.end]):
        stripped = line.strip()
        if not stripped:
            blank += 1
        elif is_break_line(stripped):
            symbols = True
        else:
            if ended and letters:
                boundaries.append(_Boundary(chapter.start + offset, letters, blank, symbols))
            letters += spoken_length(line)
            ended = stripped[-1] in PARAGRAPH_END
            blank, symbols = 0, False
    # as in the outline: where a blank line stands between all paragraphs, a scene break takes two
    spaced = bool(boundaries) and sum(1 for b in boundaries if b.blank) >= 0.8 * len(boundaries)
    scene_gap = 2 if spaced else 1
    parts = -(-letters // episode_chars)
    cuts: list[int] = []
    for k in range(1, parts):
        target = letters * k // parts
        after = [b for b in boundaries if not cuts or b.offset > cuts[-1]]
        scenes = [b for b in after if (b.symbols or b.blank >= scene_gap)
                  and abs(b.letters - target) <= episode_chars // 4]
        nearest = min(scenes or after, key=lambda b: abs(b.letters - target), default=None)
        if nearest is not None:
            cuts.append(nearest.offset)
    return cuts


# ── the series ───────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class BookSettings:
    engine: str
    characters: str | None
    max_shot_chars: int | None
    language: str
    episode_chars: int | None
    client: ChatClient | None = None  # the openai engine's
    engine_label: str = "engine: rules"


class BookProgress:
    """What a long split reports: the episodes to write, then each one done. Silent by default."""

    def begin(self, episodes: Sequence[Episode]) -> None:
        return None

    def done(self, episode: Episode, shots: int) -> None:
        return None

    def end(self) -> None:
        return None


@dataclass(frozen=True)
class WrittenSeries:
    path: Path                       # series.toml
    episodes: tuple[str, ...]
    shots: int
    characters: tuple[str, ...]      # names, in the order of series.toml
    kept: int                        # shot ids in the same episode of the replaced series too
    new: int
    gone: int
    episodes_gone: tuple[str, ...]   # episodes of the replaced series.toml that are no more (left in place)
    backups: tuple[Path, ...]
    replaced: bool


@dataclass
class _Cast:
    """The book's characters as they become known, and which ones some shot shows."""

    people: list[Person]
    registry: Registry | None  # the openai engine's, grown chapter by chapter
    used: set[str] = field(default_factory=set)

    def drafts(self) -> list[CharacterDraft]:
        if self.registry is not None:
            return [CharacterDraft(c.id, c.name, c.description or c.name, c.aliases)
                    for c in self.registry.characters.values()]
        return [CharacterDraft(p.id, p.name, p.name, p.aliases) for p in self.people]


def book_cast(text: str, episodes: Sequence[Episode], settings: BookSettings) -> list[Person]:
    """--characters, else the names found around quotes in every chapter, judged over the whole book."""
    if settings.characters:
        return parse_characters(settings.characters)
    if settings.engine != "rules":
        return []
    mentions = Mentions(text)
    candidates: list[str] = []
    for episode in episodes:
        candidates += speaker_candidates(outline(text[episode.start:episode.end], settings.language),
                                         settings.language, mentions)
    people = detect_book_characters(candidates, mentions)
    return with_address_aliases(people, mentions) if settings.language == "zh" else people


def check_series_writable(folder: Path, episodes: Sequence[Episode], force: bool) -> None:
    """Refuse to replace a series, an episode or a single drama in `folder` unless `force`."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder} is not a folder (expected the series folder to write {SERIES_FILE} into)")
    if force:
        return
    single = folder / DRAMA_FILE
    if single.exists():
        raise UsageError(f"{single} already exists: the folder holds a single drama, and the book has "
                         f"{len(episodes)} episodes, which make a series; choose another -o, or pass --force "
                         f"to write the series there (the drama.toml is kept as {DRAMA_FILE}{BACKUP_SUFFIX})")
    for target in [folder / SERIES_FILE] + [folder / e.id / DRAMA_FILE for e in episodes]:
        if target.exists():
            raise UsageError(f"{target} already exists; pass --force to replace the series "
                             f"(each replaced file is kept as .bak beside it)")


def split_book(text: str, source_name: str, folder: Path, settings: BookSettings, force: bool = False,
               progress: BookProgress | None = None) -> WrittenSeries:
    """Split a book of more than one chapter into the series folder `folder`."""
    progress = progress or BookProgress()
    folder = Path(folder)
    episodes = episodes_of(text, chapters_of(text), settings.episode_chars)
    check_series_writable(folder, episodes, force)
    people = book_cast(text, episodes, settings)
    cast = _Cast(people, registry_of(people) if settings.engine == "openai" else None)
    staging = folder / STAGING
    shutil.rmtree(staging, ignore_errors=True)  # a split killed before it finished left it
    created = not folder.exists()
    staging.mkdir(parents=True)
    written = None
    try:
        book = _BookCheck(text)
        shots_per_episode: dict[str, list[str]] = {}
        progress.begin(episodes)
        for episode in episodes:
            project = _split_episode(text, episode, settings, cast, source_name, staging)
            book.add(spoken_texts(project), episode.id)
            shots_per_episode[episode.id] = [shot.id for _, shot in project.shots()]
            progress.done(episode, len(shots_per_episode[episode.id]))
        book.finish()
        characters = [c for c in cast.drafts() if c.id in cast.used]
        series_text = render_series(_series_table(settings.language, characters, episodes, source_name),
                                    _SERIES_HEADER.format(source=source_name, engine=settings.engine_label))
        (staging / SERIES_FILE).write_text(series_text, encoding="utf-8", newline="\n")
        check_series_writable(folder, episodes, force)
        written = _commit(folder, staging, [e.id for e in episodes], shots_per_episode,
                          tuple(c.name for c in characters))
    finally:
        progress.end()
        shutil.rmtree(folder if created and written is None else staging, ignore_errors=True)
    return written


def _split_episode(text: str, episode: Episode, settings: BookSettings, cast: _Cast, source_name: str,
                   staging: Path) -> Project:
    """Split one episode, validate it merged over the series so far, check its text, stage its file."""
    body = text[episode.start:episode.end]
    if settings.engine == "openai":
        assert settings.client is not None and cast.registry is not None
        story, cast.registry = split_chapter_with_llm(body, episode.title, settings.language, cast.registry,
                                                      settings.client.endpoint, settings.client,
                                                      settings.max_shot_chars)
    else:
        story = split_by_rules(body, episode.title, settings.language, cast.people, settings.max_shot_chars)
    table = drama_table(Story(story.title, story.language, (), story.scenes))
    table["drama"] = {"title": episode.title}
    episode_text = render(table, _EPISODE_HEADER.format(episode=episode.id, source=source_name,
                                                         engine=settings.engine_label))
    series = {"drama": {"title": "check", "language": settings.language},
              "characters": characters_table(cast.drafts())}
    project = validate_project(merge(series, tomllib.loads(episode_text)), staging)
    check_no_text_lost(body, spoken_texts(project), f"episode {episode.id} ({episode.title})")
    # both engines list a shot's speakers among its characters: these are all the ids it names
    cast.used |= {cid for shot in story.shots() for cid in shot.characters}
    (staging / episode.id).mkdir()
    (staging / episode.id / DRAMA_FILE).write_text(episode_text, encoding="utf-8", newline="\n")
    return project


class _BookCheck:
    """The no-text-lost check over the whole book, episode by episode: what the episodes speak, in
    order, must be the book's text (so no chapter, part or line between them went missing)."""

    def __init__(self, text: str) -> None:
        self.book = source_text(text)
        self.at = 0

    def add(self, spoken: Sequence[str], episode_id: str) -> None:
        said = normalize("".join(spoken))
        expected = self.book[self.at:self.at + len(said)]
        if said != expected:
            found = differences(expected, said)
            shifted = [Difference(d.kind, d.source, d.spoken, d.offset + self.at) for d in found]
            raise TextLost(shifted, f"the series (at episode {episode_id})", "the book")
        self.at += len(said)

    def finish(self) -> None:
        if self.at != len(self.book):
            raise TextLost([Difference("missing", self.book[self.at:], "", self.at)],
                           "the series (after its last episode)", "the book")


def _series_table(language: str, characters: Sequence[CharacterDraft], episodes: Sequence[Episode],
                  source_name: str) -> dict[str, Any]:
    return {"drama": {"title": Path(source_name).stem, "language": language},
            "series": {"episodes": [e.id for e in episodes]},
            "characters": characters_table(characters)}


def _commit(folder: Path, staging: Path, episode_ids: Sequence[str], shots: dict[str, list[str]],
            characters: tuple[str, ...]) -> WrittenSeries:
    """Move the staged files into place, each replaced file kept as .bak; series.toml last."""
    folder.mkdir(parents=True, exist_ok=True)
    old_series = folder / SERIES_FILE
    old_episodes = _listed_episodes(old_series)
    replaced = old_series.exists()
    backups: list[Path] = []
    kept = new = gone = 0

    def place(staged: Path, target: Path) -> None:
        if target.exists():
            backup = target.with_name(target.name + BACKUP_SUFFIX)
            shutil.copyfile(target, backup)
            backups.append(backup)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged, target)

    for eid in episode_ids:
        target = folder / eid / DRAMA_FILE
        old = shot_ids(target) if target.exists() else set()
        kept += sum(1 for s in shots[eid] if s in old)
        new += sum(1 for s in shots[eid] if s not in old)
        gone += len(old - set(shots[eid]))
        place(staging / eid / DRAMA_FILE, target)
    single = folder / DRAMA_FILE
    if single.exists():  # --force over a single drama: moved aside, a series root holds none
        os.replace(single, single.with_name(DRAMA_FILE + BACKUP_SUFFIX))
        backups.append(single.with_name(DRAMA_FILE + BACKUP_SUFFIX))
    place(staging / SERIES_FILE, folder / SERIES_FILE)
    gitignore = folder / ".gitignore"
    if not gitignore.exists():
        gitignore.write_text(GITIGNORE, encoding="utf-8")
    total = sum(len(s) for s in shots.values())
    episodes_gone = tuple(e for e in old_episodes if e not in episode_ids)
    return WrittenSeries(folder / SERIES_FILE, tuple(episode_ids), total, characters, kept, new, gone,
                         episodes_gone, tuple(backups), replaced)


def _listed_episodes(file: Path) -> list[str]:
    """The episodes an existing series.toml lists, or none if it does not parse (it is replaced anyway)."""
    try:
        listed = tomllib.loads(file.read_text(encoding="utf-8")).get("series", {}).get("episodes", [])
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError, AttributeError):
        return []
    return [e for e in listed if isinstance(e, str)] if isinstance(listed, list) else []
