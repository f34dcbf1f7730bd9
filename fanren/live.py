"""The live storyboard of `fanren watch`: what the page shows (Board) and the server that shows it.

The Board is a Reporter: the scheduler tells it which nodes are queued, running (with progress),
ran, cached or failed, and the watch loop tells it about invalid edits and finished builds. Every
change bumps a version; each page holds one Server-Sent Events stream and is sent the whole
state (a few kB) whenever the version moves, so a page that misses an event misses nothing.

What the server hands out, and nothing else:
    /                  the page
    /events            the state stream (SSE); /state the same state once, as JSON
    /objects/<digest>  a cache object, only while the board shows it (a keyframe thumbnail)
    /out/<path>        a file under the drama's out/ (the episode player), with byte ranges

It binds 127.0.0.1 by default, and then also refuses requests whose Host header names another
host, so a web page elsewhere cannot reach it by DNS rebinding.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from .build import BuildResult, Session
from .cache import Cache
from .graph import Node, local_id
from .run import CACHED, FAILED, RAN, SKIPPED, NodeResult

QUEUED, RUNNING = "queued", "running"
# A card shows the most pressing status among its shot's nodes.
CARD_PRECEDENCE = (FAILED, RUNNING, QUEUED, SKIPPED, RAN, CACHED)
SHOT_KINDS = ("keyframe", "clip", "line", "shot")
KEEPALIVE_SECONDS = 15.0
# Progress can tick every few ms; a client is sent at most one state per interval.
SEND_INTERVAL = 0.05
DIGEST = re.compile(r"[0-9a-f]{32}")
CONTENT_TYPES = {".mp4": "video/mp4", ".png": "image/png", ".jpg": "image/jpeg", ".html": "text/html",
                 ".json": "application/json", ".js": "text/javascript", ".srt": "text/plain",
                 ".ass": "text/plain"}
CHUNK = 1 << 16


def shot_of(node_id: str) -> str | None:
    """The shot a node belongs to (keyframe:s1, clip:s1, line:s1:0, shot:s1 → s1), else None."""
    kind, _, rest = node_id.partition(":")
    if kind not in SHOT_KINDS or not rest:
        return None
    return rest.rpartition(":")[0] if kind == "line" else rest


@dataclass
class NodeState:
    status: str
    progress: float | None = None
    message: str = ""


@dataclass(frozen=True)
class Card:
    """What a shot's card says: the words of drama.toml, nothing rendered."""

    shot: str
    scene: str
    action: str
    camera: str
    said: tuple[tuple[str, str], ...]   # (who, text); the narration first, who = ""


@dataclass
class Board:
    """The state of the page. Thread-safe: the scheduler's workers and the watch loop both write."""

    title: str = ""
    profile: str = ""
    language: str = "en"
    cards: list[Card] = field(default_factory=list)
    nodes: dict[str, NodeState] = field(default_factory=dict)
    keyframes: dict[str, str] = field(default_factory=dict)     # shot → digest of its image.png
    episode: str | None = None                                   # digest of the exported episode.mp4
    error: str | None = None
    building: bool = False
    summary: str = ""
    cache: Cache | None = None
    version: int = 0
    shown: str = ""  # of a series: "<episode>/", the episode the page shows (its nodes and the sheets)
    _changed: threading.Condition = field(default_factory=threading.Condition)

    # ── the watch loop ──────────────────────────────────────────────────────

    def show_session(self, session: Session) -> None:
        """A new plan: cards from the drama, fresh nodes cached, stale ones queued."""
        from .series import Series

        drama = session.project
        if isinstance(drama, Series):  # the watched episode, or the series' first one
            self.shown = f"{drama.selected[0]}/"
            project = drama.episodes[drama.selected[0]]
        else:
            self.shown, project = "", drama
        names = {cid: c.name or cid for cid, c in project.characters.items()}
        with self._changed:
            self.title = project.drama.title
            self.language = project.drama.language
            self.profile = session.profile
            self.cache = session.cache
            self.cards = [Card(shot.id, scene.id, shot.action, shot.camera,
                               ((("", shot.narration),) if shot.narration.strip() else ())
                               + tuple((names.get(line.who, line.who), line.text) for line in shot.lines))
                          for scene, shot in project.shots()]
            self.nodes = {mine: NodeState(QUEUED if d.stale else CACHED) for d in session.decisions
                          if (mine := self._mine(d.node.id)) is not None}
            shots = {card.shot for card in self.cards}
            # A stale keyframe keeps showing its last picture (dimmed) until the new one is made.
            self.keyframes = {shot: digest for shot, digest in self.keyframes.items() if shot in shots}
            for decision in session.decisions:
                if (decision.node.kind == "keyframe" and decision.record is not None
                        and self._mine(decision.node.id) is not None):
                    self._keep_keyframe(decision.node, decision.record.outputs)
            self.building = any(d.stale for d in session.decisions)
            self.summary = "building" if self.building else "up to date"
            self._bump()

    def show_built(self, result: BuildResult, cancelled: bool) -> None:
        episode = result.results.get(self.shown + "episode")
        with self._changed:
            self.building = False
            self.error = None
            if episode is not None and episode.record is not None and "episode.mp4" in episode.record.outputs:
                self.episode = episode.record.outputs["episode.mp4"].digest
            counts = {s: result.count(s) for s in (RAN, CACHED, SKIPPED, FAILED)}
            parts = [f"{n} {s}" for s, n in counts.items() if n]
            self.summary = ("cancelled by a newer edit: " if cancelled else "") + \
                f"{len(result.results)} nodes ({', '.join(parts)}) in {result.seconds:.1f} s"
            self._bump()

    def show_error(self, message: str) -> None:
        """An edit that cannot build: the message `fanren build` prints, over the last good state."""
        with self._changed:
            self.error = message
            self.building = False
            for state in self.nodes.values():
                if state.status in (QUEUED, RUNNING):
                    state.status, state.progress = SKIPPED, None
            self._bump()

    # ── the scheduler (the Reporter protocol) ───────────────────────────────

    def begin(self, stale: list[Node], estimates: Mapping[str, float]) -> None:
        with self._changed:
            for node in stale:
                if (mine := self._mine(node.id)) is not None:
                    self.nodes[mine] = NodeState(QUEUED)
            self.building = True
            self._bump()

    def start(self, node: Node) -> None:
        with self._changed:
            if (mine := self._mine(node.id)) is not None:
                self.nodes[mine] = NodeState(RUNNING, 0.0)
            self._bump()

    def progress(self, node: Node, fraction: float, message: str) -> None:
        with self._changed:
            if (mine := self._mine(node.id)) is not None:
                self.nodes[mine] = NodeState(RUNNING, min(max(fraction, 0.0), 1.0), message)
            self._bump()

    def finish(self, result: NodeResult) -> None:
        with self._changed:
            if (mine := self._mine(result.node.id)) is None:
                return
            self.nodes[mine] = NodeState(result.status, message=result.error or "")
            if result.node.kind == "keyframe" and result.record is not None:
                self._keep_keyframe(result.node, result.record.outputs)
            self._bump()

    def end(self) -> None:
        return None

    # ── the server ──────────────────────────────────────────────────────────

    def object_file(self, digest: str) -> Path | None:
        """A cache object's file, only if the board shows it right now."""
        with self._changed:
            if self.cache is None or digest not in self.keyframes.values():
                return None
            return self.cache.object_path(digest)

    def snapshot(self) -> dict[str, Any]:
        with self._changed:
            return self._snapshot()

    def wait(self, seen: int, timeout: float) -> tuple[int, dict[str, Any] | None]:
        """The state once its version differs from `seen`; None after `timeout` without a change."""
        with self._changed:
            if not self._changed.wait_for(lambda: self.version != seen, timeout=timeout):
                return seen, None
            return self.version, self._snapshot()

    def wake(self) -> None:
        """Let every waiting stream re-check (the server is closing)."""
        with self._changed:
            self._changed.notify_all()

    # ── inside ──────────────────────────────────────────────────────────────

    def _mine(self, node_id: str) -> str | None:
        """The id the page knows a node by: its id within the shown episode; None for a node of
        another episode of the series."""
        if "/" not in node_id:
            return node_id
        return node_id[len(self.shown):] if self.shown and node_id.startswith(self.shown) else None

    def _keep_keyframe(self, node: Node, outputs: Mapping[str, Any]) -> None:
        shot = shot_of(local_id(node.id))
        if shot is not None and "image.png" in outputs:
            self.keyframes[shot] = outputs["image.png"].digest

    def _bump(self) -> None:
        self.version += 1
        self._changed.notify_all()

    def _snapshot(self) -> dict[str, Any]:
        by_shot: dict[str, list[tuple[str, NodeState]]] = {card.shot: [] for card in self.cards}
        others: list[dict[str, Any]] = []
        for node_id, state in self.nodes.items():
            shot = shot_of(node_id)
            if shot in by_shot:
                by_shot[shot].append((node_id, state))
            else:
                others.append({"id": node_id, "status": state.status})
        return {
            "version": self.version,
            "title": self.title,
            "profile": self.profile,
            "language": self.language,
            "labels": _labels(self.language),
            "building": self.building,
            "summary": self.summary,
            "error": self.error,
            "episode": ({"digest": self.episode,
                         "url": f"/out/{self.profile}/{self.shown}episode.mp4?v={self.episode[:16]}"}
                        if self.episode else None),
            "shots": [self._card(card, by_shot[card.shot]) for card in self.cards],
            "others": others,
        }

    def _card(self, card: Card, nodes: list[tuple[str, NodeState]]) -> dict[str, Any]:
        statuses = {state.status for _, state in nodes}
        status = next((s for s in CARD_PRECEDENCE if s in statuses), CACHED)
        running = [(node_id, state) for node_id, state in nodes if state.status == RUNNING]
        keyframe = self.keyframes.get(card.shot)
        keyframe_state = self.nodes.get(f"keyframe:{card.shot}")
        return {
            "id": card.shot,
            "scene": card.scene,
            "action": card.action,
            "camera": card.camera,
            "said": [{"who": who, "text": text} for who, text in card.said],
            "status": status,
            "running": [{"id": node_id, "progress": state.progress, "message": state.message}
                        for node_id, state in running],
            "nodes": [{"id": node_id, "status": state.status, **({"error": state.message}
                                                                   if state.status == FAILED else {})}
                      for node_id, state in nodes],
            "keyframe": f"/objects/{keyframe}" if keyframe else None,
            "keyframe_stale": keyframe_state is not None and keyframe_state.status in (QUEUED, RUNNING),
        }


def _labels(language: str) -> dict[str, str]:
    """The storyboard's words for the card's headings, in the drama's language."""
    from .engines.storyboard import LABELS

    return dict(LABELS.get(language, LABELS["en"]))


# ── the server ───────────────────────────────────────────────────────────────


class LiveServer(ThreadingHTTPServer):
    """The page, its event stream, the board's thumbnails and the drama's out/ folder."""

    daemon_threads = True  # an open event stream must not keep the process alive

    def __init__(self, board: Board, root: Path, host: str = "127.0.0.1", port: int = 0) -> None:
        self.board = board
        self.root = Path(root).resolve()
        self.out_dir = self.root / "out"
        self.closing = False
        super().__init__((host, port), _Handler)
        self.host = host
        self.port: int = self.server_address[1]
        loopback = host in ("127.0.0.1", "localhost", "::1")
        self.allowed_hosts = ({f"127.0.0.1:{self.port}", f"localhost:{self.port}", f"[::1]:{self.port}"}
                              if loopback else None)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def start(self) -> threading.Thread:
        # a short poll: close() waits for the serving loop to notice
        thread = threading.Thread(target=self.serve_forever, args=(0.1,), name="fanren-live", daemon=True)
        thread.start()
        return thread

    def close(self) -> None:
        self.closing = True
        self.board.wake()
        self.shutdown()
        self.server_close()

    def out_file(self, relative: str) -> Path | None:
        """A regular file inside out/, after decoding and resolving links; None for anything else."""
        if not relative or "\x00" in relative or "\\" in relative:
            return None
        try:
            # out/ itself is resolved on every request: a symbolic link out of the drama folder
            # (made after the server started, too) serves nothing, as a build refuses to write there
            out_dir = self.out_dir.resolve()
            path = (out_dir / relative).resolve()
        except (OSError, RuntimeError):
            return None
        if not out_dir.is_relative_to(self.root) or not path.is_relative_to(out_dir) or not path.is_file():
            return None
        return path


class _Handler(BaseHTTPRequestHandler):
    server: LiveServer
    protocol_version = "HTTP/1.1"
    server_version = "fanren-live"

    def log_message(self, format: str, *args: Any) -> None:
        return None  # the terminal shows builds, not requests

    def do_HEAD(self) -> None:
        self._route(body=False)

    def do_GET(self) -> None:
        self._route(body=True)

    def _route(self, body: bool) -> None:
        allowed = self.server.allowed_hosts
        if allowed is not None and self.headers.get("Host") not in allowed:
            self._plain(HTTPStatus.FORBIDDEN, "this server answers to 127.0.0.1 and localhost only", body)
            return
        path = unquote(urlsplit(self.path).path)
        if path == "/":
            self._bytes(HTTPStatus.OK, PAGE.encode("utf-8"), "text/html; charset=utf-8", body)
        elif path == "/state":
            data = json.dumps(self.server.board.snapshot(), ensure_ascii=False).encode("utf-8")
            self._bytes(HTTPStatus.OK, data, "application/json", body)
        elif path == "/events" and body:
            self._events()
        elif path.startswith("/objects/") and DIGEST.fullmatch(path[len("/objects/"):]):
            file = self.server.board.object_file(path[len("/objects/"):])
            if file is None or not file.is_file():
                self._plain(HTTPStatus.NOT_FOUND, "not found", body)
            else:
                # Objects never change: a digest names its bytes.
                self._file(file, "image/png", body, cache="public, max-age=31536000, immutable")
        elif path.startswith("/out/") and (file := self.server.out_file(path[len("/out/"):])) is not None:
            self._file(file, CONTENT_TYPES.get(file.suffix, "application/octet-stream"), body, cache="no-cache")
        else:
            self._plain(HTTPStatus.NOT_FOUND, "not found", body)

    def _events(self) -> None:
        self.close_connection = True
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")
        self.end_headers()
        seen = -1
        try:
            while not self.server.closing:
                seen, state = self.server.board.wait(seen, KEEPALIVE_SECONDS)
                if self.server.closing:
                    return
                if state is None:
                    self.wfile.write(b": keepalive\n\n")
                else:
                    self.wfile.write(b"data: " + json.dumps(state, ensure_ascii=False).encode("utf-8")
                                     + b"\n\n")
                self.wfile.flush()
                time.sleep(SEND_INTERVAL)
        except (BrokenPipeError, ConnectionResetError):
            return

    def _file(self, file: Path, content_type: str, body: bool, cache: str) -> None:
        try:
            handle = open(file, "rb")  # noqa: SIM115 - closed by the `with` below; a miss is a 404
        except OSError:
            self._plain(HTTPStatus.NOT_FOUND, "not found", body)
            return
        with handle:
            size = os.fstat(handle.fileno()).st_size  # the file opened, even if replaced since
            try:
                span = byte_range(self.headers.get("Range"), size)
            except Unsatisfiable:
                self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
                self.send_header("Content-Range", f"bytes */{size}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start, end = span if span is not None else (0, size - 1)
            self.send_response(HTTPStatus.PARTIAL_CONTENT if span is not None else HTTPStatus.OK)
            if span is not None:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(end - start + 1))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Cache-Control", cache)
            self.end_headers()
            if not body:
                return
            handle.seek(start)
            left = end - start + 1
            try:
                while left > 0 and (chunk := handle.read(min(CHUNK, left))):
                    self.wfile.write(chunk)
                    left -= len(chunk)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the player seeks by dropping a request mid-way

    def _bytes(self, status: HTTPStatus, data: bytes, content_type: str, body: bool) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        if body:
            self.wfile.write(data)

    def _plain(self, status: HTTPStatus, text: str, body: bool) -> None:
        self._bytes(status, (text + "\n").encode("utf-8"), "text/plain; charset=utf-8", body)


class Unsatisfiable(ValueError):
    """A byte range that starts past the end of the file (HTTP 416)."""


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The one byte range a Range header asks for, inclusive; None for the whole file.

    Several ranges are answered with the whole file, which the HTTP spec allows and no <video>
    element asks for.
    """
    if header is None:
        return None
    match = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:                      # bytes=-N: the last N bytes
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise Unsatisfiable(header)
        return max(0, size - suffix), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or (last and int(last) < start):
        raise Unsatisfiable(header)
    return start, end


# ── the page ─────────────────────────────────────────────────────────────────


def _static(name: str) -> str:
    """A file of the page, shipped in the package (fanren/static/) like any other data file."""
    return (resources.files("fanren") / "static" / name).read_text(encoding="utf-8")


def _page() -> str:
    # The storyboard's look, so the live page and storyboard.html read as one thing.
    from .engines.storyboard import STYLE

    return PAGE_TEMPLATE.replace("/*STORYBOARD_STYLE*/", STYLE).replace("/*LIVE_STYLE*/", LIVE_STYLE) \
        .replace("/*LIVE_SCRIPT*/", LIVE_SCRIPT)


# The page's markup, style and script: fanren/static/live.html, live.css and live.js.
LIVE_STYLE = _static("live.css")
LIVE_SCRIPT = _static("live.js")
PAGE_TEMPLATE = _static("live.html")

PAGE = _page()
