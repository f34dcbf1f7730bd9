"""`fanren watch`: real saves, real watchdog events, real builds, in-process and as the command line."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from conftest import SMALL_DRAMA, fanren, write_drama

from fanren.build import open_session
from fanren.cache import digest_file
from fanren.errors import DramaError
from fanren.graph import Node
from fanren.run import NodeResult
from fanren.watch import Outcome, WatchSession, is_scratch

WAIT = 60.0  # seconds: a bound on one rebuild of the small drama on a slow, busy CI machine

S1_ACTION = "Lin Qing climbs the stone steps"
S2_ACTION = "The elder blocks her way"
S3_ACTION = "The elder nods"
# What an edit of one shot's action re-renders. Its subtitles are re-checked and found unchanged
# (the shot's timing is the same): early cutoff.
RERENDERED = {"keyframe:{}", "clip:{}", "shot:{}", "episode", "storyboard"}


def rerendered(shot: str) -> set[str]:
    return {n.format(shot) for n in RERENDERED}


def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)


def wait_outcomes(session: WatchSession, count: int) -> list[Outcome]:
    """The session's outcomes once it has rebuilt `count` times (its first build counts)."""
    wait_until(lambda: session.rebuilds >= count or not session.alive,
               f"rebuild #{count} (so far: {[o.trigger for o in session.outcomes]})")
    assert session.rebuilds >= count, f"the rebuild loop ended: {session.crash!r}"
    assert session.rebuilds == len(session.outcomes)  # fewer than HISTORY: none forgotten yet
    return list(session.outcomes)


def statuses(outcome: Outcome, status: str) -> set[str]:
    assert outcome.result is not None, outcome.error and outcome.error.show()
    return {nid for nid, r in outcome.result.results.items() if r.status == status}


def digest_of(outcome: Outcome, node_id: str, output: str) -> str:
    assert outcome.result is not None
    record = outcome.result.results[node_id].record
    assert record is not None, f"{node_id} has no record"
    return record.outputs[output].digest


def edit(drama: Path, old: str, new: str) -> None:
    """Save the way most editors do: write a temp file, then rename it over drama.toml. (A plain
    truncate-and-write can be seen half-written under load, which makes the count of builds flaky.)"""
    file = drama / "drama.toml"
    text = file.read_text(encoding="utf-8")
    assert old in text, old
    tmp = drama / ".drama.toml.swp"
    tmp.write_text(text.replace(old, new), encoding="utf-8")
    os.replace(tmp, file)


@contextmanager
def watching(drama: Path, **options: object) -> Iterator[WatchSession]:
    """A watch session on `drama`, its first (all cached) build done."""
    session = WatchSession(drama, debounce=0.05, **options)  # type: ignore[arg-type]
    session.start()
    try:
        wait_outcomes(session, 1)
        yield session
    finally:
        session.stop()


def test_saves_rebuild_only_stale_nodes_and_keep_engines_loaded(small_drama: Path) -> None:
    with watching(small_drama, release_after=3.0) as session:
        first = session.outcomes[0]
        assert first.trigger == ()
        assert statuses(first, "ran") == set()
        assert session.engines is not None
        image, video = session.engines.image, session.engines.video
        assert (image.loads, video.loads) == (0, 0)  # nothing ran, nothing loaded

        edit(small_drama, S1_ACTION, "Lin Qing runs up the stone steps")
        second = wait_outcomes(session, 2)[1]
        assert second.trigger == ("drama.toml",)
        assert statuses(second, "ran") == rerendered("s1")
        assert "subtitles" in statuses(second, "cached")
        assert (image.loads, video.loads) == (1, 1)

        edit(small_drama, S2_ACTION, "The elder raises his hand")
        third = wait_outcomes(session, 3)[2]
        assert statuses(third, "ran") == rerendered("s2")
        assert session.engines.image is image  # the same engines, still loaded
        assert (image.loads, video.loads) == (1, 1)
        assert session.releases == 0

        # out/ holds what this build made
        assert digest_file(small_drama / "out" / "draft" / "episode.mp4") == \
            digest_of(third, "episode", "episode.mp4")

        # idle for release_after seconds: the engines are released, and the next edit loads them again
        wait_until(lambda: session.releases == 1, "the idle engines to be released")
        edit(small_drama, S3_ACTION, "The elder nods slowly")
        fourth = wait_outcomes(session, 4)[3]
        assert statuses(fourth, "ran") == rerendered("s3")
        assert (image.loads, video.loads) == (2, 2)
        assert session.rebuilds == 4


def test_an_invalid_edit_keeps_the_last_good_build_and_says_what_build_says(small_drama: Path) -> None:
    said: list[tuple[str, bool]] = []
    good = (small_drama / "drama.toml").read_text(encoding="utf-8")
    out = small_drama / "out" / "draft"
    with watching(small_drama, say=lambda text, error: said.append((text, error))) as session:
        before = {name: digest_file(out / name) for name in ("episode.mp4", "report.json")}
        lock = (small_drama / "drama.lock").read_text(encoding="utf-8")

        for count, broken in enumerate([
            good.replace('characters = ["lin"]', 'characters = ["lim"]'),   # unknown character
            good.replace("[[scenes]]", "[[scenes]", 1),                      # not TOML
        ], start=2):
            (small_drama / "drama.toml").write_text(broken, encoding="utf-8")
            outcome = wait_outcomes(session, count)[-1]
            assert outcome.result is None and outcome.error is not None
            message = outcome.error.show()
            build = fanren("build", small_drama)
            assert build.code == 2
            assert build.stderr == message + "\n"  # the very message `fanren build` prints
            assert (message, True) in said
            assert session.board.snapshot()["error"] == message
            assert {name: digest_file(out / name) for name in before} == before
            assert (small_drama / "drama.lock").read_text(encoding="utf-8") == lock
        assert "lim" in session.outcomes[1].error.show()  # type: ignore[union-attr]

        # fixing the file resumes: this save builds, and the banner goes
        (small_drama / "drama.toml").write_text(good.replace("他点了点头。", "他摇了摇头。"), encoding="utf-8")
        fixed = wait_outcomes(session, 4)[3]
        assert fixed.error is None
        assert statuses(fixed, "ran") == {"line:s3:0", "shot:s3", "subtitles", "episode", "storyboard"}
        assert session.board.snapshot()["error"] is None
        assert digest_file(out / "episode.mp4") != before["episode.mp4"]


def test_a_template_that_fails_to_render_is_a_banner_and_watch_keeps_running(small_drama: Path) -> None:
    said: list[tuple[str, bool]] = []
    out = small_drama / "out" / "draft"
    (small_drama / "templates").mkdir()
    with watching(small_drama, say=lambda text, error: said.append((text, error))) as session:
        before = digest_file(out / "episode.mp4")
        for count, template in enumerate(["{{ shot.action }} {{ 1/0 }}", "{% extends 'keyframe.j2' %}",
                                          "{{ range(10**9)|list }}"], start=2):
            (small_drama / "templates" / "keyframe.j2").write_text(template, encoding="utf-8")
            outcome = wait_outcomes(session, count)[-1]
            assert outcome.result is None and isinstance(outcome.error, DramaError)
            message = outcome.error.show()
            assert "templates/keyframe.j2:1: rendering for scenes[0].shots[0]" in message
            assert (message, True) in said
            assert session.board.snapshot()["error"] == message
            assert session.alive
            assert digest_file(out / "episode.mp4") == before
        (small_drama / "templates" / "keyframe.j2").write_text("{{ shot.action }}, {{ style }}",
                                                                encoding="utf-8")
        fixed = wait_outcomes(session, 5)[4]
        assert fixed.error is None
        assert session.board.snapshot()["error"] is None


class HoldFirstStart:
    """A reporter that, when `node_id` first starts, saves `then` and holds the node until the
    session has seen that save: a save that lands in the middle of a build, every time."""

    def __init__(self, node_id: str, then: Callable[[], None]) -> None:
        self.node_id = node_id
        self.then = then
        self.session: WatchSession | None = None
        self.done = False

    def begin(self, stale: list[Node], estimates: Mapping[str, float]) -> None: ...
    def progress(self, node: Node, fraction: float, message: str) -> None: ...
    def finish(self, result: NodeResult) -> None: ...
    def end(self) -> None: ...

    def start(self, node: Node) -> None:
        if node.id != self.node_id or self.done:
            return
        self.done = True
        self.then()
        assert self.session is not None
        wait_until(self.session.change_pending, "the watcher to see the save made during the build")


def test_a_save_during_a_build_cancels_it_at_a_node_boundary(small_drama: Path, tmp_path: Path) -> None:
    first_edit = (small_drama / "drama.toml").read_text(encoding="utf-8").replace(S1_ACTION, "Lin Qing falls")
    hold = HoldFirstStart("keyframe:s1", lambda: edit(small_drama, "Lin Qing falls", "Lin Qing rises"))
    with watching(small_drama, reporters=[hold]) as session:
        hold.session = session
        (small_drama / "drama.toml").write_text(first_edit, encoding="utf-8")
        cancelled, final = wait_outcomes(session, 3)[1:3]

    # The running keyframe finished and was committed; everything queued behind it was dropped.
    assert cancelled.cancelled
    assert statuses(cancelled, "ran") == {"keyframe:s1"}
    assert statuses(cancelled, "skipped") == {"clip:s1", "shot:s1", "subtitles", "episode", "storyboard"}
    assert not final.cancelled
    assert final.trigger == ("drama.toml",)
    assert statuses(final, "ran") == rerendered("s1")

    # What the cancelled build finished stays cached: the first edit's keyframe is not stale.
    other = write_drama(tmp_path / "first-edit", first_edit)
    decisions = {d.node.id: d for d in open_session(other, cache_dir=small_drama / ".fanren-cache").decisions}
    assert not decisions["keyframe:s1"].stale
    assert decisions["clip:s1"].stale
    # ...and the cache holds nothing half-made: the drama as saved last is up to date.
    status = fanren("status", small_drama)
    assert status.code == 0, status.stderr
    assert status.stdout.startswith("up to date: 18 nodes")


def test_watches_drama_refs_and_templates_and_ignores_what_builds_write(small_drama: Path) -> None:
    (small_drama / "refs").mkdir()
    (small_drama / "refs" / "lin.png").write_bytes(b"not yet a picture")
    with watching(small_drama) as session:
        # written by builds (or editors' scratch files): never a rebuild
        (small_drama / "out" / "draft" / "notes.txt").write_text("x", encoding="utf-8")
        (small_drama / ".fanren-cache" / "notes.txt").write_text("x", encoding="utf-8")
        (small_drama / "drama.lock").write_text((small_drama / "drama.lock").read_text(encoding="utf-8"),
                                                encoding="utf-8")
        (small_drama / "notes.md").write_text("x", encoding="utf-8")
        (small_drama / "refs" / ".lin.png.swp").write_text("x", encoding="utf-8")
        (small_drama / "refs" / "lin.png~").write_text("x", encoding="utf-8")
        time.sleep(0.3)  # past the debounce: a rebuild they started would be a separate one

        (small_drama / "refs" / "lin.png").write_bytes(b"still not a picture")
        assert wait_outcomes(session, 2)[1].trigger == ("refs/lin.png",)

        # templates/ appears after the watch began: it is watched from then on
        (small_drama / "templates").mkdir()
        assert wait_outcomes(session, 3)[2].trigger == ("templates",)
        (small_drama / "templates" / "notes.txt").write_text("x", encoding="utf-8")
        assert wait_outcomes(session, 4)[3].trigger == ("templates/notes.txt",)
        assert all(statuses(o, "ran") == set() for o in session.outcomes)
        assert session.rebuilds == 4


def test_scratch_files() -> None:
    assert [is_scratch(n) for n in ("drama.toml", ".drama.toml.swp", "drama.toml~", "4913", "lin.png",
                                    "x.tmp")] == [False, True, True, True, False, True]


# ── the command line ─────────────────────────────────────────────────────────


class Lines:
    """A subprocess's output, one line at a time, with bounded waits."""

    def __init__(self, stream: object) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.lines.put(line.rstrip("\n"))

    def expect(self, condition: Callable[[str], bool], what: str, timeout: float = WAIT) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"timed out waiting for {what}; output so far: {self.seen}") from None
            self.seen.append(line)
            if condition(line):
                return line


def test_fanren_watch_command(small_drama: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "FANREN_CACHE_DIR"}
    proc = subprocess.Popen([sys.executable, "-m", "fanren", "watch", str(small_drama), "--port", "0",
                             "--debounce", "50"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    try:
        out, err = Lines(proc.stdout), Lines(proc.stderr)
        banner = out.expect(lambda line: "live storyboard at" in line, "the server's address")
        url = banner.rsplit(" ", 1)[1]
        assert url.startswith("http://127.0.0.1:")
        assert out.expect(lambda line: line.startswith("built 18 nodes"), "the first build") == \
            "built 18 nodes (0 ran, 18 cached) in " + out.seen[-1].split(" in ")[1]
        edit(small_drama, 'characters = ["lin"]', 'characters = ["lim"]')
        err.expect(lambda line: line.startswith("error: ") and "lim" in line, "the bad-input message")
        err.expect(lambda line: "last good build stays in out/" in line, "the keep-going note")
        import urllib.request

        with urllib.request.urlopen(url + "state", timeout=10) as response:
            assert "characters[0]" in response.read().decode("utf-8")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=WAIT) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_fanren_watch_refuses_a_port_in_use(tmp_path: Path) -> None:
    drama = write_drama(tmp_path / "drama", SMALL_DRAMA)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = fanren("watch", drama, "--port", str(port), timeout=WAIT)
    assert run.code == 2
    assert run.stderr.startswith(f"error: cannot serve on 127.0.0.1:{port} (Address already in use); ")


def test_a_saved_comfyui_workflow_re_renders_the_pictures_it_makes(tmp_path: Path) -> None:
    from comfyui_server import ComfyUIServer
    from test_engine_comfyui import KEYFRAME, changed, comfy_drama

    with ComfyUIServer() as server:
        drama = comfy_drama(tmp_path / "drama", server.url)
        with watching(drama, profile="comfy") as session:
            workflow = drama / "workflows" / "keyframe.json"
            tmp = workflow.with_name(".keyframe.json.swp")
            tmp.write_text(json.dumps(changed(KEYFRAME, "3", steps=21)), encoding="utf-8")
            os.replace(tmp, workflow)
            second = wait_outcomes(session, 2)[1]
            assert second.trigger == ("workflows/keyframe.json",)
            assert statuses(second, "ran") == {"character:lin", "character:elder", "keyframe:s1", "keyframe:s2",
                                               "keyframe:s3"}
            assert server.prompts[-1]["prompt"]["3"]["inputs"]["steps"] == 21
