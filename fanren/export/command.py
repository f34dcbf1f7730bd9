"""`fanren export`: the click command. Builds what the exports need, then places them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from ..errors import FanrenError, UsageError
from . import FORMATS, OUTPUTS, parse_formats

if TYPE_CHECKING:
    from ..project import Project


@click.command("export")
@click.argument("directory", required=False, default=".", type=click.Path(file_okay=False, path_type=Path))
@click.option("--format", "-f", "formats", metavar="FORMATS", default=None,
              help=f"Comma-separated: {', '.join(FORMATS)}. Default: [export] formats of drama.toml.")
@click.option("--profile", "-p", default="draft", show_default=True,
              help="Which engines render the media the exports reference (see `fanren build --help`).")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), envvar="FANREN_CACHE_DIR",
              help="Where the cache lives (default: DIRECTORY/.fanren-cache; env FANREN_CACHE_DIR).")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=2, show_default=True,
              help="CPU nodes run at once.")
@click.option("--episodes", metavar="EPISODES",
              help="Of a series: which episodes, e.g. ep07, 3-5 (positions from 1), ep03-ep05, or a "
                   "comma-separated list of those (default: every episode; an episode folder: that one).")
@click.option("--quiet", "-q", is_flag=True, help="Print only the files written.")
def export_command(directory: Path, formats: str | None, profile: str, cache_dir: Path | None, jobs: int,
                   episodes: str | None, quiet: bool) -> None:
    """Write editor timelines of the drama in DIRECTORY: OpenTimelineIO, FCP 7 XML (Premiere,
    Resolve) and a Jianying (剪映) draft, with the shots, each line's speech, the music and the
    subtitles as separate, editable pieces.

    Renders what is stale first, like `fanren build` (exports are cached nodes too). The media they
    reference are placed under out/PROFILE/media/; the .otio and .xml reference them by relative
    paths, so out/PROFILE/ can be moved or zipped as a whole.

    A series (DIRECTORY holds series.toml) exports every episode, or those of --episodes, each into
    out/PROFILE/EPISODE/; an episode folder exports that episode, as part of its series.

    \b
    Examples:
      fanren export examples/xianxia --format otio,fcpxml   out/draft/episode.otio, episode.xml
      fanren export . --format jianying --profile final      out/final/jianying/ (a draft folder)
      fanren export .                                        the formats [export] names in drama.toml
      fanren export my-series --format otio --episodes 3-5   out/draft/<episode>/episode.otio, of 3 episodes
      fanren export my-series/ep07                           out/draft/ep07/: that episode's [export]

    Needs pip install 'fanren[export]'. See docs/export.md for what each editor opens.
    Exit code 0 when written, 1 when a node failed, 2 for bad input (an unknown format names the closest).
    """
    from ..cli import fail

    try:
        written = _export(directory, formats, profile, cache_dir, jobs, quiet, episodes)
    except FanrenError as exc:
        fail(exc)
    for path in written:
        click.echo(str(path))


def _export(directory: Path, formats: str | None, profile: str, cache_dir: Path | None, jobs: int,
            quiet: bool, episodes: str | None) -> list[Path]:
    """Build the drama (or the chosen episodes of a series) with the exports chosen; the files they wrote."""
    from ..build import build
    from ..progress import make_reporter
    from ..series import Series, choose_episodes, load_drama

    chosen = parse_formats(formats) if formats is not None else None
    drama = load_drama(directory)
    if episodes is not None:
        if not isinstance(drama, Series):
            raise UsageError(f"--episodes: {directory} is a single drama, not a series (no series.toml)")
        drama = choose_episodes(drama, episodes)
    if isinstance(drama, Series):
        # every episode exports the formats chosen (one graph); of those built, each writes its own
        drama = Series(drama.root, drama.shared, {eid: _with_formats(episode, chosen)
                                                  for eid, episode in drama.episodes.items()}, drama.selected)
        exporting = {eid: drama.episodes[eid] for eid in drama.selected}
    else:
        drama = _with_formats(drama, chosen)
        exporting = {"": drama}
    if not any(project.export.formats for project in exporting.values()):
        raise UsageError(f"{drama.file}: no [export] formats; pass --format "
                         f"(one or more of {', '.join(FORMATS)}, comma-separated)")
    result = build(directory, profile=profile, cache_dir=cache_dir, jobs=jobs, project=drama,
                   reporter=make_reporter(quiet=quiet))
    return [result.out_dir / folder / name for folder, project in exporting.items()
            for fmt in dict.fromkeys(project.export.formats) for name in OUTPUTS[fmt].values()]


def _with_formats(project: Project, chosen: list[str] | None) -> Project:
    """The drama (or episode) exporting the formats chosen with --format, else its own [export]."""
    from ..project import Export

    if chosen is None:
        return project
    return project.model_copy(update={"export": Export(formats=chosen)})  # type: ignore[arg-type]
