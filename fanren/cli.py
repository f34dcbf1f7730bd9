"""The command line: parse, call the library, print, choose the exit code. Nothing else lives here.

Exit codes: 0 success, 1 a node failed, 2 bad input (the message names the file, the key path and
what was expected; no traceback).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from . import __version__
from .errors import FanrenError, UsageError

if TYPE_CHECKING:
    from .build import BuildResult
    from .consistency import ConsistencyFailed

F = TypeVar("F", bound=Callable[..., Any])

# pydantic looks for plugins through importlib.metadata on first use (~20 ms of every command);
# the fanren command line uses none.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")


def fail(exc: FanrenError) -> NoReturn:
    """The one place a fanren error becomes output and an exit code (each error class says which:
    fanren/errors.py). Every command, including those beside their feature (split, watch), ends here."""
    from .text import escape_controls

    click.echo(escape_controls(exc.show()), err=True)  # an ESC in drama.toml must not reach the terminal
    sys.exit(exc.exit_code)


def handles_errors(fn: F) -> F:
    """Turn fanren's own exceptions into a message and their exit code (through fail)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except FanrenError as exc:
            fail(exc)

    return wrapper  # type: ignore[return-value]


def _imported() -> None:
    """Call once a command has imported what it plans with. What the imports made (modules, classes,
    pydantic's schemas: some 30,000 objects the collector tracks, alive until exit) moves to the
    collector's permanent generation, so the full collections that compiling and planning thousands
    of nodes set off no longer walk it: a no-op build of a 450-shot series, 0.37 -> 0.32 CPU s."""
    import gc

    gc.freeze()


class _WarningHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        click.echo(f"warning: {record.getMessage()}", err=True)


def _setup_logging() -> None:
    logger = logging.getLogger("fanren")
    if not any(isinstance(h, _WarningHandler) for h in logger.handlers):
        logger.addHandler(_WarningHandler(level=logging.WARNING))
        logger.propagate = False


drama_dir = click.argument("directory", required=False, default=".",
                           type=click.Path(file_okay=False, path_type=Path))
profile_option = click.option("--profile", "-p", default="draft", show_default=True,
                              help="Which engines render: draft (CPU, seconds), final (GPU models), "
                                   "smoke (tiny real models on CPU), or a [profiles.NAME] of drama.toml.")
episodes_option = click.option("--episodes", metavar="EPISODES",
                               help="Of a series: which episodes, e.g. ep07, 3-5 (positions from 1), "
                                    "ep03-ep05, or a comma-separated list of those.")
cache_option = click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path),
                            envvar="FANREN_CACHE_DIR",
                            help="Where the cache lives (default: DIRECTORY/.fanren-cache; "
                                 "env FANREN_CACHE_DIR).")


class LazyGroup(click.Group):
    """Commands that live beside their feature (split, watch) load only when they are called."""

    lazy = {"split": "fanren.split.command:split_command", "watch": "fanren.watch:watch_command",
            "serve": "fanren.serve.command:serve_command", "keys": "fanren.serve.command:keys_command",
            "diff": "fanren.diff.command:diff_command",
            "export": "fanren.export.command:export_command"}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            import importlib

            module, _, attr = self.lazy[name].partition(":")
            try:
                return getattr(importlib.import_module(module), attr)  # type: ignore[no-any-return]
            except ModuleNotFoundError:
                return None
        return super().get_command(ctx, name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="fanren")
def main() -> None:
    """make for AI short dramas: drama.toml in, episode.mp4 out, re-rendering only what changed.

    \b
    Start here:
      fanren init my-drama          a drama folder with a commented drama.toml
      fanren build my-drama         render out/draft/episode.mp4 (CPU, seconds per shot)
      fanren status my-drama        what the next build would run, and why
      fanren explain keyframe:s01   the field-level reason one node would re-render
      fanren export my-drama -f otio,jianying   editor timelines (OTIO, FCP XML, 剪映 draft)
    """
    _setup_logging()


@main.command()
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option("--title", help="The drama's title (default: the folder name).")
@handles_errors
def init(directory: Path, title: str | None) -> None:
    """Create a drama folder with a commented drama.toml and a .gitignore.

    \b
    Example:
      fanren init 青云志 && fanren build 青云志
    """
    from .scaffold import scaffold

    written = scaffold(directory, title)
    for path in written:
        click.echo(f"created {path}")
    click.echo(f"\nnext: edit {directory / 'drama.toml'}, then run `fanren build {directory}`")


@main.command()
@drama_dir
@profile_option
@click.option("--keep-going", "-k", is_flag=True, help="Let independent nodes finish when one fails.")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=2, show_default=True,
              help="CPU nodes (speech, mux) run at once; GPU nodes always run one at a time per GPU.")
@cache_option
@click.option("--remote-read-only", is_flag=True, envvar="FANREN_REMOTE_READ_ONLY",
              help="Pull from the remote cache but never upload (untrusted runners, pull requests; "
                   "env FANREN_REMOTE_READ_ONLY=1).")
@click.option("--quiet", "-q", is_flag=True, help="Print only the result line.")
@click.option("--check", is_flag=True,
              help="Then render every node again and compare its bytes with the cache; exit 1 naming "
                   "each node (and engine) that gave other bytes, and each shot below the threshold of "
                   "[check] consistency. Commits nothing.")
@click.option("--gpus", metavar="all|0,1,...",
              help="One worker process per GPU, each keeping its models loaded (default: one GPU, "
                   "in this process). With --executor ray: how many of the cluster's GPUs to use.")
@click.option("--executor", "executor_kind", type=click.Choice(["local", "ray"]), default="local",
              show_default=True, help="Where GPU nodes run: this machine, or a Ray cluster "
                                      "(pip install 'fanren[ray]').")
@click.option("--address", help="The Ray cluster to join (e.g. ray://head:10001 or auto; "
                                "default: a local Ray started for this build).")
@episodes_option
@handles_errors
def build(directory: Path, profile: str, keep_going: bool, jobs: int, cache_dir: Path | None,
          remote_read_only: bool, quiet: bool, check: bool, gpus: str | None, executor_kind: str,
          address: str | None, episodes: str | None) -> None:
    """Render the drama in DIRECTORY into out/PROFILE/episode.mp4, running only stale nodes.

    A series (DIRECTORY holds series.toml) builds every episode in one graph into
    out/PROFILE/<episode>/ and the season page out/PROFILE/index.html; DIRECTORY an episode's folder,
    or --episodes, builds some of them.

    \b
    Examples:
      fanren build examples/xianxia                 draft profile: cards, Ken Burns, espeak-ng
      fanren build . --profile final                FLUX.2 + LTX-2 + CosyVoice on a GPU
      fanren build . -j 4 --keep-going
      fanren build . --profile final --gpus all     one worker per GPU, models stay loaded
      fanren build . --profile final --executor ray --address auto
      fanren build . --check                        prove same key, same bytes on this machine
      fanren build my-series --episodes 3-5         episodes 3 to 5 of a series (or ep03-ep05)
      fanren build my-series/ep07                   one episode, as part of its series

    Writes out/PROFILE/ (episode.mp4, episode.srt/.ass, storyboard.html, report.json) and drama.lock.
    Exit code 0 when everything built, 1 when a node failed (its log is named), 2 for bad input.
    """
    from .build import build as run_build
    from .progress import make_reporter

    _imported()

    def waiting() -> None:
        click.echo("another build of this drama is running; waiting for it to finish...", err=True)

    def checking(done: int, total: int, node_id: str) -> None:
        if not quiet:
            click.echo(f"check {done + 1}/{total}: {node_id}", err=True)

    from .executors import ExecutorOptions

    drama = _load_chosen(directory, episodes)
    result = run_build(directory, profile=profile, cache_dir=cache_dir, jobs=jobs, keep_going=keep_going,
                       reporter=make_reporter(quiet=quiet), on_wait=waiting,
                       remote_read_only=remote_read_only, executor=ExecutorOptions(executor_kind, gpus, address),
                       check=check, on_check=checking, project=drama)
    ran, cached = result.count("ran"), result.count("cached")
    remote = f", {result.remote_hits} of them from the remote cache" if result.remote_hits else ""
    click.echo(f"built {len(result.results)} nodes ({ran} ran, {cached} cached{remote}) in {result.seconds:.1f} s")
    from .series import Series

    if isinstance(drama, Series):
        chosen = drama.selected
        click.echo(f"episodes: {result.out_dir}/{{{','.join(chosen)}}}/episode.mp4" if len(chosen) > 1
                   else f"episode: {result.out_dir / chosen[0] / 'episode.mp4'}")
        click.echo(f"season: {result.out_dir / 'index.html'}")
    else:
        click.echo(f"episode: {result.episode}")
    low = _consistency(result, quiet, check)
    if check:
        if result.mismatches:
            from .check import CheckFailed

            if low is not None:
                click.echo(low.show(), err=True)
            raise CheckFailed(result.mismatches, result.checked)
        click.echo(f"checked {result.checked} nodes: every one gave the same bytes again")
        if low is not None:
            raise low


def _consistency(result: BuildResult, quiet: bool, check: bool) -> ConsistencyFailed | None:
    """Print the consistency check's flagged shots (with --check, those under the threshold are left
    to the error); the error `build --check` raises for the shots under the threshold (None when
    there are none, or no [check] consistency)."""
    report = result.consistency()
    if report is None:
        return None
    from .consistency import ConsistencyFailed, flagged

    shots = flagged(report)
    if not quiet:
        scored = sum(len(c["shots"]) for c in report["characters"].values())
        click.echo(f"consistency: {scored} shot scores, {len(shots)} flagged (out/{result.session.profile}/report.json)")
        for shot in shots:
            if not (check and shot.below):
                click.echo(f"  {shot.show(report['threshold'])}", err=True)
    below = [shot for shot in shots if shot.below]
    return ConsistencyFailed(below, report["threshold"], result.session.project.file.name) if below else None


@main.command()
@drama_dir
@profile_option
@cache_option
@click.option("--json", "as_json", is_flag=True, help="The verdict as report.json's `consistency`.")
@episodes_option
@handles_errors
def check(directory: Path, profile: str, cache_dir: Path | None, as_json: bool, episodes: str | None) -> None:
    """Score each character's consistency from what the last build rendered, against the thresholds
    drama.toml sets now ([check] consistency). Renders nothing.

    Of a series, the season's verdict (series.toml's [check]), each character named after its
    episode (ep01/lu); of an episode folder or --episodes, those episodes' characters.

    \b
    Examples:
      fanren check examples/xianxia
      fanren check . --profile final --json | jq '.flagged'
      fanren check my-series/ep07                  one episode's characters

    Exit code 0 when no shot is below the threshold, 1 naming the shots that are, 2 when drama.toml
    sets no [check] consistency or a check is not built yet (run `fanren build` first).
    """
    from .build import open_session
    from .consistency import ConsistencyFailed, flagged, last_verdict

    session = open_session(directory, profile, cache_dir, project=_load_chosen(directory, episodes))
    report = last_verdict(session)
    if as_json:
        click.echo(json.dumps(report, ensure_ascii=False, indent=1))
    else:
        click.echo(f"{report['model']}, threshold {report['threshold']:g}, outliers at z ≤ -{report['outlier_z']:g}")
        for cid, character in report["characters"].items():
            lowest = min(character["shots"], key=lambda shot: shot["similarity"])
            pairwise = character["mean_pairwise"]
            click.echo(f"  {character['name']} ({cid}): {len(character['shots'])} shots, similarity to the sheet "
                       f"mean {character['mean_similarity']:.3f}, lowest {lowest['similarity']:.3f} "
                       f"({lowest['shot']})" + (f", between shots {pairwise:.3f}" if pairwise is not None else ""))
    shots = flagged(report)
    for shot in shots:
        if not shot.below:
            click.echo(f"  {shot.show(report['threshold'])}", err=True)
    below = [shot for shot in shots if shot.below]
    if below:
        raise ConsistencyFailed(below, report["threshold"], session.project.file.name)


def _load_chosen(directory: Path, episodes: str | None) -> Any:
    """The drama or series in DIRECTORY, with the --episodes chosen (a series only)."""
    from .series import Series, choose_episodes, load_drama

    drama = load_drama(directory)
    if episodes is None:
        return drama
    if not isinstance(drama, Series):
        raise UsageError(f"--episodes: {directory} is a single drama, not a series (no series.toml)")
    return choose_episodes(drama, episodes)


@main.command()
@drama_dir
@profile_option
@cache_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@episodes_option
@handles_errors
def status(directory: Path, profile: str, cache_dir: Path | None, as_json: bool, episodes: str | None) -> None:
    """Show what the next build would run, and the reason code for each node.

    \b
    Examples:
      fanren status examples/xianxia
      fanren status . --profile final --json | jq '.stale[].id'
      fanren status my-series --episodes ep07      one episode of a series (and the sheets it reads)

    \b
    Reason codes:
      new            never built (not in drama.lock, not in the cache)
      changed        its inputs, params or engine differ from drama.lock (see `fanren explain`)
      not-cached     same key as drama.lock, but the cache lost it (gc, corruption, new machine)
      input-changed  an input will re-render first; it may still be cached afterwards (early cutoff)

    With a remote cache, each stale node also says whether the remote holds it ("remote has it": the
    build pulls it instead of running it). A node behind inputs that will really run cannot be told
    until they have run.
    """
    from .build import open_session, selected_decisions
    from .remote import open_remote, remote_holdings

    _imported()

    session = open_session(directory, profile, cache_dir, project=_load_chosen(directory, episodes))
    decisions = selected_decisions(session)
    stale = [d for d in decisions if d.stale]
    remote = open_remote(session.project.cache.remote, session.project.file, read_only=True)
    held = remote_holdings(decisions, remote, session.root, session.cache) if remote else {}
    if as_json:
        click.echo(json.dumps({
            "profile": session.profile,
            "nodes": len(decisions),
            **({"remote": remote.url} if remote else {}),
            "stale": [{"id": d.node.id, "kind": d.node.kind, "engine": d.node.engine, "reason": d.reason,
                       **({"inputs": list(d.stale_inputs)} if d.stale_inputs else {}),
                       **({"remote": held[d.node.id]} if remote else {})} for d in stale],
        }, ensure_ascii=False, indent=1))
        return
    if not stale:
        click.echo(f"up to date: {len(decisions)} nodes, profile {session.profile}")
        return
    click.echo(f"{len(stale)} of {len(decisions)} nodes would run (profile {session.profile}):")
    for d in stale:
        detail = f" (after {', '.join(d.stale_inputs)})" if d.stale_inputs else ""
        where = ""
        if remote:
            where = {True: "  (remote has it)", False: "  (not in remote)",
                     None: "  (remote: cannot tell)"}[held[d.node.id]]
        click.echo(f"  {d.reason:<14} {d.node.id} [{d.node.engine}]{detail}{where}")


@main.command()
@click.argument("node")
@click.option("--dir", "-C", "directory", type=click.Path(file_okay=False, path_type=Path), default=".",
              help="The drama folder (default: the current directory).")
@profile_option
@cache_option
@handles_errors
def explain(node: str, directory: Path, profile: str, cache_dir: Path | None) -> None:
    """Explain why NODE would re-render: a field-level diff against drama.lock's key.

    \b
    Examples:
      fanren explain keyframe:s03
      fanren explain line:s03:0 -C examples/xianxia
      fanren explain ep03/keyframe:memory -C examples/series-xianxia
      fanren explain keyframe:memory -C examples/series-xianxia/ep03
    """
    from .build import open_session
    from .plan import explain as explain_node

    _imported()

    session = open_session(directory, profile, cache_dir)
    from .series import Series

    drama = session.project
    if (node not in session.graph and isinstance(drama, Series) and len(drama.selected) == 1
            and f"{drama.selected[0]}/{node}" in session.graph):  # -C an episode folder: ids within it
        node = f"{drama.selected[0]}/{node}"
    if node not in session.graph:
        from .project import did_you_mean

        hint = did_you_mean(node, list(session.graph.nodes)) or "see `fanren graph` for node ids"
        raise UsageError(f"no node {node!r} in this drama ({hint})")
    decision = session.decision(node)
    why = explain_node(decision, session.cache, session.root, session.lock.get(session.profile, {}),
                       {d.node.id: d for d in session.decisions})
    if not decision.stale:
        click.echo(f"{node} is up to date (key {decision.key})")
        return
    click.echo(f"{node} would run: {decision.reason}")
    if decision.stale_inputs:
        click.echo(f"  inputs that re-render first: {', '.join(decision.stale_inputs)}")
    if why.previous_key is None:
        click.echo("  no earlier build of this node is recorded in drama.lock")
    elif not why.previous_fields_known:
        click.echo(f"  drama.lock names key {why.previous_key}, whose record is no longer in the cache")
    elif not why.changes:
        click.echo("  its key fields equal drama.lock's; the cache no longer holds the result")
    for change in why.changes:
        click.echo(f"  {change.path}:")
        click.echo(f"    - {_short(change.before)}")
        click.echo(f"    + {_short(change.after)}")


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    return text if len(text) <= 200 else text[:197] + "..."


@main.command()
@drama_dir
@profile_option
@click.option("--format", "fmt", type=click.Choice(["dot", "mermaid"]), default="dot", show_default=True)
@handles_errors
def graph(directory: Path, profile: str, fmt: str) -> None:
    """Print the node graph as Graphviz dot or Mermaid.

    \b
    Example:
      fanren graph examples/xianxia | dot -Tsvg > graph.svg
    """
    from .build import selected_graph
    from .compile import compile_drama, resolve_engines
    from .series import load_drama

    drama = load_drama(directory)
    g = selected_graph(compile_drama(drama, resolve_engines(drama, profile)), drama)
    click.echo(g.to_dot() if fmt == "dot" else g.to_mermaid(), nl=False)


def _parse_size(text: str | None) -> int | None:
    if text is None:
        return None
    units = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    number = text.strip().lower().rstrip("b").rstrip("i")
    unit = number[-1] if number and number[-1] in units else ""
    try:
        return int(float(number[: len(number) - len(unit)]) * units[unit])
    except ValueError:
        raise UsageError(f"--max-size: expected a size like 500M or 20G, got {text!r}") from None


@main.command()
@drama_dir
@cache_option
@click.option("--max-size", help="Then evict cached results, cheapest to recompute first, down to this "
                                 "size (e.g. 20G).")
@handles_errors
def gc(directory: Path, cache_dir: Path | None, max_size: str | None) -> None:
    """Remove cached results that no drama using the cache reaches any more.

    A cache shared through --cache-dir keeps what every drama that builds into it reaches (their
    drama.toml and drama.lock, all profiles). gc waits for running builds to finish, and builds
    started meanwhile wait for gc.

    \b
    Example:
      fanren gc . --max-size 20G
    """
    from .build import cache_root
    from .cache import Cache
    from .gc import collect_garbage
    from .series import load_drama

    project = load_drama(directory)
    cache = Cache(cache_root(project.root, cache_dir))
    result, reached = collect_garbage(
        cache, project.root, _parse_size(max_size),
        on_wait=lambda: click.echo("builds are using this cache; gc waits for them to finish...", err=True))
    for note in reached.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(f"removed {result.records_removed} records and {result.objects_removed} objects "
               f"({result.bytes_freed / 1e6:.1f} MB); {result.bytes_kept / 1e6:.1f} MB kept "
               f"for {len(reached.dramas)} drama(s)")


@main.group()
def cache() -> None:
    """Look after the cache.

    \b
    Example:
      fanren cache verify my-drama     re-hash every object, drop the corrupt ones
      fanren cache push my-drama       upload what drama.lock names to the remote cache
    """


@cache.command()
@drama_dir
@click.option("--profile", "-p", "profiles", multiple=True,
              help="Push this profile's results (repeatable; default: every profile in drama.lock).")
@cache_option
@handles_errors
def push(directory: Path, profiles: tuple[str, ...], cache_dir: Path | None) -> None:
    """Upload what DIRECTORY's drama.lock resolved to, from the local cache to the remote cache.

    A build uploads the nodes it runs; this seeds the remote with results built before it was set
    up ([cache] remote in drama.toml or FANREN_REMOTE_CACHE). Every object is re-hashed first.

    \b
    Example:
      FANREN_REMOTE_CACHE=s3://team/fanren fanren cache push . --profile final
    """
    from .build import cache_root
    from .cache import Cache
    from .lockfile import read_lock
    from .remote import open_remote
    from .remote import push as push_records
    from .series import load_drama

    project = load_drama(directory)  # of a series: the one drama.lock at its root
    remote = open_remote(project.cache.remote, project.file)
    if remote is None:
        raise UsageError("no remote cache: set [cache] remote in drama.toml or FANREN_REMOTE_CACHE")
    store = Cache(cache_root(project.root, cache_dir))
    lock = read_lock(project.root)
    unknown = [p for p in profiles if p not in lock]
    if unknown:
        raise UsageError(f"drama.lock has no profile {unknown[0]!r} (it has: {', '.join(sorted(lock)) or 'none'})")
    keys = sorted({e.key for p in (profiles or tuple(lock)) for e in lock[p].values()})
    records = [r for r in (store.actions.get(k) for k in keys) if r is not None]
    result = push_records(store, records, remote)
    click.echo(f"pushed {result.records} of {len(keys)} results to {remote.url} ({result.objects} objects "
               f"uploaded; {len(keys) - len(records)} not in the local cache, {result.skipped} corrupt)")
    sys.exit(0 if remote.available else 1)


@cache.command()
@drama_dir
@cache_option
@handles_errors
def verify(directory: Path, cache_dir: Path | None) -> None:
    """Re-hash every cached object and drop the ones whose bytes no longer match their digest.

    A normal build checks an object's size on every use and its digest when its file stat changed;
    this reads every byte, so it also finds an object overwritten with its size and mtime restored.
    Records naming a dropped object are removed: the next build re-renders exactly those nodes.
    Exit code 1 when something corrupt was found (and removed), 0 when everything matched.

    \b
    Example:
      fanren cache verify . && fanren build .
    """
    import time

    from .build import cache_root
    from .cache import Cache

    root = cache_root(directory.resolve(), cache_dir)
    if not (root / "objects").is_dir():
        raise UsageError(f"no cache at {root} (build first, or name it with --cache-dir)")
    store = Cache(root)
    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.monotonic()
        if done == total or now - last[0] >= 1.0:
            last[0] = now
            click.echo(f"verified {done}/{total} objects", err=True)

    with store.exclusive(on_wait=lambda: click.echo("builds are using this cache; waiting for them to "
                                                    "finish...", err=True)):
        result = store.verify(progress)
    click.echo(f"checked {result.objects_checked} objects: {result.objects_removed} corrupt removed, "
               f"{result.records_removed} action records removed")
    sys.exit(1 if result.objects_removed else 0)


@main.command()
@handles_errors
def doctor() -> None:
    """Check this machine: ffmpeg, ffprobe, espeak-ng, a CJK font, the GPU, weights, engines.

    \b
    Example:
      fanren doctor      exit code 1 when something the draft profile needs is missing
    """
    from .doctor import checks

    ok = True
    for check in checks():
        mark = "ok " if check.ok else ("-- " if check.optional else "NO ")
        ok &= check.ok or check.optional
        click.echo(f"{mark} {check.name:<12} {check.detail}")
        if not check.ok and check.fix:
            click.echo(f"    fix: {check.fix}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
