"""The cogvideox engine on tiny real CogVideoX image-to-video pipelines (CPU, no weights)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image

pytest.importorskip("torch")
pytest.importorskip("diffusers")

from video_engines import keyframe_png, missing_weights_error, render_clip

from fanren import testing
from fanren.engines.base import Request, Resources
from fanren.engines.video.cogvideox import CogVideoXEngine
from fanren.errors import EngineError, UsageError
from fanren.media import probe

TINY = {"model": "fanren-tiny:cogvideox"}
TINY_15 = {"model": "fanren-tiny:cogvideox1.5"}


@pytest.fixture(scope="module")
def keyframe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return keyframe_png(tmp_path_factory.mktemp("keyframe"), (32, 32),
                        (30, 60, 90), (8, 8, 24, 24), (220, 200, 40))


@pytest.fixture(scope="module")
def engine() -> CogVideoXEngine:
    return CogVideoXEngine(TINY)


def render(engine: CogVideoXEngine, tmp: Path, keyframe: Path, progress: Any = None, **params: Any) -> Path:
    return render_clip(engine, tmp, keyframe, {"prompt": "she walks up the steps", "size": [32, 32], "fps": 24,
                                               **params}, progress)


def test_clip_has_the_models_frames_fps_and_the_asked_size(engine: CogVideoXEngine, keyframe: Path,
                                                           tmp_path: Path) -> None:
    clip = probe(render(engine, tmp_path, keyframe))
    assert clip.size == (32, 32)
    assert clip.frames == 9
    assert clip.fps == 8.0
    assert clip.duration == pytest.approx(9 / 8, abs=0.01)
    assert clip.audio is None
    assert clip.video is not None
    assert (clip.video["codec_name"], clip.video["pix_fmt"]) == ("h264", "yuv420p")


def test_cogvideox15_renders_16k_plus_1_frames_at_16_fps(keyframe: Path, tmp_path: Path) -> None:
    engine = CogVideoXEngine(TINY_15)
    assert (engine.frames, engine.native_fps(24)) == (17, 16)
    clip = probe(render(engine, tmp_path, keyframe, size=[48, 32]))
    assert (clip.size, clip.frames, clip.fps) == ((48, 32), 17, 16.0)


def test_frames_option_takes_another_valid_count(keyframe: Path, tmp_path: Path) -> None:
    clip = probe(render(CogVideoXEngine({**TINY, "frames": 17, "fps": 12}), tmp_path, keyframe))
    assert (clip.frames, clip.fps) == (17, 12.0)


def test_same_request_same_bytes_seed_and_keyframe_change_them(engine: CogVideoXEngine, keyframe: Path,
                                                               tmp_path: Path) -> None:
    first = render(engine, tmp_path, keyframe).read_bytes()
    assert render(engine, tmp_path, keyframe).read_bytes() == first
    assert render(engine, tmp_path, keyframe, seed=4).read_bytes() != first
    other = tmp_path / "other.png"
    Image.new("RGB", (32, 32), (200, 10, 10)).save(other)
    assert render(engine, tmp_path, other).read_bytes() != first


@pytest.mark.parametrize("options, frames", [(TINY, 10), (TINY, 48), (TINY, 8), (TINY, 57), (TINY, "49"),
                                              (TINY_15, 25), (TINY_15, 49 + 8)])
def test_invalid_frame_counts_are_refused_with_exit_2(options: dict[str, Any], frames: Any) -> None:
    with pytest.raises(UsageError) as caught:
        CogVideoXEngine({**options, "frames": frames})
    assert caught.value.exit_code == 2
    assert str(caught.value).endswith(f", got {frames!r}") and caught.value.option == "frames"


def test_frame_rules_name_the_model_and_the_valid_counts() -> None:
    with pytest.raises(UsageError, match=r"CogVideoX-5b-I2V renders: 8k\+1 \(9, 17, 25, …, 49\), got 50"):
        CogVideoXEngine({"frames": 50})
    with pytest.raises(UsageError, match=r"CogVideoX1.5-5B-I2V renders: 16k\+1 \(17, 33, 49, …, 161\)"):
        CogVideoXEngine({"model": testing.COGVIDEOX15_5B_I2V, "frames": 49 + 8})
    assert CogVideoXEngine({"model": testing.COGVIDEOX15_5B_I2V, "frames": 33}).frames == 33


def test_native_size_and_fps_follow_the_model() -> None:
    five_b = CogVideoXEngine({})
    assert (five_b.native_size("16:9"), five_b.native_fps(24), five_b.frames) == ((720, 480), 8, 49)
    with pytest.raises(UsageError, match="aspect 9:16, got 'THUDM/CogVideoX-5b-I2V', which renders only "
                                         "16:9 \\(720×480\\)"):
        five_b.native_size("9:16")
    one_five = CogVideoXEngine({"model": testing.COGVIDEOX15_5B_I2V})
    assert one_five.native_size("16:9") == (1360, 768) and one_five.native_size("9:16") == (768, 1360)
    assert (one_five.native_fps(24), one_five.frames) == (16, 81)
    assert CogVideoXEngine(TINY).native_size("9:16") == (64, 96)


def test_model_loads_once_for_many_clips(keyframe: Path, tmp_path: Path) -> None:
    engine = CogVideoXEngine(TINY)
    for seed in (1, 2, 3):
        render(engine, tmp_path, keyframe, seed=seed)
    assert engine.loads == 1
    engine.unload()
    engine.load()
    assert engine.loads == 2


def test_progress_reports_each_denoising_step(engine: CogVideoXEngine, keyframe: Path,
                                              tmp_path: Path) -> None:
    messages: list[str] = []
    render(engine, tmp_path, keyframe, progress=lambda fraction, message: messages.append(message))
    assert messages == ["step 1/2", "step 2/2"]


def test_identity_has_frames_fps_and_speed_options() -> None:
    cache = {"kind": "first-block", "threshold": 0.1}
    identity = CogVideoXEngine({**TINY, "compile": True, "cache": cache}).identity()
    assert (identity["frames"], identity["fps"], identity["steps"], identity["guidance"]) == (9, 8, 2, 6.0)
    assert identity["compile"] is True and identity["cache"] == {"kind": "first-block", "threshold": 0.1}
    assert "vram" not in identity


def test_missing_weights_message(tmp_path: Path, keyframe: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    message = missing_weights_error(lambda: render(CogVideoXEngine({}), tmp_path, keyframe, size=[720, 480]),
                                    tmp_path, monkeypatch)
    assert "cogvideox: the weights of THUDM/CogVideoX-5b-I2V are not on this machine" in message
    assert "huggingface-cli download THUDM/CogVideoX-5b-I2V" in message
    assert 'video = { engine = "cogvideox", model = "/path/to/CogVideoX-5b-I2V" }' in message


def test_a_clip_without_its_keyframe_is_an_engine_error(engine: CogVideoXEngine, tmp_path: Path) -> None:
    request = Request(node_id="clip:s1", kind="clip", params={"prompt": "", "seed": 1, "size": [32, 32]},
                      inputs={}, out_dir=tmp_path)
    with pytest.raises(EngineError, match="needs its keyframe's image.png"):
        engine.run(request)


def test_step_cache_gives_a_valid_repeatable_clip(keyframe: Path, tmp_path: Path) -> None:
    cached = CogVideoXEngine({**TINY, "cache": "first-block"})
    first = render(cached, tmp_path, keyframe)
    assert probe(first).frames == 9
    assert render(cached, tmp_path, keyframe).read_bytes() == first.read_bytes()


def test_offload_modes_render_in_place_on_the_cpu(keyframe: Path, tmp_path: Path) -> None:
    engine = CogVideoXEngine({**TINY, "vram": "sequential-offload", "device": "cpu"})
    assert engine.resources() == Resources(gpu=False)
    clip = render(engine, tmp_path, keyframe)
    assert engine.placement is not None and engine.placement.mode == "full"
    assert clip.read_bytes() == render(CogVideoXEngine(TINY), tmp_path, keyframe).read_bytes()


def test_attention_and_fused_qkv_are_keyed_and_packaged_kernels_refused() -> None:
    identity = CogVideoXEngine({**TINY, "attention": "cudnn", "fuse_qkv": True}).identity()
    assert (identity["attention"], identity["fuse_qkv"]) == ("cudnn", True) and "quantize" not in identity
    assert "attention" not in CogVideoXEngine(TINY).identity()
    # CogVideoX calls F.scaled_dot_product_attention itself: only PyTorch's kernels can be chosen.
    with pytest.raises(UsageError) as caught:
        CogVideoXEngine({**TINY, "attention": "sage"})
    assert caught.value.exit_code == 2
    assert str(caught.value) == ("engine cogvideox: option attention: expected one of 'default', 'cudnn', "
                                 "'flash', 'efficient', got 'sage'")


def test_fused_qkv_gives_a_valid_repeatable_clip(keyframe: Path, tmp_path: Path) -> None:
    fused = CogVideoXEngine({**TINY, "fuse_qkv": True})
    first = render(fused, tmp_path, keyframe)
    assert probe(first).frames == 9
    assert render(fused, tmp_path, keyframe).read_bytes() == first.read_bytes()
    processors = {type(p).__name__ for p in fused._image_to_video.transformer.attn_processors.values()}
    assert processors == {"FusedCogVideoXAttnProcessor2_0"}
