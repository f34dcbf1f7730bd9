"""`svd`: a clip from the keyframe with Stable Video Diffusion (SVD-XT, diffusers).

SVD animates the picture alone: it reads no prompt. It is the fallback when CogVideoX does not fit
(about 12 GB in the full mode, any aspect), at 25 frames of 1024×576 shown at 7 fps.

The UNet was micro-conditioned on the frame rate minus one; the pipeline subtracts it, so `fps`
here is the rate the clip plays at.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import OptionError
from ..base import Request
from ..diffusion import (
    COMMON_OPTIONS,
    SVD_XT,
    TINY_SVD_FRAMES,
    TINY_VIDEO_SIZES,
    VramNeed,
    check_size,
    generator,
    keyframe_image,
    step_progress,
)
from ..diffusion.video import TINY_VRAM, ImageToVideoEngine, VideoModel, aspect_size

if TYPE_CHECKING:
    import torch

# Estimated, not yet measured: a 1.5B UNet and a 0.6B image encoder in fp16.
XT = VideoModel("SVD-XT", {"16:9": (1024, 576), "9:16": (576, 1024), "1:1": (768, 768)}, frames=25, fps=7,
                vram=VramNeed(full=12.0, model_offload=9.0, group_offload=6.0, sequential_offload=4.0))
TINY = VideoModel("tiny SVD", dict(TINY_VIDEO_SIZES), frames=TINY_SVD_FRAMES, fps=7, vram=TINY_VRAM)


class SVDEngine(ImageToVideoEngine):
    name = "svd"
    version = "1"
    default_model = SVD_XT
    default_dtype = "float16"  # the checkpoint's own precision
    # `attention` only: the UNet's processors call F.scaled_dot_product_attention themselves, and it
    # has no fused-projection or fp8 path worth its 1.5 B parameters.
    options_known = COMMON_OPTIONS | {"steps", "frames", "fps", "min_guidance", "max_guidance",
                                      "motion_bucket_id", "noise_aug_strength", "decode_chunk_size",
                                      "attention"}

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        tiny = self.model.source == "tiny"
        self.spec = TINY if tiny else XT
        self.steps = self._whole("steps", 2 if tiny else 25, low=1, high=500)
        self.frames = self._whole("frames", self.spec.frames, low=2, high=64)
        self.fps = self._whole("fps", self.spec.fps, low=2, high=60)
        self.min_guidance = self._number("min_guidance", 1.0, low=0, high=30)
        self.max_guidance = self._number("max_guidance", 3.0, low=0, high=30)
        if self.max_guidance < self.min_guidance:
            raise OptionError(self.name, "max_guidance", f"at least min_guidance ({self.min_guidance})",
                              repr(self.options.get("max_guidance", self.max_guidance)))
        self.motion_bucket_id = self._whole("motion_bucket_id", 127, low=0, high=255)
        self.noise_aug_strength = self._number("noise_aug_strength", 0.02, low=0, high=1)
        # Decoding 8 frames at a time bounds the VAE's memory; the chunking changes the bytes.
        self.decode_chunk_size = self._whole("decode_chunk_size", 8, low=1, high=64)
        self._image_to_video: Any = None

    def _settings(self) -> dict[str, Any]:
        return {"steps": self.steps, "frames": self.frames, "fps": self.fps,
                "min_guidance": self.min_guidance, "max_guidance": self.max_guidance,
                "motion_bucket_id": self.motion_bucket_id, "noise_aug_strength": self.noise_aug_strength,
                "decode_chunk_size": self.decode_chunk_size}

    def native_size(self, aspect: str) -> tuple[int, int]:
        return aspect_size(self.name, self.spec.sizes, aspect, repr(self.model.value),
                           hint=f"svd renders {', '.join(self.spec.sizes)}")

    def _load_pipelines(self, dtype: torch.dtype) -> None:
        from diffusers import StableVideoDiffusionPipeline

        self._image_to_video = self._pipeline(StableVideoDiffusionPipeline, self.model, dtype, self.revision)

    def _render(self, request: Request) -> dict[str, Path]:
        width, height = check_size(self.name, request.params["size"])
        keyframe = keyframe_image(request, (width, height))
        self.load()
        pipeline = self._image_to_video
        result = self._generate(
            pipeline, image=keyframe, width=width, height=height, num_frames=self.frames,
            num_inference_steps=self.steps, min_guidance_scale=self.min_guidance,
            max_guidance_scale=self.max_guidance, fps=self.fps, motion_bucket_id=self.motion_bucket_id,
            noise_aug_strength=self.noise_aug_strength, decode_chunk_size=self.decode_chunk_size,
            generator=generator(int(request.params["seed"])), output_type="np",
            callback_on_step_end=step_progress(request, self.steps))
        return self._clip(request, result.frames[0], (width, height))
