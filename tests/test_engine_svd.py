"""The svd engine on a tiny real Stable Video Diffusion pipeline (CPU, no weights)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("diffusers")

from video_engines import keyframe_png, missing_weights_error, render_clip

from fanren import testing
from fanren.engines.video.svd import SVDEngine
from fanren.errors import UsageError
from fanren.media import probe

TINY = {"model": "fanren-tiny:svd"}


@pytest.fixture(scope="module")
def keyframe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return keyframe_png(tmp_path_factory.mktemp("keyframe"), (48, 32),
                        (20, 80, 40), (10, 4, 30, 20), (250, 250, 250))


@pytest.fixture(scope="module")
def engine() -> SVDEngine:
    return SVDEngine(TINY)


def render(engine: SVDEngine, tmp: Path, keyframe: Path, **params: Any) -> Path:
    return render_clip(engine, tmp, keyframe, {"prompt": "ignored by svd", "size": [48, 32], **params})


def test_clip_has_the_frames_fps_and_size(engine: SVDEngine, keyframe: Path, tmp_path: Path) -> None:
    clip = probe(render(engine, tmp_path, keyframe))
    assert (clip.size, clip.frames, clip.fps) == ((48, 32), 9, 7.0)
    assert clip.duration == pytest.approx(9 / 7, abs=0.01)
    assert engine.loads == 1


def test_same_request_same_bytes_and_seed_changes_them(engine: SVDEngine, keyframe: Path,
                                                       tmp_path: Path) -> None:
    first = render(engine, tmp_path, keyframe).read_bytes()
    assert render(engine, tmp_path, keyframe).read_bytes() == first
    assert render(engine, tmp_path, keyframe, seed=4).read_bytes() != first
    assert engine.loads == 1


def test_options_set_frames_and_fps(keyframe: Path, tmp_path: Path) -> None:
    clip = probe(render(SVDEngine({**TINY, "frames": 5, "fps": 10}), tmp_path, keyframe))
    assert (clip.frames, clip.fps) == (5, 10.0)


def test_native_sizes_of_svd_xt() -> None:
    engine = SVDEngine({})
    assert [engine.native_size(a) for a in ("16:9", "9:16", "1:1")] == [(1024, 576), (576, 1024), (768, 768)]
    assert (engine.native_fps(24), engine.frames, engine.dtype) == (7, 25, "float16")
    assert engine.identity()["model"] == testing.SVD_XT


def test_bad_guidance_range_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match=r"option max_guidance: expected at least min_guidance \(2.0\), got 1.0"):
        SVDEngine({**TINY, "min_guidance": 2.0, "max_guidance": 1.0})


def test_missing_weights_message(tmp_path: Path, keyframe: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "svd-xt"
    message = missing_weights_error(lambda: render(SVDEngine({"model": str(folder)}), tmp_path, keyframe), tmp_path,
                                    monkeypatch)
    assert f"looked for a diffusers pipeline (model_index.json) in {tmp_path / 'svd-xt'}" in message
