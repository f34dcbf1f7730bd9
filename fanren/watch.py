"""`fanren watch`: rebuild on save with the engines kept loaded, and the live storyboard on localhost.

    save ──watchdog──▶ changed paths ──debounce──▶ load + plan ──▶ build (stale nodes only) ──▶ out/
                                 ▲                                     │
                                 └──── a newer save cancels it ◀───────┘ (at a node boundary)

- Watched: drama.toml, refs/, templates/, a file an engine option names (a ComfyUI workflow) and
  any other file a node reads (music, a voice's prompt wav). Not watched: out/, the cache, drama.lock — the build writes those, and watching them would
  rebuild forever.
- One EnginePool lives as long as the session, so the second edit that touches a keyframe finds
  the image model still loaded. It is emptied after `release_after` idle seconds, and replaced when
  an edit changes the profile's engines.
- An edit that does not load or compile changes nothing on disk (build raises before writing):
  out/ keeps the last good episode, the message is the one `fanren build` prints, and the page
  shows it as a banner until a later save builds.
- A save during a build cancels it: queued nodes are dropped, running ones finish and are committed
  (a commit is atomic, so nothing half-made enters the cache), then the new plan starts.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import click
from watchdog.events import (
    EVENT_TYPE_CLOSED,
    EVENT_TYPE_CREATED,
    EVENT_TYPE_DELETED,
    EVENT_TYPE_MODIFIED,
    EVENT_TYPE_MOVED,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch

from .build import BuildResult, build, open_session
from .compile import Engines, resolve_engines
from .errors import BuildFailed, FanrenError, UsageError
from .graph import Node
from .live import Board, LiveServer
from .project import DRAMA_FILE, Project
from .run import SKIPPED, EnginePool, NodeResult, Reporter
from .series import SERIES_FILE, Series, load_drama, series_root
from .text import escape_controls

WATCHED_DIRS = ("refs", "templates")
# Written by builds, never read by one.
IGNORED_DIRS = ("out", ".fanren-cache", ".git")
# Events that mean content may have changed; opened/closed-without-write come from our own reads.
CONTENT_EVENTS = (EVENT_TYPE_CREATED, EVENT_TYPE_MODIFIED, EVENT_TYPE_MOVED, EVENT_TYPE_DELETED,
                  EVENT_TYPE_CLOSED)
DEBOUNCE_SECONDS = 0.1      # editors write a file twice within a few ms (truncate, then write)
RELEASE_AFTER_SECONDS = 600.0
# Outcomes kept for tests and tools. Each holds a whole build's results (about 0.8 MB for the
# 69 nodes of examples/xianxia), so keeping them all grew a long session without bound.
HISTORY = 16


def is_scratch(name: str) -> bool:
    """Editors' scratch files, which never hold a drama's content."""
    # vim probes whether it may write a directory by creating a file named 4913
    return name.startswith(".") or name.endswith(("~", ".swp", ".swx", ".tmp")) or name == "4913"


@dataclass(frozen=True)
class Outcome:
    """One rebuild: what started it and how it ended (a result, or the error it raised)."""

    trigger: tuple[str, ...]          # drama-relative paths that changed; () for the first build
    result: BuildResult | None
    error: FanrenError | None
    cancelled: bool
    # time.monotonic() when the first save of the burst was seen, and when the plan was known
    noticed_at: float
    planned_at: float


class _Reporters:
    """Tell every reporter: the page's board, the terminal, a bench's stopwatch."""

    def __init__(self, reporters: Iterable[Reporter]) -> None:
        self.reporters = list(reporters)

    def begin(self, stale: list[Node], estimates: Mapping[str, float]) -> None:
        for r in self.reporters:
            r.begin(stale, estimates)

    def start(self, node: Node) -> None:
        for r in self.reporters:
            r.start(node)

    def progress(self, node: Node, fraction: float, message: str) -> None:
        for r in self.reporters:
            r.progress(node, fraction, message)

    def finish(self, result: NodeResult) -> None:
        for r in self.reporters:
            r.finish(result)

    def end(self) -> None:
        for r in self.reporters:
            r.end()


class WatchSession:
    """Watches one drama folder and rebuilds it on every save until stop() is called.

    `start()` runs the rebuild loop in a background thread; `say` receives what a terminal should
    show (text, is_error).
    """

    def __init__(self, root: Path, profile: str = "draft", cache_dir: Path | None = None, jobs: int = 2,
                 debounce: float = DEBOUNCE_SECONDS, release_after: float | None = RELEASE_AFTER_SECONDS,
                 reporters: Iterable[Reporter] = (), say: Callable[[str, bool], None] | None = None) -> None:
        self.directory = Path(root).resolve()  # what was asked for: a drama, a series or an episode
        self.root = series_root(self.directory) or self.directory  # where drama.lock and out/ live
        self.profile = profile
        self.cache_dir = cache_dir
        self.jobs = jobs
        self.debounce = debounce
        self.release_after = release_after
        self.board = Board()
        self.reporters = [self.board, *reporters]
        self.say = say or (lambda text, error: None)
        self.engines: Engines | None = None
        self.pool: EnginePool | None = None
        self.outcomes: deque[Outcome] = deque(maxlen=HISTORY)   # the latest last
        self.rebuilds = 0
        self.releases = 0
        self._changes: set[str] = set()
        self._first_change = 0.0
        self._last_change = 0.0
        self._wake = threading.Condition()
        self._stopping = False
        self._warm = False
        self._idle_since = time.monotonic()
        self._observer: BaseObserver | None = None
        self._watches: dict[Path, ObservedWatch] = {}
        self._sources: set[str] = set()
        self._loop: threading.Thread | None = None
        self.crash: BaseException | None = None   # what ended the rebuild loop, if not stop()

    # ── lifecycle ───────────────────────────────────────────────────────────

    def start(self) -> None:
        """Watch and rebuild in background threads; the first build starts at once."""
        self.watch()
        self._loop = threading.Thread(target=self.run, name="fanren-watch", daemon=True)
        self._loop.start()

    def watch(self) -> None:
        self._observer = Observer()
        self._observer.start()
        self._sync_watches()

    def run(self) -> None:
        """Build, then rebuild after every burst of saves, until stop()."""
        try:
            self.rebuild((), time.monotonic())
            while (change := self._next_change()) is not None:
                self.rebuild(*change)
        except BaseException as exc:  # a bug, not an edit: wait() raises it where it can be seen
            self.crash = exc
            raise

    def stop(self) -> None:
        """Cancel the build in progress, stop watching and release the engines."""
        with self._wake:
            self._stopping = True
            self._wake.notify_all()
        if self._loop is not None and self._loop is not threading.current_thread():
            self._loop.join()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join()
        if self.pool is not None:
            self.pool.unload_all()

    def wait(self) -> None:
        """Until the rebuild loop ends; a Ctrl-C lands here, never inside a build."""
        while self._loop is not None and self.alive:
            self._loop.join(timeout=0.5)
        if self.crash is not None:
            raise self.crash

    @property
    def alive(self) -> bool:
        return self._loop is not None and self._loop.is_alive()

    def change_pending(self) -> bool:
        """A save arrived that the current (or last) build has not seen: it is, or will be, cancelled."""
        return bool(self._changes) or self._stopping

    # ── saves ───────────────────────────────────────────────────────────────

    def notice(self, path: Path) -> None:
        """Called from the observer thread for every changed path; keeps only the drama's inputs."""
        relative = self._relevant(path)
        if relative is None:
            return
        with self._wake:
            if not self._changes:
                self._first_change = time.monotonic()
            self._changes.add(relative)
            self._last_change = time.monotonic()
            self._wake.notify_all()

    def _relevant(self, path: Path) -> str | None:
        try:
            parts = path.relative_to(self.root).parts
        except ValueError:
            return None
        if not parts or parts[0] in IGNORED_DIRS or is_scratch(parts[-1]):
            return None
        relative = "/".join(parts)
        if relative in (DRAMA_FILE, SERIES_FILE) or parts[0] in WATCHED_DIRS or relative in self._sources:
            return relative
        # an episode of a series: its drama.toml, refs/ and templates/
        if (self.root / SERIES_FILE).is_file() and len(parts) > 1 and (
                parts[1:] == (DRAMA_FILE,) or parts[1] in WATCHED_DIRS):
            return relative
        return None

    def _next_change(self) -> tuple[tuple[str, ...], float] | None:
        """Wait for a save, then for `debounce` seconds of quiet; releases idle engines meanwhile."""
        with self._wake:
            while not self._changes and not self._stopping:
                if not self._wake.wait(timeout=self._until_release()):
                    self._release_if_idle()
            while not self._stopping and (quiet := time.monotonic() - self._last_change) < self.debounce:
                self._wake.wait(self.debounce - quiet)
            if self._stopping:
                return None
            trigger = tuple(sorted(self._changes))
            self._changes.clear()
            return trigger, self._first_change

    def _until_release(self) -> float | None:
        if not self._warm or self.release_after is None:
            return None
        return max(0.0, self._idle_since + self.release_after - time.monotonic())

    def _release_if_idle(self) -> None:
        if self._warm and self.pool is not None and self._until_release() == 0.0:
            self.pool.unload_all()
            self._warm = False
            self.releases += 1
            self.say(f"released the engines after {self.release_after:.0f} s idle", False)

    # ── rebuilding ──────────────────────────────────────────────────────────

    def rebuild(self, trigger: tuple[str, ...], noticed_at: float) -> Outcome:
        """Load, plan and build once; an error is shown (terminal and page), never raised."""
        if trigger:
            self.say(f"changed: {', '.join(trigger)}", False)
        self._sync_watches()  # before reading: a file saved while we read is seen next time
        try:
            project = load_drama(self.directory)
            engines = self._engines_for(project)
            session = open_session(self.root, self.profile, self.cache_dir, project=project, engines=engines)
        except FanrenError as exc:
            return self._failed(trigger, exc, noticed_at, time.monotonic())
        planned_at = time.monotonic()
        self._sources = {s for node in session.graph.topological() for s in node.sources} | \
            engine_files(engines, self.root)
        self._sync_watches()
        self.board.show_session(session)
        assert self.pool is not None
        if any(d.stale for d in session.decisions):
            self._warm = True
        try:
            result = build(self.root, self.profile, self.cache_dir, jobs=self.jobs, keep_going=True,
                           reporter=_Reporters(self.reporters), pool=self.pool, project=project,
                           engines=engines, cancelled=self.change_pending, session=session,
                           on_wait=lambda: self.say("another build of this drama is running; waiting "
                                                    "for it to finish...", True))
        except FanrenError as exc:  # BuildFailed, or a DramaError found while compiling templates
            return self._failed(trigger, exc, noticed_at, planned_at)
        finally:
            self._idle_since = time.monotonic()
        cancelled = self.change_pending() and any(r.status == SKIPPED for r in result.results.values())
        self.board.show_built(result, cancelled)
        outcome = Outcome(trigger, result, None, cancelled, noticed_at, planned_at)
        self._record(outcome)
        if cancelled:
            self.say("stopped: the nodes that were running finished, the rest is dropped" if self._stopping
                     else "a newer save arrived: the rest of this build is dropped", False)
        else:
            ran, cached = result.count("ran"), result.count("cached")
            self.say(f"built {len(result.results)} nodes ({ran} ran, {cached} cached) in "
                     f"{result.seconds:.1f} s", False)
        return outcome

    def _failed(self, trigger: tuple[str, ...], exc: FanrenError, noticed_at: float,
                planned_at: float) -> Outcome:
        message = escape_controls(exc.show())
        self.board.show_error(message)  # on the page by the time the terminal says it
        self.say(message, True)
        if not isinstance(exc, BuildFailed):
            self.say("the last good build stays in out/; save again to retry", True)
        outcome = Outcome(trigger, None, exc, False, noticed_at, planned_at)
        self._record(outcome)
        return outcome

    def _record(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)
        self.rebuilds += 1

    def _engines_for(self, project: Project | Series) -> Engines:
        """The session's engines, unless this edit changed what the profile renders with."""
        fresh = resolve_engines(project, self.profile)
        if self.engines is not None and _same_engines(self.engines, fresh):
            return self.engines
        if self.pool is not None:
            self.pool.unload_all()
            self._warm = False
        self.engines, self.pool = fresh, EnginePool(fresh.by_family())
        return fresh

    # ── watches ─────────────────────────────────────────────────────────────

    def _sync_watches(self) -> None:
        """Watch the root (not its subfolders), refs/ and templates/, and the folders of other sources."""
        if self._observer is None:
            return
        wanted: dict[Path, bool] = {self.root: False}
        folders = [self.root]
        if (self.root / SERIES_FILE).is_file():  # and every episode folder of the series
            folders += [p for p in sorted(self.root.iterdir()) if (p / DRAMA_FILE).is_file()]
        for folder in folders:
            wanted[folder] = False
            for name in WATCHED_DIRS:
                if (folder / name).is_dir():
                    wanted[folder / name] = True
        for source in self._sources:
            folder = (self.root / source).parent
            if folder.is_dir() and not any(folder.is_relative_to(d) for d, deep in wanted.items() if deep):
                wanted.setdefault(folder, False)
        handler = _Events(self)
        for folder in list(self._watches):
            if folder not in wanted:
                self._observer.unschedule(self._watches.pop(folder))
        for folder, recursive in wanted.items():
            if folder not in self._watches:
                self._watches[folder] = self._observer.schedule(handler, str(folder), recursive=recursive)


class _Events(FileSystemEventHandler):
    def __init__(self, session: WatchSession) -> None:
        self.session = session

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in CONTENT_EVENTS:
            return
        paths = [event.src_path, *([event.dest_path] if event.dest_path else [])]
        for raw in paths:
            path = Path(raw if isinstance(raw, str) else raw.decode())
            # A directory counts only when it is refs/ or templates/ appearing: the rebuild it
            # starts watches into it. Others change whenever a file in them does.
            if not event.is_directory or (event.event_type in (EVENT_TYPE_CREATED, EVENT_TYPE_MOVED)
                                          and path.parent == self.session.root and path.name in WATCHED_DIRS):
                self.session.notice(path)


def engine_files(engines: Engines, root: Path) -> set[str]:
    """The drama files the profile's engines read (a ComfyUI workflow), relative to `root`: a save
    of one resolves the engines again, and a new identity re-renders what they made."""
    found = set()
    for engine in engines.by_family().values():
        for name in engine.file_options & set(engine.options):
            path = Path(engine.options[name])
            if path.is_relative_to(root):
                found.add(path.relative_to(root).as_posix())
    return found


def _same_engines(old: Engines, new: Engines) -> bool:
    before, after = old.by_family(), new.by_family()
    return before.keys() == after.keys() and all(  # a [check] added or removed is another set of engines
        type(before[f]) is type(after[f]) and before[f].identity() == after[f].identity() for f in before)


# ── the command ──────────────────────────────────────────────────────────────


@click.command("watch")
@click.argument("directory", required=False, default=".",
                type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--profile", "-p", default="draft", show_default=True,
              help="Which engines render: draft (CPU, seconds), final (GPU models), smoke, or a "
                   "[profiles.NAME] of drama.toml.")
@click.option("--port", type=click.IntRange(0, 65535), default=8765, show_default=True,
              help="Port of the live storyboard (0: any free port).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to serve on. Anything but 127.0.0.1 shows your drama to the network.")
@click.option("--open", "open_browser", is_flag=True, help="Open the live storyboard in a browser.")
@click.option("--debounce", type=click.IntRange(0, 10_000), default=int(DEBOUNCE_SECONDS * 1000),
              show_default=True, help="Milliseconds of quiet after a save before rebuilding.")
@click.option("--release-after", type=click.IntRange(1), default=int(RELEASE_AFTER_SECONDS),
              show_default=True, help="Seconds without a build after which loaded models are released.")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=2, show_default=True,
              help="CPU nodes (speech, mux) run at once.")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), envvar="FANREN_CACHE_DIR",
              help="Where the cache lives (default: DIRECTORY/.fanren-cache; env FANREN_CACHE_DIR).")
def watch_command(directory: Path, profile: str, port: int, host: str, open_browser: bool, debounce: int,
                  release_after: int, jobs: int, cache_dir: Path | None) -> None:
    """Rebuild DIRECTORY on every save, with models kept loaded, and show it live in a browser.

    \b
    Examples:
      fanren watch examples/xianxia --open
      fanren watch . --profile final --port 9000

    Watches drama.toml, refs/ and templates/; of a series, series.toml and every episode's
    drama.toml, refs/ and templates/ (an episode folder: the page shows that episode). The page at http://127.0.0.1:8765/ shows each shot's
    card (keyframe, text, status), the episode and any error, and updates without reloading.
    Stop with Ctrl-C.
    """
    from .progress import make_reporter

    def say(text: str, error: bool) -> None:
        click.echo(escape_controls(text), err=error)  # file names too: an ESC in one is not for the terminal

    session = WatchSession(directory, profile, cache_dir, jobs, debounce / 1000, float(release_after),
                           reporters=[make_reporter()], say=say)
    try:
        server = LiveServer(session.board, session.root, host, port)
    except OSError as exc:
        from .cli import fail

        fail(UsageError(f"cannot serve on {host}:{port} ({exc.strerror}); pick another with --port"))
    server.start()
    click.echo(f"watching {session.root} (profile {profile}); live storyboard at {server.url}")
    if open_browser:
        import webbrowser

        webbrowser.open(server.url)
    session.start()
    try:
        session.wait()
    except KeyboardInterrupt:
        click.echo("stopping: running nodes finish first", err=True)
    finally:
        session.stop()
        server.close()
