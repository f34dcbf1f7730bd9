"""The kenburns engine: real ffmpeg renders, checked with ffprobe and decoded frames."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops, ImageDraw, ImageStat

from fanren.engines.base import Request
from fanren.engines.video.kenburns import MOVES, KenBurnsEngine, move_for_seed
from fanren.errors import EngineError, OptionError
from fanren.media import encoder_platform, probe


@pytest.fixture
def keyframe(tmp_path: Path) -> Path:
    """A 640×360 picture with detail everywhere, so any move changes every frame."""
    image = Image.new("RGB", (640, 360), (30, 40, 60))
    draw = ImageDraw.Draw(image)
    for i in range(0, 640, 40):
        draw.rectangle((i, 0, i + 19, 359), fill=(60 + i // 4, 90, 140))
    for j in range(0, 360, 45):
        draw.line((0, j, 639, j), fill=(240, 220, 120), width=3)
    draw.ellipse((260, 120, 380, 240), fill=(220, 60, 60))
    path = tmp_path / "keyframe.png"
    image.save(path)
    return path


def clip_request(out_dir: Path, keyframe: Path, **params: Any) -> Request:
    out_dir.mkdir(parents=True, exist_ok=True)
    base: dict[str, Any] = {"shot_id": "s1-2", "prompt": "", "seed": 0, "size": [320, 180], "fps": 12}
    base.update(params)
    return Request(node_id="clip:s1-2", kind="clip", params=base,
                   inputs={"keyframe:s1-2": {"image.png": keyframe}}, out_dir=out_dir)


def render(request: Request, **options: Any) -> Path:
    outputs = KenBurnsEngine(options).run(request)
    assert set(outputs) == {"clip.mp4"}
    assert outputs["clip.mp4"].parent == request.out_dir
    return outputs["clip.mp4"]


def decoded_frames(clip: Path) -> int:
    """Frames counted by decoding the stream, not read from the container header."""
    proc = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
         "-show_entries", "stream=nb_read_frames", "-of", "json", str(clip)],
        capture_output=True, text=True, check=True,
    )
    return int(json.loads(proc.stdout)["streams"][0]["nb_read_frames"])


def frame(clip: Path, index: int, out: Path) -> Image.Image:
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(clip), "-vf", f"select=eq(n\\,{index})",
                    "-frames:v", "1", str(out)], check=True)
    with Image.open(out) as image:
        return image.convert("RGB")


def mean_difference(a: Image.Image, b: Image.Image) -> float:
    return sum(ImageStat.Stat(ImageChops.difference(a, b)).mean) / 3


def test_a_default_clip_is_four_seconds_of_720p(tmp_path: Path, keyframe: Path) -> None:
    clip = render(clip_request(tmp_path, keyframe, size=[1280, 720], fps=12))
    media = probe(clip)
    assert media.size == (1280, 720)
    assert media.fps == 12
    assert media.frames == 48
    assert decoded_frames(clip) == 48
    assert media.duration == pytest.approx(4.0, abs=0.01)
    assert media.audio is None
    assert media.video is not None
    assert media.video["codec_name"] == "h264"
    assert media.video["pix_fmt"] == "yuv420p"


@pytest.mark.parametrize(("seconds", "fps", "frames"), [(1.0, 12, 12), (2.5, 10, 25), (0.5, 25, 12)])
def test_frame_count_is_seconds_times_fps_rounded(tmp_path: Path, keyframe: Path, seconds: float,
                                                  fps: int, frames: int) -> None:
    clip = render(clip_request(tmp_path, keyframe, fps=fps), seconds=seconds)
    media = probe(clip)
    assert media.frames == frames
    assert decoded_frames(clip) == frames
    assert media.fps == fps
    assert media.duration == pytest.approx(frames / fps, abs=0.01)


def test_vertical_clips_work(tmp_path: Path, keyframe: Path) -> None:
    clip = render(clip_request(tmp_path, keyframe, size=[180, 320]), seconds=1.0)
    media = probe(clip)
    assert media.size == (180, 320)
    assert decoded_frames(clip) == 12


def test_same_request_gives_identical_bytes(tmp_path: Path, keyframe: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    clips = set()
    # glibc fills fresh and freed memory with this byte: an encoder that reads memory it never
    # wrote (x264's AVX-512 code does, unless fanren.media pins the CPU features) differs
    for perturb in ("0", "77", "165"):
        monkeypatch.setenv("MALLOC_PERTURB_", perturb)
        clips.add(render(clip_request(tmp_path / perturb, keyframe), seconds=1.0).read_bytes())
    assert len(clips) == 1


def test_every_move_gives_other_bytes(tmp_path: Path, keyframe: Path) -> None:
    clips = {seed: render(clip_request(tmp_path / str(seed), keyframe, seed=seed), seconds=0.5).read_bytes()
             for seed in range(len(MOVES))}
    assert len(set(clips.values())) == len(MOVES)
    assert {move_for_seed(seed).name for seed in clips} == {move.name for move in MOVES}


def test_zoom_in_starts_on_the_keyframe_and_moves_away(tmp_path: Path, keyframe: Path) -> None:
    assert move_for_seed(0).name == "zoom in"
    clip = render(clip_request(tmp_path, keyframe, size=[640, 360], seed=0), seconds=1.0)
    with Image.open(keyframe) as original:
        still = original.convert("RGB")
    first = frame(clip, 0, tmp_path / "first.png")
    last = frame(clip, 11, tmp_path / "last.png")
    assert mean_difference(first, still) < 4      # only compression
    assert mean_difference(last, still) > 15      # 10% closer: every stripe has moved
    middle = frame(clip, 6, tmp_path / "middle.png")
    assert 0 < mean_difference(middle, first) and 0 < mean_difference(middle, last)


def test_a_keyframe_of_another_size_is_fitted(tmp_path: Path, keyframe: Path) -> None:
    clip = render(clip_request(tmp_path, keyframe, size=[200, 200]), seconds=0.5)
    assert probe(clip).size == (200, 200)


def test_identity_holds_the_effective_seconds_and_the_encoder_platform() -> None:
    assert KenBurnsEngine().identity()["options"] == {"seconds": 4.0}
    assert KenBurnsEngine().identity()["encoder"] == encoder_platform()
    assert KenBurnsEngine({"seconds": 2}).identity()["options"] == {"seconds": 2.0}
    assert KenBurnsEngine().identity() != KenBurnsEngine({"seconds": 3}).identity()


@pytest.mark.parametrize("seconds", [0, -1, "4", True, 500])
def test_a_bad_seconds_option_is_an_option_error(seconds: object) -> None:
    with pytest.raises(OptionError) as caught:
        KenBurnsEngine({"seconds": seconds})
    assert str(caught.value) == ("engine kenburns: option seconds: expected a number of seconds in (0, 120], "
                                 f"got {seconds!r}")
    assert caught.value.exit_code == 2


def test_an_unknown_option_is_refused_with_the_known_ones() -> None:
    with pytest.raises(OptionError, match=r"^engine kenburns: option colour: expected an option of engine "
                                          r"'kenburns' \(known options: seconds\)$"):
        KenBurnsEngine({"colour": 2})


def test_a_missing_keyframe_is_an_engine_error(tmp_path: Path) -> None:
    request = clip_request(tmp_path, tmp_path / "missing.png")
    with pytest.raises(EngineError, match="ffmpeg failed"):
        KenBurnsEngine({"seconds": 0.5}).run(request)
