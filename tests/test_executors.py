"""Executors: the GPU queue's choices, local multi-GPU on fake devices, Ray on this machine.

Every build here renders the smoke profile (the real flux2 and ltx2 engine code on tiny random
pipelines, on the CPU) and must give the same bytes, key for key, as the one-GPU build.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import fanren, report, write_drama

from fanren.build import build
from fanren.executors import ExecutorOptions, Job, parse_gpus
from fanren.executors.local import GpuQueue
from fanren.graph import Node
from fanren.run import critical_paths

GPU_ENGINES = 2  # the smoke profile's image (flux2) and video (ltx2) engines


# ── the GPU queue, alone ─────────────────────────────────────────────────────


def job(node_id: str, family: str, priority: float) -> Job:
    node = Node(id=node_id, kind="clip" if family == "video" else "keyframe", family=family, engine=family,
                identity={}, params={}, gpu=True)
    return Job(node=node, inputs={}, sources={}, out_dir=Path("/nonexistent"), priority=priority)


def test_a_slot_keeps_its_model_and_takes_the_longest_job_first() -> None:
    pending = {"image": 0, "video": 0}
    q = GpuQueue(2, lambda family: pending[family])
    for j in (job("k1", "image", 5), job("k2", "image", 9), job("c1", "video", 30), job("c2", "video", 50)):
        q.put(j)
    first = q.take(0)
    assert first is not None and first.id == "c2"  # nothing loaded yet: the longest job
    second = q.take(1)
    assert second is not None and second.id == "c1"  # slot 1 loads the video model too: clips are longest
    q.done(0)
    third = q.take(0)
    assert third is not None and third.id == "k2"
    q.done(1)
    q.done(0)
    q.put(job("c3", "video", 40))
    fourth = q.take(1)
    assert fourth is not None and fourth.id == "c3"  # slot 1 holds video: it takes the clip
    fifth = q.take(0)
    assert fifth is not None and fifth.id == "k1"  # slot 0 holds image


def test_a_slot_waits_for_more_of_its_model_while_another_gpu_is_busy() -> None:
    pending = {"image": 3, "video": 0}  # three more keyframes are coming (their characters are rendering)
    q = GpuQueue(2, lambda family: pending[family])
    q.put(job("ch1", "image", 10))
    assert q.take(0) is not None  # slot 0: image, busy
    q.put(job("ch2", "image", 10))
    assert q.take(1) is not None  # slot 1: image, busy
    q.done(1)
    q.put(job("c1", "video", 60))
    # slot 1 is the only other image holder besides slot 0, so it may switch: slot 0 keeps image
    picked = q._pick(1)
    assert picked is not None and picked.id == "c1"
    # but a lone image holder with keyframes coming does not switch while another slot is busy
    q2 = GpuQueue(2, lambda family: pending[family])
    q2.put(job("c0", "video", 60))
    assert q2.take(1) is not None  # slot 1: video, busy
    q2.put(job("ch3", "image", 10))
    assert q2.take(0) is not None
    q2.done(0)
    q2.put(job("c2", "video", 60))
    assert q2._pick(0) is None  # slot 0 keeps its image model for the keyframes that are coming
    q2.done(1)
    picked = q2._pick(1)
    assert picked is not None and picked.id == "c2"


def test_a_model_a_slot_unloaded_is_left_to_the_slot_that_holds_it() -> None:
    q = GpuQueue(2, lambda family: 0)
    q.put(job("k1", "image", 1))
    assert q.take(0) is not None
    q.done(0)
    q.put(job("c1", "video", 1))
    assert q.take(0) is not None  # slot 0: image → video (nothing more of image is coming)
    q.put(job("k2", "image", 1))
    assert q.take(1) is not None and q.holding[1] == "image"  # slot 1 loads image, slot 0 does not reload
    assert q.used[0] == {"image", "video"} and q.used[1] == {"image"}


def test_critical_path_puts_a_keyframe_whose_clip_is_longest_first(tmp_path: Path) -> None:
    from fanren.compile import compile_project, resolve_engines
    from fanren.project import load_project

    project = load_project(write_drama(tmp_path / "d"))
    graph = compile_project(project, resolve_engines(project, "draft"))
    timings = {"kenburns/clip/clip:s2": 100.0}
    paths = critical_paths(graph, timings)
    assert paths["keyframe:s2"] > paths["keyframe:s1"] and paths["keyframe:s2"] > paths["keyframe:s3"]
    assert paths["episode"] < paths["shot:s1"] < paths["clip:s1"] < paths["keyframe:s1"]


def test_gpus_option(monkeypatch: pytest.MonkeyPatch) -> None:
    from fanren.errors import UsageError

    monkeypatch.setenv("FANREN_FAKE_GPUS", "3")
    assert parse_gpus("all") == ["0", "1", "2"]
    assert parse_gpus("0, 2") == ["0", "2"]
    assert parse_gpus(None) is None
    for bad in ("", "0,0", "gpu0", "-1"):
        with pytest.raises(UsageError, match="--gpus"):
            parse_gpus(bad)
    monkeypatch.delenv("FANREN_FAKE_GPUS")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(UsageError, match="no NVIDIA GPU found"):
        parse_gpus("all")


def test_the_plain_command_line_imports_neither_ray_nor_torch(tmp_path: Path) -> None:
    drama = write_drama(tmp_path / "d")
    code = ("import sys\nfrom fanren.cli import main\n"
            f"sys.argv = ['fanren', 'build', {str(drama)!r}, '-q']\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('ray', 'torch', 'diffusers'))\n"
            "assert not bad, bad\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr


# ── real builds ──────────────────────────────────────────────────────────────


@pytest.fixture(scope="module")
def one_gpu_lock(tmp_path_factory: pytest.TempPathFactory) -> str:
    """drama.lock of the smoke build on one (fake) GPU worker: every key and output digest."""
    drama = write_drama(tmp_path_factory.mktemp("one-gpu") / "d")
    result = fanren("build", drama, "--profile", "smoke", "--gpus", "0", env={"FANREN_FAKE_GPUS": "1"})
    assert result.code == 0, result.stderr
    stats = check_workers(drama, 1)
    assert stats["gpu0"]["loads"] == {"image": 1, "video": 1}
    return (drama / "drama.lock").read_text(encoding="utf-8")


def gpu_nodes(drama: Path) -> set[str]:
    return {n["id"] for n in report(drama, "smoke")["nodes"] if n["kind"] in ("character", "keyframe", "clip")}


def check_workers(drama: Path, workers: int) -> dict:
    rep = report(drama, "smoke")
    stats = rep["workers"]
    assert len(stats) == workers
    ran = [n for w in stats.values() for n in w["nodes"]]
    assert sorted(ran) == sorted(gpu_nodes(drama)), "every GPU node ran exactly once"
    for name, w in stats.items():
        assert sum(w["loads"].values()) <= GPU_ENGINES, f"{name} loaded {w['loads']}"
        assert all(n <= 1 for n in w["loads"].values()), f"{name} loaded a model twice: {w['loads']}"
    return stats


def test_two_fake_gpus_give_the_same_bytes_as_one(tmp_path: Path, one_gpu_lock: str) -> None:
    drama = write_drama(tmp_path / "d")
    result = fanren("build", drama, "--profile", "smoke", "--gpus", "0,1", env={"FANREN_FAKE_GPUS": "2"},
                    timeout=600)
    assert result.code == 0, result.stderr
    assert (drama / "drama.lock").read_text(encoding="utf-8") == one_gpu_lock
    stats = check_workers(drama, 2)
    assert set(stats) == {"gpu0", "gpu1"}
    assert all(w["nodes"] for w in stats.values()), f"both workers rendered: {stats}"


def test_a_worker_process_that_dies_mid_node_costs_that_node_only(tmp_path: Path, one_gpu_lock: str) -> None:
    drama = write_drama(tmp_path / "d")
    marker = tmp_path / "died"
    result = fanren("build", drama, "--profile", "smoke", "--gpus", "0,1",
                    env={"FANREN_FAKE_GPUS": "2", "FANREN_TEST_WORKER_EXIT": f"clip:s2={marker}"}, timeout=600)
    assert result.code == 0, result.stderr
    assert marker.exists(), "a worker died running clip:s2"
    assert (drama / "drama.lock").read_text(encoding="utf-8") == one_gpu_lock
    stats = report(drama, "smoke")["workers"]
    assert sum(w.get("lost", 0) for w in stats.values()) == 1
    ran = [n for w in stats.values() for n in w["nodes"]]
    assert sorted(ran) == sorted(gpu_nodes(drama))  # the rest ran once; clip:s2 once more, to the end


# ── Ray ──────────────────────────────────────────────────────────────────────


@pytest.fixture(scope="module")
def local_ray():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def test_ray_gives_the_same_bytes_and_survives_a_killed_actor(tmp_path: Path, one_gpu_lock: str, local_ray,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "died"
    monkeypatch.setenv("FANREN_FAKE_GPUS", "2")  # flux2 and ltx2 go to the actors, though on the CPU
    monkeypatch.setenv("FANREN_TEST_WORKER_EXIT", f"keyframe:s2={marker}")
    drama = write_drama(tmp_path / "d")
    result = build(drama, profile="smoke", executor=ExecutorOptions("ray"))
    assert result.count("ran") == len(result.results)
    assert marker.exists(), "an actor died running keyframe:s2"
    assert (drama / "drama.lock").read_text(encoding="utf-8") == one_gpu_lock
    stats = check_workers(drama, 2)  # the replacement actor counts its own loads
    assert set(stats) == {"ray0", "ray1"}
    assert sum(w.get("lost", 0) for w in stats.values()) == 1
    # a second build finds everything cached: nothing goes to Ray
    again = build(drama, profile="smoke", executor=ExecutorOptions("ray"))
    assert again.count("ran") == 0
