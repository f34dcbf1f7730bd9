"""`hunyuanvideo15`: a clip from the keyframe with HunyuanVideo-1.5 image-to-video (diffusers).

    hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-480p_i2v    848×480, 480×832, 640×640 (default)
    hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-720p_i2v    1280×720, 720×1248, 960×960
    hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-480p_i2v_step_distilled
                                                                  the 480p sizes in 8 steps, no CFG

121 frames (5 s) at 24 fps by default. The VAE encodes 4 frames into one latent frame after the
first, so a clip has 4k+1 frames, up to 241 (10 s, the longest clips the model was trained on);
other counts are refused with exit 2 before anything loads.

The pipeline takes no size: it picks one among buckets of about target_size² pixels (640² for
480p, 960² for 720p) from the keyframe's aspect, and crops the keyframe to it. The sizes above are
those buckets that a keyframe of that very size maps back to. (A 9:16 picture maps to 480×848, but
a 480×848 keyframe to 480×832: the pipeline compares its buckets' ratios rounded to five places
with the keyframe's unrounded one.) So keyframes are rendered at these sizes and reach the
transformer uncropped.

The pipeline has no guidance_scale argument and no step callback: guidance is its `guider`
component (replaced with the chosen scale at load), and progress counts the scheduler's steps.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import EngineError, OptionError
from ..base import Request
from ..diffusion import (
    COMMON_OPTIONS,
    ModelRef,
    VramNeed,
    check_size,
    compile_blocks,
    generator,
    keyframe_image,
)
from ..diffusion.video import (
    TINY_VRAM,
    ImageToVideoEngine,
    VideoModel,
    aspect_size,
    frame_count,
    offered_sizes,
)
from ..diffusion.weights import (
    HUNYUANVIDEO15_480P_I2V,
    HUNYUANVIDEO15_480P_I2V_STEP_DISTILLED,
    HUNYUANVIDEO15_720P_I2V,
    TINY_HUNYUANVIDEO15_FRAMES,
    TINY_HUNYUANVIDEO15_SIZES,
    TINY_HUNYUANVIDEO15_TARGET_SIZE,
)

if TYPE_CHECKING:
    import torch

MAX_FRAMES = 241    # 10 s at 24 fps


@dataclass(frozen=True)
class HunyuanVideo15Model(VideoModel):
    """What a HunyuanVideo-1.5 I2V checkpoint renders natively.

    Its sizes, per aspect, are the pipeline's buckets, each a fixed point of it.
    """

    target_size: int                    # the transformer's target_size: buckets of about its square
    steps: int
    guidance: float                     # 1.0: the checkpoint was distilled without CFG


# Weights: 34.6 GB in bf16 (transformer 8.3 B, Qwen2.5-VL-7B's text model 7.1 B, VAE 1.3 B, SigLIP
# 0.43 B, ByT5 0.22 B). Activations are ruled by the attention mask the transformer builds for every
# block: video and text tokens squared, as bools and again as the kernel's float mask (121 frames
# at 480×832: 50k tokens, ~11 GB; at 720×1248: 111k tokens, ~49 GB). 480p full measured on an H200
# (46.1 GB, docs/performance.md); the other modes are the weights they keep resident plus that.
VRAM_480P = VramNeed(full=46.2, model_offload=28.0, group_offload=14.0, sequential_offload=12.0)
VRAM_720P = VramNeed(full=84.0, model_offload=66.0, group_offload=52.0, sequential_offload=50.0)
SIZES_480P = {"16:9": (848, 480), "9:16": (480, 832), "1:1": (640, 640)}
SIZES_720P = {"16:9": (1280, 720), "9:16": (720, 1248), "1:1": (960, 960)}

# 121 frames: 5 s at 24 fps.
I2V_480P = HunyuanVideo15Model("HunyuanVideo-1.5 480p I2V", SIZES_480P, frames=121, fps=24, target_size=640,
                               steps=50, guidance=6.0, vram=VRAM_480P)
I2V_720P = HunyuanVideo15Model("HunyuanVideo-1.5 720p I2V", SIZES_720P, frames=121, fps=24, target_size=960,
                               steps=50, guidance=6.0, vram=VRAM_720P)
# Distilled to 8–12 steps (mean flow) and without classifier-free guidance: one pass a step.
I2V_480P_STEP_DISTILLED = HunyuanVideo15Model("HunyuanVideo-1.5 480p I2V step-distilled", SIZES_480P,
                                              frames=121, fps=24, target_size=640, steps=8, guidance=1.0,
                                              vram=VRAM_480P)
TINY = HunyuanVideo15Model("tiny HunyuanVideo-1.5", dict(TINY_HUNYUANVIDEO15_SIZES),
                           frames=TINY_HUNYUANVIDEO15_FRAMES, fps=24, target_size=TINY_HUNYUANVIDEO15_TARGET_SIZE,
                           steps=2, guidance=6.0, vram=TINY_VRAM)
KNOWN = {HUNYUANVIDEO15_480P_I2V: I2V_480P, HUNYUANVIDEO15_720P_I2V: I2V_720P,
         HUNYUANVIDEO15_480P_I2V_STEP_DISTILLED: I2V_480P_STEP_DISTILLED, "hunyuanvideo15": TINY}


def model_for(ref: ModelRef, engine: str) -> HunyuanVideo15Model:
    """The checkpoint's native behaviour: known ids by name, local folders by their transformer config."""
    if ref.target in KNOWN:
        return KNOWN[ref.target]
    config = ref.config("transformer")
    if config is None:  # a hub id not downloaded yet, or a folder not there: loading will say so
        return I2V_480P
    if config.get("task_type") != "i2v":
        raise OptionError(engine, "model", "a HunyuanVideo-1.5 image-to-video checkpoint (task_type \"i2v\")",
                          f"{ref.value!r}, whose transformer has task_type {config.get('task_type')!r}")
    target_size = config.get("target_size")
    if target_size == 960:
        return I2V_720P
    if target_size == 640:
        return I2V_480P_STEP_DISTILLED if config.get("use_meanflow") else I2V_480P
    raise OptionError(engine, "model", "a HunyuanVideo-1.5 checkpoint of target_size 640 (480p) or 960 (720p)",
                      f"{ref.value!r}, whose transformer has target_size {target_size!r}")


class HunyuanVideo15Engine(ImageToVideoEngine):
    name = "hunyuanvideo15"
    version = "1"
    default_model = HUNYUANVIDEO15_480P_I2V
    options_known = COMMON_OPTIONS | {"steps", "guidance", "frames", "fps", "compile", "attention"}
    # HunyuanVideo15AttnProcessor2_0 goes through diffusers' dispatch_attention_fn.
    attention_dispatcher = True
    spec: HunyuanVideo15Model

    def __init__(self, options: dict[str, Any] | None = None) -> None:
        super().__init__(options)
        self.spec = model_for(self.model, self.name)
        self.steps = self._whole("steps", self.spec.steps, low=1, high=500)
        self.guidance = self._number("guidance", self.spec.guidance, low=1, high=30)
        self.frames = frame_count(self.name, self.options, self.spec.label, default=self.spec.frames, step=4,
                                  top=MAX_FRAMES, landmarks=("121 for 5 s at 24 fps",))
        self.fps = self._whole("fps", self.spec.fps, low=1, high=120)
        self.compile = self._flag("compile", False)
        self._image_to_video: Any = None

    def _settings(self) -> dict[str, Any]:
        return {"steps": self.steps, "guidance": self.guidance, "frames": self.frames, "fps": self.fps,
                "vae_tiling": True, "compile": self.compile}

    def native_size(self, aspect: str) -> tuple[int, int]:
        return aspect_size(self.name, self.spec.sizes, aspect,
                           f"{self.model.value!r}, which renders {offered_sizes(self.spec.sizes)}")

    # loading ----------------------------------------------------------------

    def _load_pipelines(self, dtype: torch.dtype) -> None:
        from diffusers import HunyuanVideo15ImageToVideoPipeline

        pipeline = self._pipeline(HunyuanVideo15ImageToVideoPipeline, self.model, dtype, self.revision)
        pipeline.guider = pipeline.guider.new(guidance_scale=self.guidance)
        pipeline.vae.enable_tiling()
        self._prepare_transformer(pipeline.transformer)
        if self.compile:
            compile_blocks(pipeline.transformer)
        self._image_to_video = pipeline

    # rendering --------------------------------------------------------------

    def _render(self, request: Request) -> dict[str, Path]:
        width, height = check_size(self.name, request.params["size"])
        if (width, height) not in self.spec.sizes.values():
            offered = ", ".join(f"{w}×{h}" for w, h in self.spec.sizes.values())
            raise EngineError(f"{self.spec.label} renders {offered} (the pipeline picks its size from the "
                              f"keyframe's aspect), asked for {width}×{height}")
        keyframe = keyframe_image(request, (width, height))
        self.load()
        pipeline = self._image_to_video
        with reporting_steps(pipeline.scheduler, request, self.steps):
            result = self._generate(
                pipeline, image=keyframe, prompt=str(request.params["prompt"]), num_frames=self.frames,
                num_inference_steps=self.steps, generator=generator(int(request.params["seed"])),
                output_type="np")
        return self._clip(request, result.frames[0], (width, height))


@contextmanager
def reporting_steps(scheduler: Any, request: Request, steps: int) -> Iterator[None]:
    """Report each denoising step of `scheduler` as the node's progress.

    HunyuanVideo15ImageToVideoPipeline takes no callback_on_step_end, and its transformer runs once
    or twice a step (with and without the prompt, as the guider decides), so the scheduler's
    step() is the one call per step: wrapped on this instance for the length of one render.
    """
    step = scheduler.step
    done = 0

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal done
        result = step(*args, **kwargs)
        done += 1
        request.progress(min(1.0, done / steps), f"step {done}/{steps}")
        return result

    scheduler.step = counted
    try:
        yield
    finally:
        del scheduler.step  # the class's method again
