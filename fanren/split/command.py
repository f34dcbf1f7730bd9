"""`fanren split`: the click command. Parses options, calls the library, prints, picks the exit code."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import click

from ..errors import FanrenError
from .book import BookProgress, Episode, WrittenSeries
from .chapter import ENGINES, SplitSettings, split_novel
from .chat import DEFAULT_BASE_URL, DEFAULT_KEY_ENV, DEFAULT_MODEL, DEFAULT_TIMEOUT, ChatEndpoint
from .writer import Written

BASE_URL_ENV = "OPENAI_BASE_URL"


@click.command("split")
@click.argument("chapter", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Drama folder to write drama.toml into. Default: a folder named after CHAPTER, "
                   "in the current directory.")
@click.option("--engine", type=click.Choice(ENGINES), default="rules", show_default=True,
              help="rules: offline, deterministic. openai: any OpenAI-compatible chat endpoint.")
@click.option("--characters", metavar="NAMES", default=None,
              help='The characters, comma-separated: "林远,林母". Give an id with id=name: '
                   '"linyuan=林远", and the text\'s other names for a character after "|": '
                   '"hanli=韩立|韩师弟|二愣子". Default: names found around quoted speech.')
@click.option("--episode-chars", type=click.IntRange(min=100), default=None, metavar="N",
              help="A book of many chapters: episodes of about N letters or Hanzi (short chapters "
                   "together, a long one cut at paragraph ends). Default: one episode per chapter.")
@click.option("--max-shot-chars", type=click.IntRange(min=8), default=None, metavar="N",
              help="Most letters or Hanzi in one shot (punctuation is free). Default: 50 for zh, 120 for en "
                   "(about ten seconds of speech).")
@click.option("--language", type=click.Choice(["zh", "en"]), default=None,
              help="Language of the chapter. Default: detected from the text.")
@click.option("--force", is_flag=True,
              help="Replace an existing drama.toml or series (each old file is kept as .bak).")
@click.option("--base-url", default=None, metavar="URL",
              help=f"openai engine: the endpoint's base URL. Default: ${BASE_URL_ENV}, else {DEFAULT_BASE_URL}.")
@click.option("--model", default=DEFAULT_MODEL, show_default=True, help="openai engine: the model name.")
@click.option("--api-key-env", default=DEFAULT_KEY_ENV, show_default=True, metavar="NAME",
              help="openai engine: the environment variable that holds the API key "
                   "(a local server may need none).")
@click.option("--chunk-chars", type=click.IntRange(min=100), default=None, metavar="N",
              help="openai engine: characters of text per request. Default: 30 shots' worth.")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_TIMEOUT,
              show_default=True, metavar="SECONDS",
              help="openai engine: the longest one answer may take, from sending the request to its "
                   "last byte (a server that sends slowly is cut off too). Raise it for a slow local model.")
def split_command(chapter: Path, output: Path | None, engine: str, characters: str | None,
                  episode_chars: int | None, max_shot_chars: int | None, language: str | None, force: bool,
                  base_url: str | None, model: str, api_key_env: str, chunk_chars: int | None,
                  timeout: float) -> None:
    """Turn a novel chapter (a .txt file) into a drama folder that `fanren build` renders as it is;
    a whole novel (more than one chapter) into a series: series.toml and a folder per episode.

    \b
    Examples:
      fanren split chapter1.txt                  # → chapter1/drama.toml, offline
      fanren split chapter1.txt -o ep1 --characters "林远,林母,石伯"
      fanren build ep1                           # the draft episode, no GPU needed
      fanren split novel.txt -o my-series --characters "hanli=韩立|韩师弟|二愣子"
                                                 # a series: an episode per chapter
      OPENAI_API_KEY=sk-... fanren split chapter1.txt --engine openai --model gpt-4o-mini
      fanren split chapter1.txt --engine openai \\
          --base-url http://localhost:11434/v1 --model qwen2.5:14b   # a local server

    The chapter may be UTF-8 or GB18030/GBK. Headings (第一章 …, Chapter 3), blank lines and
    lines like *** become scenes; sentences are grouped into shots; quoted speech (“…” 「…」 "…")
    becomes lines with their speaker, or the narrator when the text does not say who.

    Nothing is lost: the narration and lines of all shots, in order, are the chapter's text
    (whitespace and quotation marks aside); the command checks it before writing.

    Shot ids come from the text a shot covers, so after editing the chapter,
    `fanren split --force` keeps the id of every unchanged shot and the next build re-renders only
    the shots whose text changed.
    """
    folder = output if output is not None else Path(chapter.stem)
    endpoint = None
    if engine == "openai":
        endpoint = ChatEndpoint(base_url=base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL,
                                model=model, api_key=os.environ.get(api_key_env) or None,
                                api_key_env=api_key_env, chunk_chars=chunk_chars, timeout=timeout)
    settings = SplitSettings(engine=engine, characters=characters, max_shot_chars=max_shot_chars,
                             language=language, endpoint=endpoint)
    try:
        written = split_novel(chapter, folder, settings, force=force, episode_chars=episode_chars,
                              progress=progress_display(sys.stderr))
    except FanrenError as error:
        from ..cli import fail

        fail(error)
    if isinstance(written, WrittenSeries):
        click.echo(series_summary(written, folder))
    else:
        click.echo(summary(written, folder))


def progress_display(stream: IO[str]) -> BookProgress:
    return RichBookProgress(stream) if stream.isatty() else PlainBookProgress(stream)


class PlainBookProgress(BookProgress):
    """A line per episode written (CI logs, pipes): `episode 3/40 ep-1a2b3c4d 第三章 …: 12 shot(s)`."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.total = 0
        self.count = 0

    def begin(self, episodes: Sequence[Episode]) -> None:
        self.total = len(episodes)
        print(f"splitting {len(episodes)} episode(s)", file=self.stream, flush=True)

    def done(self, episode: Episode, shots: int) -> None:
        self.count += 1
        print(f"  episode {self.count}/{self.total} {episode.id} {episode.title}: {shots} shot(s)",
              file=self.stream, flush=True)


class RichBookProgress(BookProgress):
    """A bar of episodes done out of all, with the time left, and the one just written."""

    def __init__(self, stream: IO[str]) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TextColumn("{task.fields[note]}"), TimeRemainingColumn(),
                             console=Console(file=stream), transient=True)
        self.task: Any = None

    def begin(self, episodes: Sequence[Episode]) -> None:
        self.bars.start()
        self.task = self.bars.add_task("splitting episodes", total=len(episodes), note="")

    def done(self, episode: Episode, shots: int) -> None:
        from ..progress import markup_escape

        self.bars.update(self.task, advance=1, note=markup_escape(f"{episode.id} {episode.title[:30]}"))

    def end(self) -> None:
        self.bars.stop()


def series_summary(written: WrittenSeries, folder: Path) -> str:
    names = ", ".join(written.characters)
    lines = [f"wrote {written.path}: {len(written.episodes)} episode(s), {written.shots} shot(s), "
             f"{len(written.characters)} character(s)" + (f" ({names})" if names else ""),
             "every sentence of the book is in a shot, in order"]
    if written.replaced:
        lines.append(f"re-split: {written.kept} shot(s) kept their ids, {written.new} new, {written.gone} gone; "
                     f"each previous file is kept as .bak beside it")
    if written.episodes_gone:
        lines.append(f"no longer in the series (their folders are left as they were): "
                     f"{', '.join(written.episodes_gone)}")
    lines.append(f"next: fanren build {folder}")
    return "\n".join(lines)


def summary(written: Written, folder: Path) -> str:
    project = written.project
    shots = project.shots()
    names = ", ".join(c.name or cid for cid, c in project.characters.items())
    lines = [f"wrote {written.path}: {len(project.scenes)} scene(s), {len(shots)} shot(s), "
             f"{len(project.characters)} character(s)" + (f" ({names})" if names else ""),
             "every sentence of the chapter is in a shot, in order"]
    if written.replaced:
        lines.append(f"re-split: {written.kept} shot(s) kept their ids, {written.new} new, {written.gone} gone; "
                     f"the previous file is {written.backup}")
    lines.append(f"next: fanren build {folder}")
    return "\n".join(lines)
