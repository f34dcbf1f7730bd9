"""`fanren export`: the click command. Builds what the exports need, then places them."""

from __future__ import annotations

from pathlib import Path

import click

from ..errors import FanrenError, UsageError
from . import FORMATS, OUTPUTS, parse_formats


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
@click.option("--quiet", "-q", is_flag=True, help="Print only the files written.")
def export_command(directory: Path, formats: str | None, profile: str, cache_dir: Path | None, jobs: int,
                   quiet: bool) -> None:
    """Write editor timelines of the drama in DIRECTORY: OpenTimelineIO, FCP 7 XML (Premiere,
    Resolve) and a Jianying (剪映) draft, with the shots, each line's speech, the music and the
    subtitles as separate, editable pieces.

    Renders what is stale first, like `fanren build` (exports are cached nodes too). The media they
    reference are placed under out/PROFILE/media/; the .otio and .xml reference them by relative
    paths, so out/PROFILE/ can be moved or zipped as a whole.

    \b
    Examples:
      fanren export examples/xianxia --format otio,fcpxml   out/draft/episode.otio, episode.xml
      fanren export . --format jianying --profile final      out/final/jianying/ (a draft folder)
      fanren export .                                        the formats [export] names in drama.toml

    Needs pip install 'fanren[export]'. See docs/export.md for what each editor opens.
    Exit code 0 when written, 1 when a node failed, 2 for bad input (an unknown format names the closest).
    """
    from ..cli import fail

    try:
        written = _export(directory, formats, profile, cache_dir, jobs, quiet)
    except FanrenError as exc:
        fail(exc)
    for path in written:
        click.echo(str(path))


def _export(directory: Path, formats: str | None, profile: str, cache_dir: Path | None, jobs: int,
            quiet: bool) -> list[Path]:
    from ..build import build
    from ..progress import make_reporter
    from ..project import Export, load_project

    chosen = parse_formats(formats) if formats is not None else None
    project = load_project(directory)
    if chosen is not None:
        project = project.model_copy(update={"export": Export(formats=chosen)})  # type: ignore[arg-type]
    elif not project.export.formats:
        raise UsageError(f"{project.file}: no [export] formats; pass --format "
                         f"(one or more of {', '.join(FORMATS)}, comma-separated)")
    result = build(directory, profile=profile, cache_dir=cache_dir, jobs=jobs, project=project,
                   reporter=make_reporter(quiet=quiet))
    return [result.out_dir / name for fmt in dict.fromkeys(project.export.formats)
            for name in OUTPUTS[fmt].values()]
