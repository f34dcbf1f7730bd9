"""The live storyboard: what the server hands out (and refuses), and the page in headless Chromium."""

from __future__ import annotations

import http.client
import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_watch import S1_ACTION, digest_of, edit, statuses, wait_outcomes

from fanren.build import open_session
from fanren.live import Board, LiveServer, Unsatisfiable, byte_range, shot_of
from fanren.media import probe
from fanren.watch import WatchSession

CHROMIUM = Path("/usr/bin/chromium")
@pytest.mark.parametrize("when", ["before", "after"])
def test_an_out_folder_linked_out_of_the_drama_serves_nothing(small_drama: Path, tmp_path: Path,
                                                              when: str) -> None:
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "draft").mkdir(parents=True)
    (elsewhere / "secret.txt").write_text("secret", encoding="utf-8")
    (elsewhere / "draft" / "report.json").write_text('{"secret": 1}', encoding="utf-8")
    shutil.rmtree(small_drama / "out")
    if when == "before":
        (small_drama / "out").symlink_to(elsewhere)
    server = LiveServer(Board(), small_drama)
    server.start()
    try:
        if when == "after":
            (small_drama / "out").symlink_to(elsewhere)
        for path in ["/out/secret.txt", "/out/draft/report.json"]:
            status, _, body = get(server, path)
            assert (path, status) == (path, 404)
            assert b"secret" not in body
    finally:
        server.close()


CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


@pytest.fixture
def served(small_drama: Path) -> Iterator[tuple[LiveServer, Board, Path]]:
    """The server over a board that shows the built small drama (no watch loop)."""
    board = Board()
    board.show_session(open_session(small_drama))
    server = LiveServer(board, small_drama)
    server.start()
    yield server, board, small_drama
    server.close()


def get(server: LiveServer, path: str, headers: dict[str, str] | None = None,
        method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """One request with `path` sent exactly as given (no client-side normalisation)."""
    connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        connection.putheader("Host", f"127.0.0.1:{server.port}")
        for name, value in (headers or {}).items():
            connection.putheader(name, value)
        connection.endheaders()
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def test_page_state_and_thumbnails(served: tuple[LiveServer, Board, Path]) -> None:
    server, _, drama = served
    status, headers, body = get(server, "/")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert b'new EventSource("/events")' in body

    status, _, body = get(server, "/state")
    state = json.loads(body)
    assert status == 200
    assert [(s["id"], s["status"]) for s in state["shots"]] == [("s1", "cached"), ("s2", "cached"),
                                                                 ("s3", "cached")]
    assert state["shots"][1]["said"] == [{"who": "", "text": "长老拦住了她。"},
                                         {"who": "白长老", "text": "你为何而来？"}]
    session = open_session(drama)
    keyframe = session.decision("keyframe:s1").record
    assert keyframe is not None
    digest = keyframe.outputs["image.png"].digest
    assert state["shots"][0]["keyframe"] == f"/objects/{digest}"

    status, headers, body = get(server, f"/objects/{digest}")
    assert status == 200 and headers["Content-Type"] == "image/png"
    assert body == session.cache.object_path(digest).read_bytes()


def test_serves_nothing_outside_out_and_the_objects_it_shows(served: tuple[LiveServer, Board, Path]) -> None:
    server, _, drama = served
    (drama / "out" / "draft" / "escape").symlink_to(drama / "drama.toml")
    session = open_session(drama)
    clip = session.decision("clip:s1").record
    assert clip is not None
    clip_digest = clip.outputs["clip.mp4"].digest
    assert session.cache.object_path(clip_digest).is_file()  # in the cache, but not on the page
    secret = (drama / "drama.toml").read_bytes()
    for path in ["/../drama.toml", "/drama.toml", "/out/../drama.toml", "/out/draft/../../drama.toml",
                 "/out/%2e%2e/drama.toml", "/out/%2E%2E%2Fdrama.toml", "/out/..%2fdrama.toml",
                 "/out/draft/%2e%2e/%2e%2e/drama.toml", "/out//etc/passwd", "/out/%2fetc%2fpasswd",
                 "/etc/passwd", "/out/draft/escape", "/out/draft/..%5c..%5cdrama.toml", "/out/%00",
                 f"/objects/{clip_digest}", "/objects/" + "0" * 32, "/objects/../drama.toml",
                 "/objects/%2e%2e/%2e%2e/drama.toml", f"/objects/{drama}/drama.toml", "/out/", "/out"]:
        status, _, body = get(server, path)
        assert (path, status) == (path, 404)
        assert secret not in body

    status, _, _ = get(server, "/out/draft/report.json")
    assert status == 200
    # Another Host (a DNS-rebinding page in the browser) is refused.
    connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
    connection.request("GET", "/state", headers={"Host": f"evil.example:{server.port}"})
    assert connection.getresponse().status == 403
    connection.close()


def test_episode_byte_ranges(served: tuple[LiveServer, Board, Path]) -> None:
    server, _, drama = served
    episode = (drama / "out" / "draft" / "episode.mp4").read_bytes()
    size = len(episode)
    url = "/out/draft/episode.mp4?v=1"

    status, headers, body = get(server, url)
    assert (status, headers["Accept-Ranges"], headers["Content-Type"], body) == (200, "bytes", "video/mp4", episode)
    status, headers, body = get(server, url, {"Range": "bytes=0-99"})
    assert (status, headers["Content-Range"], body) == (206, f"bytes 0-99/{size}", episode[:100])
    status, headers, body = get(server, url, {"Range": "bytes=1000-"})
    assert (status, headers["Content-Range"], body) == (206, f"bytes 1000-{size - 1}/{size}", episode[1000:])
    status, headers, body = get(server, url, {"Range": "bytes=-10"})
    assert (status, headers["Content-Range"], body) == (206, f"bytes {size - 10}-{size - 1}/{size}", episode[-10:])
    status, headers, body = get(server, url, {"Range": f"bytes={size}-"})
    assert (status, headers["Content-Range"], body) == (416, f"bytes */{size}", b"")
    status, headers, body = get(server, url, method="HEAD")
    assert (status, headers["Content-Length"], body) == (200, str(size), b"")


def test_byte_range() -> None:
    assert [byte_range(h, 1000) for h in (None, "bytes=0-0", "bytes=10-", "bytes=-1", "bytes=990-5000",
                                           "items=1-2", "bytes=0-1,5-6", "bytes=-")] \
        == [None, (0, 0), (10, 999), (999, 999), (990, 999), None, None, None]
    for header in ("bytes=1000-", "bytes=5-4", "bytes=-0"):
        with pytest.raises(Unsatisfiable):
            byte_range(header, 1000)


def test_shot_of() -> None:
    assert [shot_of(n) for n in ("keyframe:s1", "clip:a.b", "line:s1:12", "shot:s-2", "episode",
                                 "character:lin", "subtitles")] == ["s1", "a.b", "s1", "s-2", None, None, None]


# ── in a browser ─────────────────────────────────────────────────────────────


def _playwright() -> object:
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's chromium at /usr/bin/chromium (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("needs the playwright package (pip install playwright; its browsers are not needed)")
    return sync_playwright


class HoldKeyframe:
    """Holds keyframe:<shot> at its start until released, so the test sees the card running."""

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self.started = threading.Event()
        self.release = threading.Event()

    def begin(self, stale: object, estimates: object) -> None: ...
    def progress(self, node: object, fraction: float, message: str) -> None: ...
    def finish(self, result: object) -> None: ...
    def end(self) -> None: ...

    def start(self, node: object) -> None:
        if getattr(node, "id", None) == self.node_id:
            self.started.set()
            assert self.release.wait(60), "the test never released the held node"


def test_page_follows_edits_live(small_drama: Path) -> None:
    sync_playwright = _playwright()
    hold = HoldKeyframe("keyframe:s1")
    session = WatchSession(small_drama, debounce=0.05, reporters=[hold])
    server = LiveServer(session.board, small_drama)
    server.start()
    session.start()
    try:
        wait_outcomes(session, 1)
        with sync_playwright() as p:  # type: ignore[operator]
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900})
                page.goto(server.url)
                card = 'article.card[data-shot="{}"]'
                for shot in ("s1", "s2", "s3"):
                    page.wait_for_selector(card.format(shot) + '[data-status="cached"]', timeout=20_000)
                before = page.get_attribute(card.format("s1") + " figure img", "src")
                assert before == session.board.snapshot()["shots"][0]["keyframe"]
                assert not page.is_visible("#banner")

                # An edit: the card goes running (held there), then ran with a new picture.
                edit(small_drama, S1_ACTION, "Lin Qing runs up the stone steps")
                assert hold.started.wait(30), "keyframe:s1 never started"
                page.wait_for_selector(card.format("s1") + '[data-status="running"]', timeout=20_000)
                assert page.text_content(card.format("s1") + " .status") == "running"
                assert page.text_content(card.format("s1") + " .action") == "Lin Qing runs up the stone steps"
                assert page.get_attribute(card.format("s2"), "data-status") == "cached"
                hold.release.set()
                outcome = wait_outcomes(session, 2)[1]
                assert statuses(outcome, "ran") == {"keyframe:s1", "clip:s1", "shot:s1", "episode", "storyboard"}
                page.wait_for_selector(card.format("s1") + '[data-status="ran"]', timeout=20_000)
                after = page.get_attribute(card.format("s1") + " figure img", "src")
                assert after == f"/objects/{digest_of(outcome, 'keyframe:s1', 'image.png')}" != before
                page.wait_for_function(
                    f"document.querySelector('{card.format('s1')} figure img').naturalWidth === 1280")

                # The player plays the new episode, served with byte ranges.
                episode = digest_of(outcome, "episode", "episode.mp4")
                # the build's outcome can reach the test before the page's SSE event: wait for the page
                page.wait_for_function(
                    f"document.querySelector('video').getAttribute('src') === "
                    f"'/out/draft/episode.mp4?v={episode[:16]}'", timeout=20_000)
                page.wait_for_function("document.querySelector('video').readyState >= 1", timeout=20_000)
                duration = page.evaluate("document.querySelector('video').duration")
                assert duration == pytest.approx(probe(small_drama / "out" / "draft" / "episode.mp4").duration,
                                                 abs=0.1)

                # An invalid edit: the banner says what `fanren build` would, the cards stay.
                edit(small_drama, 'characters = ["lin"]', 'characters = ["lim"]')
                page.wait_for_selector("#banner.shown", timeout=20_000)
                error = wait_outcomes(session, 3)[2].error
                assert error is not None
                assert page.text_content("#banner") == error.show()
                assert page.get_attribute(card.format("s1") + " figure img", "src") == after
                edit(small_drama, 'characters = ["lim"]', 'characters = ["lin"]')
                page.wait_for_selector("#banner", state="hidden", timeout=20_000)
            finally:
                browser.close()
    finally:
        hold.release.set()
        session.stop()
        server.close()

