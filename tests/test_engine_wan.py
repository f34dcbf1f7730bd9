"""The wan engine on a tiny real Wan 2.2 TI2V image-to-video pipeline (CPU, no weights)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("ftfy")

from conftest import fanren, report, write_drama
from video_engines import (
    build_twice_to_the_same_lock,
    keyframe_png,
    missing_weights_error,
    render_clip,
    vertical_drama_text,
)

from fanren import testing
from fanren.engines.base import Request
from fanren.engines.video.wan import WanEngine
from fanren.errors import EngineError, UsageError
from fanren.media import probe

TINY = {"model": "fanren-tiny:wan"}


@pytest.fixture(scope="module")
def keyframe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return keyframe_png(tmp_path_factory.mktemp("keyframe"), (64, 96),
                        (30, 60, 90), (16, 24, 48, 72), (220, 200, 40))


@pytest.fixture(scope="module")
def engine() -> WanEngine:
    return WanEngine(TINY)


def render(engine: WanEngine, tmp: Path, keyframe: Path, **params: Any) -> Path:
    return render_clip(engine, tmp, keyframe, {"prompt": "she walks up the steps", "size": [64, 96], "fps": 24,
                                               **params})


def test_a_9_16_clip_has_the_models_frames_and_fps(engine: WanEngine, keyframe: Path, tmp_path: Path) -> None:
    clip = probe(render(engine, tmp_path, keyframe))
    assert (clip.size, clip.frames, clip.fps, clip.audio) == ((64, 96), 9, 24.0, None)


def test_same_request_same_bytes_seed_changes_them(engine: WanEngine, keyframe: Path, tmp_path: Path) -> None:
    first = render(engine, tmp_path, keyframe).read_bytes()
    assert render(engine, tmp_path, keyframe).read_bytes() == first
    assert render(engine, tmp_path, keyframe, seed=4).read_bytes() != first


def test_a14b_renders_with_two_experts_at_16_fps(keyframe: Path, tmp_path: Path) -> None:
    engine = WanEngine({"model": "fanren-tiny:wan-a14b"})
    messages: list[str] = []
    out = tmp_path / "a14b"
    out.mkdir()
    request = Request(node_id="clip:s1", kind="clip", params={"prompt": "she turns", "seed": 3, "size": [48, 80]},
                      inputs={"keyframe:s1": {"image.png": keyframe}}, out_dir=out,
                      progress=lambda fraction, message: messages.append(message))
    clip = probe(engine.run(request)["clip.mp4"])
    assert (clip.size, clip.frames, clip.fps) == ((48, 80), 9, 16.0)
    assert messages == ["step 1/2", "step 2/2"]
    pipeline = engine._image_to_video
    assert pipeline.transformer_2 is not None and pipeline.config.boundary_ratio == 0.9
    assert (engine.guidance, engine.identity()["guidance"]) == (3.5, 3.5)


def test_native_sizes_frames_and_fps_follow_the_model() -> None:
    ti2v = WanEngine({})
    assert [ti2v.native_size(a) for a in ("16:9", "9:16", "1:1")] == [(1280, 704), (704, 1280), (960, 960)]
    assert (ti2v.frames, ti2v.native_fps(12), ti2v.steps, ti2v.guidance) == (121, 24, 50, 5.0)
    a14b = WanEngine({"model": testing.WAN22_I2V_A14B})
    assert [a14b.native_size(a) for a in ("16:9", "9:16", "1:1")] == [(1280, 720), (720, 1280), (960, 960)]
    assert (a14b.frames, a14b.native_fps(24), a14b.steps) == (81, 16, 40)
    assert WanEngine(TINY).native_size("9:16") == (64, 96)


@pytest.mark.parametrize("options, message", [
    ({"frames": 120}, ("engine wan: option frames: expected a frame count Wan2.2-TI2V-5B renders: 4k+1 "
                      "(5, 9, 13, …, 241), got 120")),
    ({"frames": 245}, ("engine wan: option frames: expected a frame count Wan2.2-TI2V-5B renders: 4k+1 "
                      "(5, 9, 13, …, 241), got 245")),
    ({"frames": "121"}, ("engine wan: option frames: expected a frame count Wan2.2-TI2V-5B renders: 4k+1 "
                        "(5, 9, 13, …, 241), got '121'")),
    ({"model": testing.WAN22_I2V_A14B, "frames": 165},
     "engine wan: option frames: expected a frame count Wan2.2-I2V-A14B renders: 4k+1 (5, 9, 13, …, 161), got 165"),
    ({"fps": 0}, "engine wan: option fps: expected an integer in [1, 120], got 0"),
    ({"steps": 0}, "engine wan: option steps: expected an integer in [1, 500], got 0"),
])
def test_invalid_options_are_refused_with_exit_2(options: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        WanEngine(options)
    assert caught.value.exit_code == 2
    assert str(caught.value) == message


def test_offload_modes_render_in_place_on_the_cpu(engine: WanEngine, keyframe: Path, tmp_path: Path) -> None:
    offloaded = WanEngine({**TINY, "vram": "group-offload", "device": "cpu"})
    clip = render(offloaded, tmp_path, keyframe)
    assert offloaded.placement is not None and offloaded.placement.mode == "full"
    assert clip.read_bytes() == render(engine, tmp_path, keyframe).read_bytes()


def test_missing_weights_say_how_to_get_them(tmp_path: Path, keyframe: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    message = missing_weights_error(lambda: render(WanEngine({}), tmp_path, keyframe, size=[704, 1280]), tmp_path,
                                    monkeypatch)
    assert message.startswith("wan: the weights of Wan-AI/Wan2.2-TI2V-5B-Diffusers are not on this machine\n")
    assert "huggingface-cli download Wan-AI/Wan2.2-TI2V-5B-Diffusers" in message
    assert 'video = { engine = "wan", model = "/path/to/Wan2.2-TI2V-5B-Diffusers" }' in message


def test_a_size_off_the_32_pixel_grid_is_refused(engine: WanEngine, keyframe: Path, tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="^wan renders sizes that are multiples of 32 pixels, asked for 48×96$"):
        render(engine, tmp_path, keyframe, size=[48, 96])


def test_identity_has_frames_fps_steps_and_the_tiled_vae() -> None:
    identity = WanEngine({**TINY, "frames": 13, "fps": 12}).identity()
    assert (identity["frames"], identity["fps"], identity["steps"], identity["guidance"]) == (13, 12, 2, 5.0)
    assert identity["vae_tiling"] is True and "vram" not in identity


VERTICAL_DRAMA = vertical_drama_text("""
[profiles.vertical]
video = { engine = "wan", model = "fanren-tiny:wan" }
""")


def test_a_9_16_drama_renders_through_wan_with_the_same_bytes_twice(tmp_path: Path) -> None:
    first = build_twice_to_the_same_lock(tmp_path, VERTICAL_DRAMA, "vertical")
    nodes = report(first, "vertical")["nodes"]
    assert {n["engine"] for n in nodes if n["kind"] == "clip"} == {"wan"}
    assert {n["id"] for n in nodes if n["kind"] == "clip"} == {"clip:s1", "clip:s2", "clip:s3"}
    episode = first / "out" / "vertical" / "episode.mp4"
    assert probe(episode).size == (720, 1280)


def test_bad_frames_in_a_drama_exit_2_before_anything_renders(tmp_path: Path) -> None:
    drama = write_drama(tmp_path / "d", VERTICAL_DRAMA.replace('model = "fanren-tiny:wan" }',
                                                                'model = "fanren-tiny:wan", frames = 10 }'))
    result = fanren("build", drama, "--profile", "vertical")
    assert result.code == 2
    assert result.stderr == (f"error: {drama / 'drama.toml'}: profiles.vertical.video.frames: expected a frame "
                             f"count tiny Wan2.2-TI2V renders: 4k+1 (5, 9, 13, …, 241), got 10\n")
    assert not (drama / "out").exists()
