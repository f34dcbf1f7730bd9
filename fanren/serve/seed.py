"""The seed's `POST /api/v1/videos/generate` as a fanren drama: one shot, its keyframe the client's picture.

    prompt + image + model_type ──▶ jobs/<id>/drama/ (drama.toml, refs/image, templates/*.j2)
                                 ──▶ keyframe:video (given) ──▶ clip:video (the model_type's engine)

The prompt is the clip's prompt word for word (the job's templates render `{{ shot.action }}` and
nothing else) and the shot's narration, so the episode reads it aloud; the video the seed API
answers with is the clip. Which weights render a model_type is the server profile's choice:

    draft   every model_type is drawn by kenburns (any machine, seconds)
    smoke   the model_type's engine on its tiny random pipeline (CPU, for tests)
    final   the model_type's engine on its real weights (a GPU)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomli_w

from ..compile import Engines
from ..engines import Engine, VideoEngine, engine_class
from ..errors import UsageError
from .given import GivenImageEngine

SHOT = "video"
KEYFRAME, CLIP = f"keyframe:{SHOT}", f"clip:{SHOT}"
PICTURE = "refs/image"
ASPECTS = ("16:9", "9:16", "1:1")
# params that shape the drama; every other param is an option of the video engine
DRAMA_PARAMS = {"seed", "aspect", "fps", "language"}


@dataclass(frozen=True)
class ModelType:
    engine: str
    model: str | None   # the hub id of its weights (None: the engine needs none)
    tiny: str | None    # the fanren-tiny pipeline the smoke profile renders it with


MODEL_TYPES: dict[str, ModelType] = {
    "cogvideox-5b": ModelType("cogvideox", "THUDM/CogVideoX-5b-I2V", "fanren-tiny:cogvideox"),
    "cogvideox1.5-5b": ModelType("cogvideox", "THUDM/CogVideoX1.5-5B-I2V", "fanren-tiny:cogvideox1.5"),
    "svd-xt": ModelType("svd", "stabilityai/stable-video-diffusion-img2vid-xt", "fanren-tiny:svd"),
    "ltx-2": ModelType("ltx2", "Lightricks/LTX-2", "fanren-tiny:ltx2"),
    "wan2.2-ti2v-5b": ModelType("wan", "Wan-AI/Wan2.2-TI2V-5B-Diffusers", "fanren-tiny:wan"),
    "wan2.2-i2v-a14b": ModelType("wan", "Wan-AI/Wan2.2-I2V-A14B-Diffusers", "fanren-tiny:wan-a14b"),
    "hunyuanvideo-1.5": ModelType("hunyuanvideo15", "hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-480p_i2v",
                                  "fanren-tiny:hunyuanvideo15"),
    "kenburns": ModelType("kenburns", None, None),
}


def default_model_type(profile: str) -> str:
    """draft: the Ken Burns stand-in; otherwise the video model of the `final` profile (LTX-2)."""
    return "kenburns" if profile == "draft" else "ltx-2"


def unknown_model_type(name: str) -> str:
    return f"unknown model_type {name!r} (known: {', '.join(MODEL_TYPES)})"


def video_engine_spec(model_type: str, profile: str, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The engine name and options that render `model_type` under `profile`."""
    kind = MODEL_TYPES[model_type]
    if profile == "draft" or kind.engine == "kenburns":
        return "kenburns", {"seconds": 2.0}   # the draft stand-in takes no model options
    if profile == "smoke":
        return kind.engine, {"steps": 2, **options, "model": kind.tiny}
    return kind.engine, {**options, "model": kind.model}


def make_video_engine(name: str, options: dict[str, Any]) -> VideoEngine:
    """Raises UsageError for options the engine refuses (a 422 for the client)."""
    try:
        engine = engine_class(name)(options)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"params: {exc}") from None
    assert isinstance(engine, VideoEngine)
    return engine


def split_params(params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(drama params, engine options), the drama ones checked."""
    drama = {k: v for k, v in params.items() if k in DRAMA_PARAMS}
    if "seed" in drama and (isinstance(drama["seed"], bool) or not isinstance(drama["seed"], int)
                            or drama["seed"] < 0):
        raise UsageError(f"params.seed: expected a whole number ≥ 0, got {drama['seed']!r}")
    if "aspect" in drama and drama["aspect"] not in ASPECTS:
        raise UsageError(f"params.aspect: expected one of {', '.join(ASPECTS)}, got {drama['aspect']!r}")
    if "fps" in drama and (isinstance(drama["fps"], bool) or not isinstance(drama["fps"], int)
                           or not 1 <= drama["fps"] <= 60):
        raise UsageError(f"params.fps: expected a whole number from 1 to 60, got {drama['fps']!r}")
    if "language" in drama and drama["language"] not in ("zh", "en"):
        raise UsageError(f"params.language: expected zh or en, got {drama['language']!r}")
    return drama, {k: v for k, v in params.items() if k not in DRAMA_PARAMS}


def write_seed_drama(folder: Path, prompt: str, picture: bytes, suffix: str, params: dict[str, Any]) -> None:
    """The one-shot drama of a seed request, in `folder` (which must not exist yet)."""
    drama_params, _ = split_params(params)
    language = drama_params.get("language") or ("zh" if re.search(r"[\u3400-\u9fff]", prompt) else "en")
    (folder / "refs").mkdir(parents=True)
    (folder / "templates").mkdir()
    (folder / f"{PICTURE}{suffix}").write_bytes(picture)
    for template in ("keyframe.j2", "motion.j2"):
        (folder / "templates" / template).write_text("{{ shot.action }}\n", encoding="utf-8")
    drama = {
        "drama": {"title": "video", "language": language, "aspect": drama_params.get("aspect", "16:9"),
                  "fps": drama_params.get("fps", 12), "seed": drama_params.get("seed", 0), "subtitles": "none"},
        "scenes": [{"id": "scene", "setting": "the uploaded picture",
                    "shots": [{"id": SHOT, "action": prompt, "narration": prompt}]}],
    }
    (folder / "drama.toml").write_text(tomli_w.dumps(drama), encoding="utf-8")


def seed_engines(profile: str, picture: Path, digest: str, video: Engine) -> Engines:
    """What a seed job renders with: the picture as keyframe, the model_type's video engine, espeak."""
    assert isinstance(video, VideoEngine)
    return Engines(profile=profile, image=GivenImageEngine(picture, digest), video=video,
                   voice=engine_class("espeak")(), mux=engine_class("mux")(), report=engine_class("storyboard")())
