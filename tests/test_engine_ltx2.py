"""The ltx2 engine on a tiny real LTX-2 image-to-video pipeline (CPU, no weights)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image

pytest.importorskip("torch")
pytest.importorskip("diffusers")

from conftest import fanren, report, write_drama
from video_engines import (
    build_twice_to_the_same_lock,
    keyframe_png,
    missing_weights_error,
    render_clip,
    vertical_drama_text,
)

from fanren.engines.diffusion.placement import mode_that_fits
from fanren.engines.video.ltx2 import DISTILLED_SIGMAS, LTX2Engine, compressed
from fanren.errors import EngineError, UsageError
from fanren.media import probe

TINY = {"model": "fanren-tiny:ltx2"}


@pytest.fixture(scope="module")
def keyframe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return keyframe_png(tmp_path_factory.mktemp("keyframe"), (64, 96),
                        (30, 60, 90), (16, 24, 48, 72), (220, 200, 40))


@pytest.fixture(scope="module")
def engine() -> LTX2Engine:
    return LTX2Engine(TINY)


def render(engine: LTX2Engine, tmp: Path, keyframe: Path, progress: Any = None, **params: Any) -> Path:
    clip = render_clip(engine, tmp, keyframe, {"prompt": "she walks up the steps", "size": [64, 96], "fps": 24,
                                               **params}, progress)
    # the keyframe's H.264 round trip is gone
    assert sorted(p.name for p in clip.parent.iterdir()) == ["clip.mp4"]
    return clip


def test_a_9_16_clip_has_the_models_frames_and_fps_and_no_audio(engine: LTX2Engine, keyframe: Path,
                                                                tmp_path: Path) -> None:
    clip = probe(render(engine, tmp_path, keyframe))
    assert (clip.size, clip.frames, clip.fps, clip.audio) == ((64, 96), 9, 24.0, None)


def test_same_request_same_bytes_seed_and_crf_change_them(engine: LTX2Engine, keyframe: Path,
                                                          tmp_path: Path) -> None:
    first = render(engine, tmp_path, keyframe).read_bytes()
    assert render(engine, tmp_path, keyframe).read_bytes() == first
    assert render(engine, tmp_path, keyframe, seed=4).read_bytes() != first
    assert render(LTX2Engine({**TINY, "keyframe_crf": 0}), tmp_path, keyframe).read_bytes() != first


def test_distilled_runs_the_8_step_schedule(keyframe: Path, tmp_path: Path) -> None:
    messages: list[str] = []
    distilled = LTX2Engine({**TINY, "distilled": True})
    clip = render(distilled, tmp_path, keyframe, progress=lambda fraction, message: messages.append(message))
    assert messages == [f"step {n}/8" for n in range(1, 9)]
    assert probe(clip).frames == 9
    assert (distilled.steps, distilled.guidance, len(DISTILLED_SIGMAS)) == (8, 1.0, 8)


def test_the_keyframe_goes_through_one_h264_frame(keyframe: Path, tmp_path: Path) -> None:
    with Image.open(keyframe) as image:
        original = image.convert("RGB")
    assert compressed(original, 0, tmp_path) is original
    once = compressed(original, 33, tmp_path)
    assert once.size == original.size and once.tobytes() != original.tobytes()
    assert compressed(original, 33, tmp_path).tobytes() == once.tobytes()
    assert list(tmp_path.iterdir()) == []


def test_native_sizes_frames_and_fps() -> None:
    full = LTX2Engine({})
    assert [full.native_size(a) for a in ("16:9", "9:16", "1:1")] == [(1280, 704), (704, 1280), (960, 960)]
    assert (full.frames, full.native_fps(12), full.steps, full.guidance) == (121, 24, 30, 3.0)
    assert LTX2Engine(TINY).native_size("9:16") == (64, 96)


@pytest.mark.parametrize("options, message", [
    ({"frames": 120}, ("engine ltx2: option frames: expected a frame count LTX-2 renders: 8k+1 "
                      "(9, 17, 25, …, 481), got 120")),
    ({"frames": 125}, ("engine ltx2: option frames: expected a frame count LTX-2 renders: 8k+1 "
                      "(9, 17, 25, …, 481), got 125")),
    ({"frames": 489}, ("engine ltx2: option frames: expected a frame count LTX-2 renders: 8k+1 "
                      "(9, 17, 25, …, 481), got 489")),
    ({"fps": 500}, "engine ltx2: option fps: expected an integer in [1, 120], got 500"),
    ({"keyframe_crf": 60}, "engine ltx2: option keyframe_crf: expected an integer in [0, 51], got 60"),
    ({"distilled": True, "steps": 4}, ("engine ltx2: option steps: expected no steps with distilled = true "
                                      "(the distilled schedule is 8 steps without guidance), got 4")),
    ({"distilled": "yes"}, "engine ltx2: option distilled: expected true or false, got 'yes'"),
])
def test_invalid_options_are_refused_with_exit_2(options: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError) as caught:
        LTX2Engine(options)
    assert caught.value.exit_code == 2
    assert str(caught.value) == message


def test_offload_modes_render_in_place_on_the_cpu(engine: LTX2Engine, keyframe: Path, tmp_path: Path) -> None:
    offloaded = LTX2Engine({**TINY, "vram": "model-offload", "device": "cpu"})
    clip = render(offloaded, tmp_path, keyframe)
    assert offloaded.placement is not None and offloaded.placement.mode == "full"
    assert clip.read_bytes() == render(engine, tmp_path, keyframe).read_bytes()


@pytest.mark.parametrize(("free_gib", "mode"), [
    (139.0, "full"),              # an H200: the 75.6 GB measured peak fits
    (79.0, "model-offload"),      # an 80 GB card
    (23.5, "group-offload"),      # a 24 GB card (what `final` must fit)
    (12.0, "sequential-offload"),
])
def test_auto_picks_the_fastest_mode_that_fits_the_card(free_gib: float, mode: str) -> None:
    # the real LTX-2's needs (final renders with it): nothing loads, only the VramNeed is asked
    assert mode_that_fits(LTX2Engine({}).vram_need(), free_gib) == mode


def test_missing_weights_say_how_to_get_them(tmp_path: Path, keyframe: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    message = missing_weights_error(lambda: render(LTX2Engine({"distilled": True}), tmp_path, keyframe,
                                                   size=[704, 1280]), tmp_path, monkeypatch)
    assert message.startswith("ltx2: the weights of Lightricks/LTX-2 are not on this machine\n")
    assert "huggingface-cli download Lightricks/LTX-2" in message
    assert 'video = { engine = "ltx2", model = "/path/to/LTX-2" }' in message


def test_a_size_off_the_32_pixel_grid_is_refused(engine: LTX2Engine, keyframe: Path, tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="^ltx2 renders sizes that are multiples of 32 pixels, asked for 80×96$"):
        render(engine, tmp_path, keyframe, size=[80, 96])


def test_identity_says_the_schedule_and_that_audio_is_dropped() -> None:
    identity = LTX2Engine({**TINY, "distilled": True}).identity()
    assert (identity["steps"], identity["guidance"], identity["distilled"]) == (8, 1.0, True)
    assert (identity["audio"], identity["keyframe_crf"], identity["frames"]) == ("dropped", 33, 9)


VERTICAL_DRAMA = vertical_drama_text("""
[profiles.vertical]
video = { engine = "ltx2", model = "fanren-tiny:ltx2" }
""")


def test_a_9_16_drama_renders_through_ltx2_with_the_same_bytes_twice(tmp_path: Path) -> None:
    first = build_twice_to_the_same_lock(tmp_path, VERTICAL_DRAMA, "vertical")
    nodes = report(first, "vertical")["nodes"]
    assert {n["engine"] for n in nodes if n["kind"] == "clip"} == {"ltx2"}
    assert {n["id"] for n in nodes if n["kind"] == "clip"} == {"clip:s1", "clip:s2", "clip:s3"}
    assert probe(first / "out" / "vertical" / "episode.mp4").size == (720, 1280)


def test_bad_frames_in_a_drama_exit_2_before_anything_renders(tmp_path: Path) -> None:
    drama = write_drama(tmp_path / "d", VERTICAL_DRAMA.replace('model = "fanren-tiny:ltx2" }',
                                                                'model = "fanren-tiny:ltx2", frames = 12 }'))
    result = fanren("build", drama, "--profile", "vertical")
    assert result.code == 2
    assert result.stderr == (f"error: {drama / 'drama.toml'}: profiles.vertical.video.frames: expected a frame "
                             f"count tiny LTX-2 renders: 8k+1 (9, 17, 25, …, 481), got 12\n")
    assert not (drama / "out").exists()
