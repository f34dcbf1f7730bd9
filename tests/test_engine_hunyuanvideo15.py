"""The hunyuanvideo15 engine on a tiny real HunyuanVideo-1.5 image-to-video pipeline (CPU, no weights)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

pytest.importorskip("torch")
pytest.importorskip("diffusers")

from conftest import fanren, report, write_drama
from video_engines import keyframe_png, missing_weights_error, render_clip, vertical_drama_text

from fanren import testing
from fanren.engines.diffusion import weights
from fanren.engines.video.hunyuanvideo15 import KNOWN, HunyuanVideo15Engine
from fanren.errors import EngineError, UsageError
from fanren.media import probe

TINY = {"model": "fanren-tiny:hunyuanvideo15"}


@pytest.fixture(scope="module")
def keyframe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return keyframe_png(tmp_path_factory.mktemp("keyframe"), (64, 96),
                        (30, 60, 90), (16, 24, 48, 72), (220, 200, 40))


@pytest.fixture(scope="module")
def engine() -> HunyuanVideo15Engine:
    return HunyuanVideo15Engine(TINY)


def render(engine: HunyuanVideo15Engine, tmp: Path, keyframe: Path, progress: Any = None, **params: Any) -> Path:
    return render_clip(engine, tmp, keyframe, {"prompt": 'she walks up the steps under a sign "山门"',
                                               "size": [64, 96], "fps": 12, **params}, progress)


def test_clip_has_the_models_frames_fps_and_the_9_16_size(engine: HunyuanVideo15Engine, keyframe: Path,
                                                          tmp_path: Path) -> None:
    clip = probe(render(engine, tmp_path, keyframe))
    assert (clip.size, clip.frames, clip.fps) == ((64, 96), 9, 24.0)
    assert clip.video is not None and clip.audio is None
    assert (clip.video["codec_name"], clip.video["pix_fmt"]) == ("h264", "yuv420p")


def test_same_request_same_bytes_seed_and_keyframe_change_them(engine: HunyuanVideo15Engine, keyframe: Path,
                                                               tmp_path: Path) -> None:
    first = render(engine, tmp_path, keyframe).read_bytes()
    assert render(engine, tmp_path, keyframe).read_bytes() == first
    assert render(engine, tmp_path, keyframe, seed=4).read_bytes() != first
    other = tmp_path / "other.png"
    Image.new("RGB", (64, 96), (200, 10, 10)).save(other)
    assert render(engine, tmp_path, other).read_bytes() != first
    assert engine.loads == 1


def test_progress_reports_each_denoising_step_once(engine: HunyuanVideo15Engine, keyframe: Path,
                                                   tmp_path: Path) -> None:
    messages: list[str] = []
    render(engine, tmp_path, keyframe, progress=lambda fraction, message: messages.append(message))
    # The transformer runs twice a step (with and without the prompt); the step counts once.
    assert messages == ["step 1/2", "step 2/2"]
    assert "step" not in vars(engine._image_to_video.scheduler)  # the scheduler's own method again


def test_frames_fps_and_guidance_options(keyframe: Path, tmp_path: Path) -> None:
    engine = HunyuanVideo15Engine({**TINY, "frames": 5, "fps": 12, "guidance": 1.0})
    clip = probe(render(engine, tmp_path, keyframe))
    assert (clip.frames, clip.fps) == (5, 12.0)
    assert engine._image_to_video.guider.guidance_scale == 1.0


@pytest.mark.parametrize("frames", [10, 4, 1, 8, 245, "9", 9.0, True])
def test_invalid_frame_counts_are_refused_with_exit_2(frames: Any) -> None:
    with pytest.raises(UsageError) as caught:
        HunyuanVideo15Engine({**TINY, "frames": frames})
    assert caught.value.exit_code == 2
    assert str(caught.value) == ("engine hunyuanvideo15: option frames: expected a frame count tiny "
                                 "HunyuanVideo-1.5 renders: 4k+1 (5, 9, 13, …, 121 for 5 s at 24 fps, …, 241), "
                                 f"got {frames!r}")


def test_a_size_the_pipeline_would_crop_is_an_engine_error(engine: HunyuanVideo15Engine, keyframe: Path,
                                                           tmp_path: Path) -> None:
    with pytest.raises(EngineError) as caught:
        render(engine, tmp_path, keyframe, size=[64, 112])
    assert str(caught.value) == ("tiny HunyuanVideo-1.5 renders 96×64, 64×96, 80×80 (the pipeline picks its "
                                 "size from the keyframe's aspect), asked for 64×112")


def test_native_sizes_fps_and_defaults_of_the_known_checkpoints() -> None:
    p480 = HunyuanVideo15Engine({})
    assert [p480.native_size(a) for a in ("16:9", "9:16", "1:1")] == [(848, 480), (480, 832), (640, 640)]
    assert (p480.native_fps(12), p480.frames, p480.steps, p480.guidance, p480.dtype) == (
        24, 121, 50, 6.0, "bfloat16")
    assert p480.identity()["model"] == weights.HUNYUANVIDEO15_480P_I2V
    p720 = HunyuanVideo15Engine({"model": weights.HUNYUANVIDEO15_720P_I2V})
    assert [p720.native_size(a) for a in ("16:9", "9:16", "1:1")] == [(1280, 720), (720, 1248), (960, 960)]
    distilled = HunyuanVideo15Engine({"model": weights.HUNYUANVIDEO15_480P_I2V_STEP_DISTILLED})
    assert (distilled.steps, distilled.guidance, distilled.native_size("9:16")) == (8, 1.0, (480, 832))


def test_every_native_size_is_a_size_the_pipeline_keeps() -> None:
    """The pipeline crops a keyframe to the bucket of its aspect: a native size must be its own bucket,
    or the clip would come out at another size than its keyframe."""
    from diffusers.pipelines.hunyuan_video1_5.image_processor import HunyuanVideo15ImageProcessor

    buckets = HunyuanVideo15ImageProcessor(vae_scale_factor=16)
    for spec in KNOWN.values():
        for width, height in spec.sizes.values():
            assert buckets.calculate_default_height_width(height, width, spec.target_size) == (height, width)
    config = json.loads((testing.tiny_model_dir("hunyuanvideo15") / "transformer" / "config.json").read_text())
    assert config["target_size"] == KNOWN["hunyuanvideo15"].target_size


def test_an_aspect_without_a_native_size_is_refused_with_exit_2() -> None:
    with pytest.raises(UsageError) as caught:
        HunyuanVideo15Engine({}).native_size("4:3")
    assert caught.value.exit_code == 2
    assert str(caught.value) == (
        "engine hunyuanvideo15: option model: expected a model that renders the drama's aspect 4:3, got "
        "'hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-480p_i2v', which renders 16:9 (848×480), "
        "9:16 (480×832), 1:1 (640×640)")


def test_missing_weights_message(tmp_path: Path, keyframe: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    message = missing_weights_error(lambda: render(HunyuanVideo15Engine({}), tmp_path, keyframe, size=[480, 832]),
                                    tmp_path, monkeypatch)
    assert ("hunyuanvideo15: the weights of hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-480p_i2v are "
            "not on this machine") in message
    assert "huggingface-cli download hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-480p_i2v" in message


def checkpoint_folder(tmp: Path, name: str, **transformer: Any) -> Path:
    folder = tmp / name
    (folder / "transformer").mkdir(parents=True)
    (folder / "model_index.json").write_text('{"_class_name": "HunyuanVideo15ImageToVideoPipeline"}')
    (folder / "transformer" / "config.json").write_text(json.dumps(transformer))
    return folder


def test_a_local_folder_is_recognised_by_its_transformer_config(tmp_path: Path) -> None:
    p720 = checkpoint_folder(tmp_path, "hy-720p", task_type="i2v", target_size=960)
    assert HunyuanVideo15Engine({"model": str(p720)}).native_size("9:16") == (720, 1248)
    distilled = checkpoint_folder(tmp_path, "hy-distilled", task_type="i2v", target_size=640, use_meanflow=True)
    engine = HunyuanVideo15Engine({"model": str(distilled)})
    assert (engine.steps, engine.guidance, engine.native_size("16:9")) == (8, 1.0, (848, 480))
    assert engine.identity()["model"] == "hy-distilled"  # the folder's name, never its path


def test_a_text_to_video_checkpoint_is_refused_with_exit_2(tmp_path: Path) -> None:
    t2v = checkpoint_folder(tmp_path, "hy-t2v", task_type="t2v", target_size=960)
    with pytest.raises(UsageError) as caught:
        HunyuanVideo15Engine({"model": str(t2v)})
    assert caught.value.exit_code == 2
    assert str(caught.value) == ("engine hunyuanvideo15: option model: expected a HunyuanVideo-1.5 image-to-video "
                                 f"checkpoint (task_type \"i2v\"), got {str(t2v)!r}, whose transformer has "
                                 "task_type 't2v'")


def test_identity_keys_what_changes_the_bytes_and_not_where_it_runs() -> None:
    identity = HunyuanVideo15Engine({**TINY, "vram": "group-offload", "compile": True}).identity()
    assert {k: identity[k] for k in ("frames", "fps", "steps", "guidance", "compile", "vae_tiling")} == {
        "frames": 9, "fps": 24, "steps": 2, "guidance": 6.0, "compile": True, "vae_tiling": True}
    assert "vram" not in identity and "attention" not in identity


def test_planning_imports_neither_torch_nor_diffusers_nor_pillow() -> None:
    # identity(), resources() and native_size() run for every node of every build, even a no-op one.
    code = (
        "import sys\n"
        "from fanren.engines.video.hunyuanvideo15 import HunyuanVideo15Engine\n"
        "engine = HunyuanVideo15Engine({})\n"
        "engine.identity(); engine.resources(); engine.native_size('9:16')\n"
        "heavy = ('torch', 'diffusers', 'transformers', 'PIL', 'numpy')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# ── a 9:16 drama end to end ──────────────────────────────────────────────────

PROFILE = """
[profiles.hv]
video = { engine = "hunyuanvideo15", model = "fanren-tiny:hunyuanvideo15"%s }
"""


def vertical_drama(folder: Path, options: str = "") -> Path:
    return write_drama(folder, vertical_drama_text(PROFILE % options))


def test_a_9_16_drama_renders_through_the_engine_and_again_to_the_same_bytes(tmp_path: Path) -> None:
    drama = vertical_drama(tmp_path / "drama")
    first = fanren("build", drama, "--profile", "hv")
    assert first.code == 0, first.stderr
    nodes = {n["id"]: n for n in report(drama, "hv")["nodes"]}
    assert {n for n, node in nodes.items() if n.startswith("clip:") and node["status"] == "ran"} == {
        "clip:s1", "clip:s2", "clip:s3"}
    episode = probe(drama / "out" / "hv" / "episode.mp4")
    assert episode.size == (720, 1280)
    # every node rendered again from the inputs its action record names: same key, same bytes
    check = fanren("build", drama, "--profile", "hv", "--check")
    assert check.code == 0, check.stdout + check.stderr


def test_a_bad_frame_count_in_drama_toml_exits_2_before_anything_renders(tmp_path: Path) -> None:
    drama = vertical_drama(tmp_path / "drama", ", frames = 120")
    result = fanren("build", drama, "--profile", "hv")
    assert result.code == 2
    assert result.stderr == (f"error: {drama / 'drama.toml'}: profiles.hv.video.frames: expected a frame count "
                             "tiny HunyuanVideo-1.5 renders: 4k+1 (5, 9, 13, …, 121 for 5 s at 24 fps, …, 241), "
                             "got 120\n")
    assert not (drama / "out").exists()
