"""A chapter file → a drama folder: read, split with an engine, render, validate, check, write."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from .book import BookProgress, BookSettings, WrittenSeries, chapters_of, split_book
from .cast import Person, parse_characters
from .chat import ChatClient, ChatEndpoint
from .llm import split_with_llm
from .outline import outline
from .rules import split_by_rules, title_of
from .source import detect_language, read_chapter
from .story import Story, drama_table
from .writer import Written, check_writable, header, render, write_drama

ENGINES = ("rules", "openai")


@dataclass(frozen=True)
class SplitSettings:
    engine: str = "rules"
    characters: str | None = None        # "林远,林母" or "linyuan=林远,林母"
    max_shot_chars: int | None = None    # default per language (rules.DEFAULT_MAX_SHOT_CHARS)
    language: str | None = None          # "zh" | "en"; detected from the text when None
    endpoint: ChatEndpoint | None = None  # for the openai engine


def split_text(chapter: str, title_fallback: str, settings: SplitSettings) -> Story:
    """The chapter's text as a Story, by the chosen engine."""
    language = settings.language or detect_language(chapter)
    people: list[Person] | None = parse_characters(settings.characters) if settings.characters else None
    title = title_of(outline(chapter, language), title_fallback)
    if settings.engine == "rules":
        return split_by_rules(chapter, title, language, people, settings.max_shot_chars)
    if settings.engine == "openai":
        if settings.endpoint is None:
            raise UsageError("the openai engine needs an endpoint (--base-url and --model)")
        return split_with_llm(chapter, title, language, people, settings.endpoint, settings.max_shot_chars)
    raise UsageError(f"unknown split engine {settings.engine!r} (known: {', '.join(ENGINES)})")


def engine_label(settings: SplitSettings) -> str:
    engine = settings.engine + (f", model {settings.endpoint.model}"
                                if settings.engine == "openai" and settings.endpoint else "")
    return f"engine: {engine}"


def drama_text(story: Story, source_name: str, settings: SplitSettings) -> str:
    return render(drama_table(story), header(source_name, engine_label(settings)))


def split_chapter(chapter_file: Path, folder: Path, settings: SplitSettings, force: bool = False) -> Written:
    """Split `chapter_file` into `folder`/drama.toml. Refuses to replace one unless `force`."""
    check_writable(folder, force)
    chapter = read_chapter(chapter_file)
    story = split_text(chapter, Path(chapter_file).stem, settings)
    text = drama_text(story, Path(chapter_file).name, settings)
    return write_drama(folder, text, chapter, force)


def split_novel(novel_file: Path, folder: Path, settings: SplitSettings, force: bool = False,
                episode_chars: int | None = None, progress: BookProgress | None = None) -> Written | WrittenSeries:
    """A text of more than one chapter → a series in `folder` (series.toml, a folder per episode);
    a text of one chapter → `folder`/drama.toml, exactly as `split_chapter` writes it."""
    text = read_chapter(novel_file)
    name = Path(novel_file).name
    if len(chapters_of(text)) < 2:
        check_writable(folder, force)
        story = split_text(text, Path(novel_file).stem, settings)
        return write_drama(folder, drama_text(story, name, settings), text, force)
    client = None
    if settings.engine == "openai":
        if settings.endpoint is None:
            raise UsageError("the openai engine needs an endpoint (--base-url and --model)")
        client = ChatClient(settings.endpoint)
    elif settings.engine != "rules":
        raise UsageError(f"unknown split engine {settings.engine!r} (known: {', '.join(ENGINES)})")
    book = BookSettings(engine=settings.engine, characters=settings.characters,
                        max_shot_chars=settings.max_shot_chars,
                        language=settings.language or detect_language(text), episode_chars=episode_chars,
                        client=client, engine_label=engine_label(settings))
    return split_book(text, name, folder, book, force, progress)
