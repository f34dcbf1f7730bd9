"""`wan`: a clip from the keyframe with Wan 2.2 image-to-video (diffusers' WanImageToVideoPipeline).

    Wan-AI/Wan2.2-TI2V-5B-Diffusers    121 frames at 24 fps, 1280×704 (704×1280 for 9:16, 960×960 for
                                       1:1); one 5B transformer, the 2.2 VAE (z_dim 48, 16× spatial)
    Wan-AI/Wan2.2-I2V-A14B-Diffusers   81 frames at 16 fps, 1280×720 (720×1280, 960×960); two 14B
                                       experts, the high-noise one before boundary_ratio 0.9 of the
                                       schedule and the low-noise one after, with the 2.1 VAE (8×)

TI2V-5B conditions on the keyframe by writing its latent into the first latent frame and giving that
frame timestep 0 (the pipeline's `expand_timesteps`, set in the checkpoint's model_index.json), so
the clip starts on the keyframe. Both VAEs compress 4 frames into one latent frame after the first:
a clip has 4k+1 frames, other counts are refused with exit 2 before anything loads. Sizes are
multiples of the VAE's spatial factor times the transformer's 2×2 patch (32 for TI2V-5B, 16 for A14B).

The VAE always decodes in tiles: untiled, 121 frames at 1280×704 would be the peak of the run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..base import Request
from ..diffusion import (
    COMMON_OPTIONS,
    SPEED_OPTIONS,
    TINY_VIDEO_SIZES,
    TINY_WAN_FRAMES,
    WAN22_I2V_A14B,
    WAN22_TI2V_5B,
    ModelRef,
    VramNeed,
    check_size,
    compile_blocks,
    generator,
    keyframe_image,
    step_progress,
)
from ..diffusion.video import TINY_VRAM, ImageToVideoEngine, VideoModel, aspect_size, frame_count

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class WanModel(VideoModel):
    """What a Wan 2.2 image-to-video checkpoint renders natively (frames: 4k+1)."""

    size_multiple: int                  # the VAE's spatial factor × the transformer's patch
    max_frames: int
    steps: int
    guidance: float


# Measured on an H200: the loaded pipeline holds 23.2 GB (5.0B transformer, 5.7B umT5, 0.7B VAE in
# bf16). The render's own peak is not measured yet: the rest are estimates. Model offload keeps one
# component on the GPU (umT5, 11.4 GB, is the largest) beside the activations of 27k tokens, so
# it should fit a 24 GB card (Wan's README runs TI2V-5B at 720p on a 24 GB card with offloading).
TI2V_5B = WanModel("Wan2.2-TI2V-5B", {"16:9": (1280, 704), "9:16": (704, 1280), "1:1": (960, 960)},
                   size_multiple=32, frames=121, max_frames=241, fps=24, steps=50, guidance=5.0,
                   vram=VramNeed(full=36.0, model_offload=20.0, group_offload=12.0, sequential_offload=8.0))
# Not measured: two 14B experts (one resident at a time with offloading) and the 2.1 VAE.
I2V_A14B = WanModel("Wan2.2-I2V-A14B", {"16:9": (1280, 720), "9:16": (720, 1280), "1:1": (960, 960)},
                    size_multiple=16, frames=81, max_frames=161, fps=16, steps=40, guidance=3.5,
                    vram=VramNeed(full=80.0, model_offload=40.0, group_offload=16.0, sequential_offload=10.0))
TINY = WanModel("tiny Wan2.2-TI2V", dict(TINY_VIDEO_SIZES), size_multiple=32, frames=TINY_WAN_FRAMES,
                max_frames=241, fps=24, steps=2, guidance=5.0, vram=TINY_VRAM)
TINY_A14B = WanModel("tiny Wan2.2-I2V-A14B", dict(TINY_VIDEO_SIZES), size_multiple=16, frames=TINY_WAN_FRAMES,
                     max_frames=161, fps=16, steps=2, guidance=3.5, vram=TINY.vram)
KNOWN = {WAN22_TI2V_5B: TI2V_5B, WAN22_I2V_A14B: I2V_A14B, "wan": TINY, "wan-a14b": TINY_A14B}


def model_for(ref: ModelRef) -> WanModel:
    """Known ids by name; a local folder by its pipeline config (two experts mean A14B)."""
    if ref.target in KNOWN:
        return KNOWN[ref.target]
    if (ref.config("transformer_2") or {}).get("in_channels"):
        return I2V_A14B
    return TI2V_5B


class WanEngine(ImageToVideoEngine):
    name = "wan"
    version = "1"
    default_model = WAN22_TI2V_5B
    options_known = COMMON_OPTIONS | SPEED_OPTIONS | {"steps", "guidance", "frames", "fps", "compile"}
    # WanAttnProcessor goes through diffusers' dispatch_attention_fn: every kernel can be picked.
    attention_dispatcher = True
    spec: WanModel

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.spec = model_for(self.model)
        self.steps = self._whole("steps", self.spec.steps, low=1, high=500)
        self.guidance = self._number("guidance", self.spec.guidance, low=0, high=30)
        self.frames = frame_count(self.name, self.options, self.spec.label, default=self.spec.frames, step=4,
                                  top=self.spec.max_frames)
        self.fps = self._whole("fps", self.spec.fps, low=1, high=120)
        self.compile = self._flag("compile", False)
        self._image_to_video: Any = None

    def _settings(self) -> dict[str, Any]:
        return {"steps": self.steps, "guidance": self.guidance, "frames": self.frames, "fps": self.fps,
                "vae_tiling": True, "compile": self.compile}

    def native_size(self, aspect: str) -> tuple[int, int]:
        return aspect_size(self.name, self.spec.sizes, aspect, repr(self.model.value))

    # loading ----------------------------------------------------------------

    def _load_pipelines(self, dtype: torch.dtype) -> None:
        from diffusers import WanImageToVideoPipeline

        pipeline = self._pipeline(WanImageToVideoPipeline, self.model, dtype, self.revision)
        pipeline.vae.enable_tiling()
        for transformer in (pipeline.transformer, pipeline.transformer_2):
            if transformer is None:
                continue
            self._prepare_transformer(transformer)
            if self.compile:
                compile_blocks(transformer, ("blocks",), fullgraph=True)
        self._image_to_video = pipeline

    # rendering --------------------------------------------------------------

    def _render(self, request: Request) -> dict[str, Path]:
        width, height = check_size(self.name, request.params["size"], self.spec.size_multiple)
        keyframe = keyframe_image(request, (width, height))
        self.load()
        pipeline = self._image_to_video
        two_experts = pipeline.transformer_2 is not None
        result = self._generate(
            pipeline, image=keyframe, prompt=str(request.params["prompt"]), width=width, height=height,
            num_frames=self.frames, num_inference_steps=self.steps, guidance_scale=self.guidance,
            guidance_scale_2=self.guidance if two_experts else None,
            generator=generator(int(request.params["seed"])), output_type="np",
            callback_on_step_end=step_progress(request, self.steps))
        return self._clip(request, result.frames[0], (width, height))
