"""What the diffusers engines (flux, cogvideox, svd) share, one job per module:

    weights.py    where weights come from (hub cache, folder, synthetic) and what of them is keyed
    options.py    option names and values, checked when an engine is constructed; the step cache
    speed.py      speed options: attention kernels, fused projections, fp8, regional compile
    placement.py  the device, VRAM modes and placing pipelines; returning memory
    runtime.py    running a pipeline: lazy imports, quiet, a fixed CPU thread count, seeded noise
    outputs.py    a clip's keyframe in, its frames out as a repeatable MP4
    engine.py     DiffusionEngine, the base class that puts them together
    video.py      ImageToVideoEngine on top of it: a spec of what a video model renders, frame counts

Nothing here imports torch or diffusers at module import: identity() must stay cheap, because
`fanren status` computes keys without running anything. Nothing here imports the test helpers
(fanren.testing) either: synthetic weights register themselves (weights.py says how).
"""

from __future__ import annotations

from .engine import DiffusionEngine
from .options import COMMON_OPTIONS, enable_step_cache, step_cache
from .outputs import check_size, clip_frames, keyframe_image, write_clip
from .placement import VramNeed, cuda_available
from .runtime import diffusers_module, generator, quiet, step_progress, torch_dtype
from .speed import SDPA_KERNELS, SPEED_OPTIONS, compile_blocks, set_dispatch_backend
from .weights import (
    COGVIDEOX15_5B_I2V,
    COGVIDEOX_5B_I2V,
    FLUX2_DEV,
    FLUX2_KLEIN_4B,
    FLUX_DEV,
    FLUX_KONTEXT,
    FLUX_SCHNELL,
    LTX2,
    RANDOM_PREFIX,
    SVD_XT,
    TINY_COGVIDEOX15_FRAMES,
    TINY_COGVIDEOX_FRAMES,
    TINY_LTX2_FRAMES,
    TINY_PREFIX,
    TINY_SVD_FRAMES,
    TINY_VIDEO_SIZES,
    TINY_WAN_FRAMES,
    WAN22_I2V_A14B,
    WAN22_TI2V_5B,
    ModelRef,
    diffusers_version,
    load_transformer,
    model_ref,
)

__all__ = [
    "COGVIDEOX15_5B_I2V", "COGVIDEOX_5B_I2V", "COMMON_OPTIONS", "FLUX2_DEV", "FLUX2_KLEIN_4B", "FLUX_DEV",
    "FLUX_KONTEXT", "FLUX_SCHNELL", "LTX2", "RANDOM_PREFIX", "SDPA_KERNELS", "SPEED_OPTIONS", "SVD_XT",
    "TINY_COGVIDEOX15_FRAMES", "TINY_COGVIDEOX_FRAMES", "TINY_LTX2_FRAMES", "TINY_PREFIX",
    "TINY_SVD_FRAMES", "TINY_VIDEO_SIZES", "TINY_WAN_FRAMES", "WAN22_I2V_A14B", "WAN22_TI2V_5B",
    "DiffusionEngine", "ModelRef", "VramNeed", "check_size", "clip_frames", "compile_blocks",
    "cuda_available", "diffusers_module", "diffusers_version", "enable_step_cache", "generator",
    "keyframe_image", "load_transformer", "model_ref", "quiet", "set_dispatch_backend", "step_cache",
    "step_progress", "torch_dtype", "write_clip",
]
