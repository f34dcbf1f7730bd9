"""Where a model runs: picking the device and a VRAM mode, placing pipelines, returning memory.

Asked for while planning (resources()), so nothing here imports torch at module import.
"""

from __future__ import annotations

import gc
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...errors import EngineError
from .runtime import diffusers_module

VRAM_MODES = ("auto", "full", "model-offload", "group-offload", "sequential-offload")

GIB = 1024**3


def nvidia_driver_present() -> bool:
    """Whether this machine has an NVIDIA driver, answered without importing torch (for planning)."""
    return Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi") is not None


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def pick_device(requested: str) -> str:
    if requested == "auto":
        return "cuda" if cuda_available() else "cpu"
    if requested.startswith("cuda") and not cuda_available():
        raise EngineError(f"device {requested!r} was asked for, but torch sees no CUDA device "
                          f"(is this the CPU build of torch?)")
    return requested


def free_vram_gb(device: str = "cuda") -> float | None:
    """Free memory of the CUDA device in GiB, or None without CUDA."""
    if not device.startswith("cuda") or not cuda_available():
        return None
    import torch

    free, _total = torch.cuda.mem_get_info(torch.device(device))
    return free / GIB


@dataclass(frozen=True)
class VramNeed:
    """Peak GiB a model needs on the GPU in each mode (measured where a comment says so)."""

    full: float
    model_offload: float
    group_offload: float = 4.0
    sequential_offload: float = 3.0

    def of(self, mode: str) -> float:
        return {"full": self.full, "model-offload": self.model_offload,
                "group-offload": self.group_offload, "sequential-offload": self.sequential_offload}[mode]


def choose_vram_mode(requested: str, need: VramNeed, device: str) -> str:
    """`auto` picks the fastest mode that fits the free memory of `device`."""
    if requested != "auto":
        return requested
    free = free_vram_gb(device)
    return "full" if free is None else mode_that_fits(need, free)


def mode_that_fits(need: VramNeed, free_gib: float) -> str:
    """The fastest mode whose need fits `free_gib` with 5% to spare; sequential offloading at worst."""
    for mode in ("full", "model-offload", "group-offload"):
        if need.of(mode) * 1.05 <= free_gib:
            return mode
    return "sequential-offload"


class Placement:
    """Puts pipelines where a vram mode wants them, and moves hooks when another pipeline takes over.

    Two pipelines may share components (FLUX.1-dev and FLUX.1 Kontext share the text encoders and
    the VAE). The offload hooks of accelerate belong to one pipeline at a time, so `activate` re-hooks
    when the pipeline that runs next is another one. Group offloading hooks live on the modules and
    are applied once per module.
    """

    def __init__(self, mode: str, device: str) -> None:
        self.mode = mode if device != "cpu" else "full"  # offloading to the CPU from the CPU is a no-op
        self.device = device
        self._active: Any = None
        self._grouped: set[int] = set()

    def activate(self, pipeline: Any) -> None:
        if pipeline is self._active and self.mode != "full":
            return
        if self.mode == "full":
            pipeline.to(self.device)
        elif self.mode == "model-offload":
            pipeline.enable_model_cpu_offload(device=self.device)
        elif self.mode == "sequential-offload":
            pipeline.enable_sequential_cpu_offload(device=self.device)
        else:
            self._group_offload(pipeline)
        self._active = pipeline

    def _group_offload(self, pipeline: Any) -> None:
        import torch

        apply_group_offloading = diffusers_module().hooks.apply_group_offloading
        for component in pipeline.components.values():
            if not isinstance(component, torch.nn.Module) or id(component) in self._grouped:
                continue
            # One transformer block at a time, the next one copied in on a side stream while the
            # current one computes: close to full speed with a few GiB resident.
            component.to("cpu")
            apply_group_offloading(component, onload_device=torch.device(self.device),
                                   offload_type="block_level", num_blocks_per_group=1, use_stream=True)
            self._grouped.add(id(component))

    def release(self) -> None:
        self._active = None
        self._grouped.clear()


def free_memory(device: str) -> None:
    """Return freed tensors' memory to the device (call after dropping the last reference)."""
    gc.collect()
    if device.startswith("cuda") and cuda_available():
        import torch

        torch.cuda.empty_cache()
