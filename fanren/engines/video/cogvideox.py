"""`cogvideox`: a clip from the keyframe with CogVideoX image-to-video (diffusers).

    THUDM/CogVideoX-5b-I2V       49 frames at 8 fps, 720×480 only (its positional table was learned
                                 at that size, so 9:16 and 1:1 are refused rather than distorted)
    THUDM/CogVideoX1.5-5B-I2V    81 frames at 16 fps, 1360×768 (768×1360 for 9:16, 768×768 for 1:1)

The VAE encodes 4 frames into one latent frame after the first, so a clip has 4k+1 frames; the
transformer also halves time for 1.5, and both were trained at 8k+1 (16k+1 for 1.5): other
counts are refused with exit 2 before anything loads.

The VAE always decodes in tiles: at 720×480×49 an untiled decode is the peak of the whole run.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import EngineError
from ..base import Request
from ..diffusion import (
    COGVIDEOX15_5B_I2V,
    COGVIDEOX_5B_I2V,
    COMMON_OPTIONS,
    SPEED_OPTIONS,
    TINY_COGVIDEOX15_FRAMES,
    TINY_COGVIDEOX_FRAMES,
    TINY_VIDEO_SIZES,
    ModelRef,
    VramNeed,
    check_size,
    compile_blocks,
    enable_step_cache,
    generator,
    keyframe_image,
    step_cache,
    step_progress,
)
from ..diffusion.video import (
    TINY_VRAM,
    ImageToVideoEngine,
    VideoModel,
    aspect_size,
    frame_count,
    offered_sizes,
)

if TYPE_CHECKING:
    import torch

ASPECTS = ("16:9", "9:16", "1:1")


@dataclass(frozen=True)
class CogVideoXModel(VideoModel):
    """What a CogVideoX I2V checkpoint renders natively."""

    frame_step: int                     # frames must be frame_step·k + 1
    max_frames: int
    fixed_size: tuple[int, int] | None = None  # a learned positional table allows this size only


# Measured on an H100 (bf16, 720×480, 49 frames, tiled VAE): 23.9 GB peak, 13.9 GB with model offload.
FIVE_B = CogVideoXModel("CogVideoX-5b-I2V", {"16:9": (720, 480)}, frames=49, fps=8, frame_step=8,
                        max_frames=49, vram=VramNeed(full=24.0, model_offload=14.0, group_offload=8.0,
                                                     sequential_offload=5.0),
                        fixed_size=(720, 480))
# Not yet measured: 81 frames at 1360×768 carry 3.3× the tokens of the 5b clip.
ONE_FIVE = CogVideoXModel("CogVideoX1.5-5B-I2V",
                          {"16:9": (1360, 768), "9:16": (768, 1360), "1:1": (768, 768)},
                          frames=81, fps=16, frame_step=16, max_frames=161,
                          vram=VramNeed(full=32.0, model_offload=20.0, group_offload=12.0,
                                        sequential_offload=8.0))
TINY = CogVideoXModel("tiny CogVideoX", dict(TINY_VIDEO_SIZES), frames=TINY_COGVIDEOX_FRAMES,
                      fps=8, frame_step=8, max_frames=49, vram=TINY_VRAM)
TINY_ONE_FIVE = CogVideoXModel("tiny CogVideoX1.5", dict(TINY_VIDEO_SIZES),
                               frames=TINY_COGVIDEOX15_FRAMES, fps=16, frame_step=16, max_frames=161,
                               vram=TINY_VRAM)
KNOWN = {COGVIDEOX_5B_I2V: FIVE_B, COGVIDEOX15_5B_I2V: ONE_FIVE,
         "cogvideox": TINY, "cogvideox1.5": TINY_ONE_FIVE}


def model_for(ref: ModelRef) -> CogVideoXModel:
    """The checkpoint's native behaviour: known ids by name, local folders by their transformer config."""
    if ref.target in KNOWN:
        return KNOWN[ref.target]
    config = ref.config("transformer") or {}
    if config.get("patch_size_t"):
        return ONE_FIVE
    if config.get("use_learned_positional_embeddings") and config.get("sample_width"):
        size = (int(config["sample_width"]) * 8, int(config["sample_height"]) * 8)
        return replace(FIVE_B, sizes={"16:9": size}, fixed_size=size)
    return FIVE_B


class CogVideoXEngine(ImageToVideoEngine):
    name = "cogvideox"
    version = "1"
    default_model = COGVIDEOX_5B_I2V
    options_known = COMMON_OPTIONS | SPEED_OPTIONS | {"steps", "guidance", "dynamic_cfg", "frames", "fps",
                                                      "compile", "cache"}
    # CogVideoXAttnProcessor2_0 calls F.scaled_dot_product_attention itself, so `attention` picks
    # among PyTorch's kernels around the denoising call, not through diffusers' dispatcher.
    attention_dispatcher = False
    spec: CogVideoXModel

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.spec = model_for(self.model)
        tiny = self.model.source == "tiny"
        self.steps = self._whole("steps", 2 if tiny else 50, low=1, high=500)
        self.guidance = self._number("guidance", 6.0, low=0, high=30)
        self.dynamic_cfg = self._flag("dynamic_cfg", True)
        self.frames = frame_count(self.name, self.options, self.spec.label, default=self.spec.frames,
                                  step=self.spec.frame_step, top=self.spec.max_frames)
        self.fps = self._whole("fps", self.spec.fps, low=1, high=120)
        self.compile = self._flag("compile", False)
        self.cache = step_cache(self.name, self.options.get("cache"))
        self._image_to_video: Any = None

    def _settings(self) -> dict[str, Any]:
        return {"steps": self.steps, "guidance": self.guidance, "dynamic_cfg": self.dynamic_cfg,
                "frames": self.frames, "fps": self.fps, "vae_tiling": True, "compile": self.compile,
                "cache": self.cache}

    def native_size(self, aspect: str) -> tuple[int, int]:
        return aspect_size(self.name, self.spec.sizes, aspect,
                           f"{self.model.value!r}, which renders only {offered_sizes(self.spec.sizes)}",
                           hint=f"for {aspect} use model = \"{COGVIDEOX15_5B_I2V}\" or the svd engine")

    # loading ----------------------------------------------------------------

    def _load_pipelines(self, dtype: torch.dtype) -> None:
        from diffusers import CogVideoXImageToVideoPipeline

        pipeline = self._pipeline(CogVideoXImageToVideoPipeline, self.model, dtype, self.revision)
        pipeline.vae.enable_tiling()
        self._prepare_transformer(pipeline.transformer)
        enable_step_cache(pipeline.transformer, self.cache)
        if self.compile:
            compile_blocks(pipeline.transformer, ("transformer_blocks",), fullgraph=self.cache is None)
        self._image_to_video = pipeline

    # rendering --------------------------------------------------------------

    def _render(self, request: Request) -> dict[str, Path]:
        width, height = check_size(self.name, request.params["size"])
        fixed = self.spec.fixed_size
        if fixed is not None and (width, height) != fixed:
            raise EngineError(f"{self.spec.label} renders only {fixed[0]}×{fixed[1]}, "
                              f"asked for {width}×{height}")
        keyframe = keyframe_image(request, (width, height))
        self.load()
        pipeline = self._image_to_video
        result = self._generate(
            pipeline, image=keyframe, prompt=str(request.params["prompt"]), width=width, height=height,
            num_frames=self.frames, num_inference_steps=self.steps, guidance_scale=self.guidance,
            use_dynamic_cfg=self.dynamic_cfg, generator=generator(int(request.params["seed"])),
            max_sequence_length=pipeline.transformer.config.max_text_seq_length, output_type="np",
            callback_on_step_end=step_progress(request, self.steps))
        return self._clip(request, result.frames[0], (width, height))

