"""The `smoke` profile: the real flux and cogvideox engine code on tiny random pipelines, on a CPU."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import REPO, fanren, report, write_drama

from fanren.build import build
from fanren.compile import resolve_engines
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
    assert clip.size == (96, 64) and clip.frames == 9 and clip.fps == 8

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


@pytest.mark.slow
def test_smoke_renders_the_example_on_cpu(tmp_path: Path) -> None:
    drama = tmp_path / "xianxia"
    shutil.copytree(REPO / "examples" / "xianxia", drama, ignore=shutil.ignore_patterns("out", ".fanren-cache"))
    result = fanren("build", drama, "--profile", "smoke")
    assert result.code == 0, result.stderr
    nodes = report(drama, "smoke")["nodes"]
    assert {n["status"] for n in nodes} == {"ran"}
    assert {n["engine"] for n in nodes if n["kind"] in ("character", "keyframe")} == {"flux"}
    assert {n["engine"] for n in nodes if n["kind"] == "clip"} == {"cogvideox"}
    episode = probe(drama / "out" / "smoke" / "episode.mp4")
    assert episode.size == (1280, 720) and episode.audio is not None


def test_a_failure_stops_queued_gpu_work_without_hanging(tmp_path: Path) -> None:
    # A bad option fails every keyframe at load; the clips queued behind them end as skipped.
    text = (write_drama(tmp_path / "d") / "drama.toml").read_text(encoding="utf-8")
    (tmp_path / "d" / "drama.toml").write_text(
        text + '\n[profiles.smoke]\nimage = { engine = "flux", model = "fanren-tiny:flux", '
        'attention = "cudnn" }\n', encoding="utf-8")
    result = fanren("build", tmp_path / "d", "--profile", "smoke", timeout=300)
    assert result.code == 1, result.stderr
    statuses = {n["id"]: n["status"] for n in report(tmp_path / "d", "smoke")["nodes"]}
    assert "failed" in statuses.values()
    assert statuses["episode"] == "skipped"
