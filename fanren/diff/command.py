"""`fanren diff`: which nodes two git revisions of a drama render differently, and why."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..cli import _short, cache_option, handles_errors, profile_option

if TYPE_CHECKING:
    from .review import Review


@click.command("diff")
@click.argument("arguments", nargs=-1, metavar="[REV [REV]] [DIRECTORY]")
@click.option("--dir", "-C", "directory", type=click.Path(file_okay=False, path_type=Path),
              help="The drama folder (default: the last argument when it is a folder, else the current "
                   "directory).")
@profile_option
@cache_option
@click.option("--html", "page", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write a review page: the changed shots side by side (FILE and FILE's stem_files/).")
@click.option("--build", "build_first", is_flag=True,
              help="Render the changed shots of both revisions first (keyframes, clips, shot videos), "
                   "so the page shows them.")
@click.option("--jobs", "-j", default=2, show_default=True, help="CPU nodes at once, with --build.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--exit-code", is_flag=True, help="Exit 1 when a node differs, 0 when none does (like git diff).")
@handles_errors
def diff_command(arguments: tuple[str, ...], directory: Path | None, profile: str, cache_dir: Path | None,
                 page: Path | None, build_first: bool, jobs: int, as_json: bool, exit_code: bool) -> None:
    """Show the nodes two git revisions of the drama render differently, and why.

    With no REV: HEAD against the working tree; one REV: that revision against the working tree;
    two: the first against the second. The reasons are the field-level ones `fanren explain`
    gives. A series folder is compared whole, grouped by episode (shared sheets first); an
    episode folder compares that episode and the shared sheets it reads. Nothing renders unless --build. Exit code 0 whether or not nodes differ (1 with
    --exit-code when some do), 2 for bad input (not a git repository, an unknown revision, no
    drama.toml at a revision, a series at one revision and a single drama at the other).

    \b
    Examples:
      fanren diff                                  HEAD against the working tree
      fanren diff HEAD~1 examples/xianxia          the commit before HEAD against the working tree
      fanren diff origin/main HEAD --html diff.html    a review page of a pull request
      fanren diff origin/main HEAD --html diff.html --build   render the changed shots first
      fanren diff HEAD~1 my-series                 a series, grouped by episode
      fanren diff HEAD~1 my-series/ep02            one episode and the shared sheets it reads
    """
    from ..progress import make_reporter
    from .page import write_page
    from .review import build_changed, open_review, revisions_to_compare

    revisions = list(arguments)
    if directory is None:
        directory = Path(revisions.pop()) if revisions and Path(revisions[-1]).is_dir() else Path(".")
    before, after = revisions_to_compare(tuple(revisions))
    with open_review(directory, before, after, profile, cache_dir) as review:
        if build_first:
            build_changed(review, jobs, make_reporter())
        differences = review.comparison.differences
        if page is not None:
            write_page(review, page)
        if as_json:
            click.echo(json.dumps(_as_json(review, page), ensure_ascii=False, indent=1))
        else:
            _show(review, page)
    if exit_code and differences:
        sys.exit(1)


def _show(review: Review, page: Path | None) -> None:
    from ..text import escape_controls
    from .compare import ADDED, REMOVED
    from .review import by_episode

    differences = review.comparison.differences
    added = sum(1 for d in differences if d.status == ADDED)
    removed = sum(1 for d in differences if d.status == REMOVED)
    scope = f", episode {review.episode}" if review.episode else ""
    click.echo(f"{review.before.label} → {review.after.label} (profile {review.profile}{scope}): "
               f"{len(differences)} of {review.comparison.node_count} nodes differ ({added} added, {removed} removed)")
    groups = by_episode(review) if review.is_series else [(None, differences)]
    for episode, group in groups:
        if review.is_series:
            heading = episode or "shared"
            counted = "1 node differs" if len(group) == 1 else f"{len(group)} nodes differ"
            click.echo(click.style(f"{heading}: {counted}", bold=True))
        for d in group:
            detail = f"  (reads {', '.join(d.changed_inputs)})" if d.changed_inputs else ""
            click.echo(f"  {_styled(d.status):<14} {d.node_id} [{d.node.engine}]{detail}")
            for change in d.changes:  # a drama's text may hold an ESC: it must not reach the terminal
                click.echo(f"      {change.path}:")
                click.echo(click.style(f"        - {escape_controls(_short(change.before))}", fg="red"))
                click.echo(click.style(f"        + {escape_controls(_short(change.after))}", fg="green"))
    if page is not None:
        click.echo(f"page: {page}")


def _as_json(review: Review, page: Path | None) -> dict[str, Any]:
    from .review import episode_of

    return {
        "before": review.before.label, "after": review.after.label, "profile": review.profile,
        "nodes": review.comparison.node_count,
        **({"episodes": review.episodes(), "episode": review.episode} if review.is_series else {}),
        "differ": [{"id": d.node_id, "kind": d.node.kind, "engine": d.node.engine, "status": d.status,
                    **({"episode": episode_of(d.node_id)} if review.is_series else {}),
                    "fields": [{"path": c.path, "before": c.before, "after": c.after} for c in d.changes],
                    "inputs": list(d.changed_inputs),
                    "rendered": {"before": d.before.rendered if d.before else None,
                                 "after": d.after.rendered if d.after else None}}
                   for d in review.comparison.differences],
        **({"html": str(page)} if page is not None else {}),
    }


def _styled(status: str) -> Any:
    colour = {"added": "green", "removed": "red", "changed": "yellow"}.get(status)
    return click.style(f"{status:<14}", fg=colour) if colour else f"{status:<14}"


__all__ = ["diff_command"]
