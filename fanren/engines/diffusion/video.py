"""What the image-to-video engines (cogvideox, wan, ltx2, hunyuanvideo15, svd) share.

Each engine keeps its checkpoints in a table of `VideoModel`s (or a subclass that adds what only it
needs), and derives its defaults from the one its `model` names. `ImageToVideoEngine` answers the
questions the compiler asks of a clip engine from that spec, and writes the clip.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import OptionError
from ..base import Request, VideoEngine
from .engine import DiffusionEngine
from .outputs import clip_frames, write_clip
from .placement import VramNeed

# A tiny model fits anywhere: what the scheduler reserves for it is a token.
TINY_VRAM = VramNeed(full=0.5, model_offload=0.5, group_offload=0.5, sequential_offload=0.5)


@dataclass(frozen=True)
class VideoModel:
    """What an image-to-video checkpoint renders natively."""

    label: str
    sizes: dict[str, tuple[int, int]]   # per aspect
    frames: int                         # the clip's length unless `frames` is given
    fps: int
    vram: VramNeed


def frame_count(engine: str, options: Mapping[str, Any], label: str, *, default: int, step: int, top: int,
                landmarks: tuple[str, ...] = ()) -> int:
    """The `frames` option, refused unless it is step·k + 1 (a VAE that packs `step` frames in one) up to `top`.

    `landmarks` are counts worth naming between the first few and `top` ("121 for 5 s at 24 fps").
    """
    value = options.get("frames", default)
    if isinstance(value, bool) or not isinstance(value, int) or value < step + 1 or value > top \
            or (value - 1) % step:
        counts = [str(step * k + 1) for k in range(1, 4)] + ["…"]
        for landmark in landmarks:
            counts += [landmark, "…"]
        raise OptionError(engine, "frames", f"a frame count {label} renders: {step}k+1 "
                          f"({', '.join([*counts, str(top)])})", repr(value))
    return value


def aspect_size(engine: str, sizes: Mapping[str, tuple[int, int]], aspect: str, got: str,
                hint: str | None = None) -> tuple[int, int]:
    """The model's size for the drama's aspect; the project checks the aspect, but a model may lack it."""
    size = sizes.get(aspect)
    if size is None:
        raise OptionError(engine, "model", f"a model that renders the drama's aspect {aspect}", got, hint=hint)
    return size


def offered_sizes(sizes: Mapping[str, tuple[int, int]]) -> str:
    """"16:9 (1280×720), 9:16 (720×1280)": the sizes a model renders, for an error message."""
    return ", ".join(f"{aspect} ({width}×{height})" for aspect, (width, height) in sizes.items())


class ImageToVideoEngine(DiffusionEngine, VideoEngine):
    """A diffusers image-to-video engine: one pipeline, a spec of what its model renders, a clip out.

    Subclasses set `spec`, `frames` and `fps` in __init__, build `_image_to_video` in
    `_load_pipelines`, and end `_render` with `_clip`.
    """

    spec: VideoModel
    frames: int
    fps: int
    _image_to_video: Any

    def vram_need(self) -> VramNeed:
        return self.spec.vram

    def native_fps(self, drama_fps: int) -> int:
        return self.fps

    def _drop_pipelines(self) -> None:
        self._image_to_video = None

    def _clip(self, request: Request, frames: Any, size: tuple[int, int]) -> dict[str, Path]:
        """The pipeline's frames, checked against the ask, as the node's clip.mp4."""
        pixels = clip_frames(self.name, frames, self.frames, size)
        return {"clip.mp4": write_clip(pixels, self.fps, request.out_dir / "clip.mp4")}
