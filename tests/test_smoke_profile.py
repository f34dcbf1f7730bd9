"""The `smoke` profile: the real flux2 and ltx2 engine code (final's engines) on tiny random pipelines, on a CPU."""

from __future__ import annotations

import hashlib
import shutil
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO, SMALL_DRAMA, fanren, report, write_drama
from PIL import Image

from fanren.build import build
from fanren.compile import compile_project, resolve_engines
from fanren.engines import Engine, Request
from fanren.media import probe
from fanren.project import load_project
from fanren.run import EnginePool


def test_models_load_once_per_build_and_a_character_edit_rerenders_its_keyframes(tmp_path: Path) -> None:
    drama = write_drama(tmp_path / "drama")
    project = load_project(drama)
    engines = resolve_engines(project, "smoke")
    pool = EnginePool(engines.by_family())
    result = build(drama, profile="smoke", pool=pool, project=project, engines=engines)
    assert result.count("ran") == len(result.results)
    # two character sheets + three keyframes on one image model; three clips on one video model
    assert engines.image.loads == 1 and engines.video.loads == 1
    clip = probe(result.session.cache.object_path(result.results["clip:s1"].record.outputs["clip.mp4"].digest))
    # the tiny LTX-2's 16:9 size and 8k+1 frames, at LTX-2's 24 fps
    assert clip.size == (96, 64) and clip.frames == 9 and clip.fps == 24

    text = (drama / "drama.toml").read_text(encoding="utf-8")
    (drama / "drama.toml").write_text(text.replace("a young swordswoman in a blue robe",
                                                   "a young swordswoman in a red robe"), encoding="utf-8")
    again = build(drama, profile="smoke")
    ran = {nid for nid, r in again.results.items() if r.status == "ran"}
    assert {n for n in ran if n.startswith(("character:", "keyframe:"))} == {
        "character:lin", "keyframe:s1", "keyframe:s2"}


def test_same_key_gives_the_same_bytes_in_another_cache(tmp_path: Path) -> None:
    first, second = write_drama(tmp_path / "a"), write_drama(tmp_path / "b")
    for drama in (first, second):
        assert fanren("build", drama, "--profile", "smoke").code == 0
    lock_a = (first / "drama.lock").read_text(encoding="utf-8")
    lock_b = (second / "drama.lock").read_text(encoding="utf-8")
    assert lock_a == lock_b  # every key and every output digest identical


def test_a_9_16_drama_renders_end_to_end_through_flux2_and_ltx2(tmp_path: Path) -> None:
    # what `final` renders phones' 9:16 with, on the tiny models: clips at their native 9:16 size
    drama = write_drama(tmp_path / "d", SMALL_DRAMA.replace('aspect = "16:9"', 'aspect = "9:16"'))
    result = build(drama, profile="smoke")
    assert {r.status for r in result.results.values()} == {"ran"}
    cache = result.session.cache
    nodes = report(drama, "smoke")["nodes"]
    assert {n["engine"] for n in nodes if n["kind"] in ("character", "keyframe")} == {"flux2"}
    assert {n["id"] for n in nodes if n["kind"] == "clip" and n["engine"] == "ltx2"} == {
        "clip:s1", "clip:s2", "clip:s3"}
    for shot in ("s1", "s2", "s3"):
        keyframe = result.results[f"keyframe:{shot}"].record.outputs["image.png"].digest
        with Image.open(cache.object_path(keyframe)) as image:
            assert image.size == (64, 96)
        clip = probe(cache.object_path(result.results[f"clip:{shot}"].record.outputs["clip.mp4"].digest))
        assert (clip.size, clip.frames, clip.fps) == ((64, 96), 9, 24)
    episode = probe(drama / "out" / "smoke" / "episode.mp4")
    assert episode.size == (720, 1280) and episode.audio is not None


def _in_thread(work: Callable[[], Any], threads: int | None = None) -> Any:
    """`work()` in a new thread, whose torch thread count is first set to `threads` (as some other
    code on that thread might have left it)."""
    import torch

    result: list[Any] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            if threads is not None:
                torch.get_num_threads()  # torch starts on this thread first: a later set holds
                torch.set_num_threads(threads)
            result.append(work())
        except BaseException as exc:  # noqa: BLE001 (re-raised in the test's thread)
            errors.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return result[0]


def test_a_smoke_render_gives_the_same_bytes_from_any_thread(tmp_path: Path) -> None:
    # torch's CPU float sums depend on its thread count, which is per thread: a render must not
    # depend on which thread runs it, what count that thread had, or what else renders at once.
    pytest.importorskip("torch")
    project = load_project(write_drama(tmp_path / "drama"))
    engines = resolve_engines(project, "smoke")
    nodes = compile_project(project, engines).nodes
    runs = iter(range(1000))

    def render(engine: Engine, node_id: str, inputs: dict[str, dict[str, Path]],
               progress: Callable[[float, str], None] | None = None) -> Path:
        out = tmp_path / f"run-{next(runs)}"
        out.mkdir()
        node = nodes[node_id]
        request = Request(node_id=node_id, kind=node.kind, params=node.params, inputs=inputs, out_dir=out,
                          **({"progress": progress} if progress else {}))
        return next(iter(engine.run(request).values()))

    def digest(path: Path) -> str:
        return hashlib.sha256(path.read_bytes()).hexdigest()

    # A character sheet (1280×720: big enough that a thread count changes its sums), from the main
    # thread, from fresh threads with other counts, and twice.
    sheet = render(engines.image, "character:lin", {})
    expected = digest(sheet)
    for threads in (None, 1, 2, 3, 3):
        assert digest(_in_thread(lambda: render(engines.image, "character:lin", {}), threads)) == expected

    # Two renders at once on two threads with other counts, on two engines of the profile: the
    # first waits inside its denoising loop until the second has finished.
    other = resolve_engines(project, "smoke").image
    inside, finished = threading.Event(), threading.Event()

    def hold(fraction: float, message: str) -> None:
        inside.set()
        finished.wait(timeout=120)

    def second() -> Path:
        inside.wait(timeout=120)
        try:
            return render(other, "character:lin", {})
        finally:
            finished.set()

    held: list[Path] = []
    first = threading.Thread(target=lambda: held.append(_in_thread(
        lambda: render(engines.image, "character:lin", {}, progress=hold), 2)))
    first.start()
    assert digest(_in_thread(second, 3)) == expected
    first.join()
    assert digest(held[0]) == expected

    # The keyframe and the clip of one shot, several times from threads with other counts.
    sheets = {"character:lin": {"image.png": sheet}}
    keyframe = render(engines.image, "keyframe:s1", sheets)
    keyframes = {"keyframe:s1": {"image.png": keyframe}}
    clip = digest(render(engines.video, "clip:s1", keyframes))
    for threads in (1, 2, 3):
        assert digest(_in_thread(lambda: render(engines.image, "keyframe:s1", sheets), threads)) == \
            digest(keyframe)
        assert digest(_in_thread(lambda: render(engines.video, "clip:s1", keyframes), threads)) == clip


@pytest.mark.slow
def test_smoke_renders_the_example_on_cpu(tmp_path: Path) -> None:
    drama = tmp_path / "xianxia"
    shutil.copytree(REPO / "examples" / "xianxia", drama, ignore=shutil.ignore_patterns("out", ".fanren-cache"))
    result = fanren("build", drama, "--profile", "smoke")
    assert result.code == 0, result.stderr
    nodes = report(drama, "smoke")["nodes"]
    assert {n["status"] for n in nodes} == {"ran"}
    assert {n["engine"] for n in nodes if n["kind"] in ("character", "keyframe")} == {"flux2"}
    assert {n["engine"] for n in nodes if n["kind"] == "clip"} == {"ltx2"}
    episode = probe(drama / "out" / "smoke" / "episode.mp4")
    assert episode.size == (1280, 720) and episode.audio is not None


def test_a_failure_stops_queued_gpu_work_without_hanging(tmp_path: Path) -> None:
    # A bad option fails every keyframe at load; the clips queued behind them end as skipped.
    text = (write_drama(tmp_path / "d") / "drama.toml").read_text(encoding="utf-8")
    (tmp_path / "d" / "drama.toml").write_text(
        text + '\n[profiles.smoke]\nimage = { engine = "flux2", model = "fanren-tiny:flux2", '
        'attention = "cudnn" }\n', encoding="utf-8")
    result = fanren("build", tmp_path / "d", "--profile", "smoke", timeout=300)
    assert result.code == 1, result.stderr
    statuses = {n["id"]: n["status"] for n in report(tmp_path / "d", "smoke")["nodes"]}
    assert "failed" in statuses.values()
    assert statuses["episode"] == "skipped"
