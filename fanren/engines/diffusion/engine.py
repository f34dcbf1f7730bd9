"""The base class of the diffusers engines: options, identity, loading, placement, rendering."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ...errors import OptionError
from ...media import encoder_platform
from ..base import Engine, Request, Resources
from .options import COMMON_OPTIONS, DTYPES, choice, flag, number, text, whole
from .placement import (
    VRAM_MODES,
    Placement,
    VramNeed,
    choose_vram_mode,
    cuda_available,
    free_memory,
    nvidia_driver_present,
    pick_device,
)
from .runtime import cpu_thread_count, eval_mode, quiet, torch_dtype, torch_threads
from .speed import (
    QUANTIZE,
    attention_choice,
    check_speed_device,
    quantize_fp8,
    sdpa_preferring,
    set_dispatch_backend,
)
from .weights import ModelRef, diffusers_version, load_pipeline, model_ref

if TYPE_CHECKING:
    import torch


class DiffusionEngine(Engine):
    """Options, loading and memory shared by the diffusers engines.

    Subclasses name their options and defaults, build their pipelines in `_load_pipelines`, drop
    them in `_drop_pipelines`, render in `_render`, and add what changes their bytes in `_settings`.
    The model loads once: load() is a no-op while loaded, run() loads on first use, unload() returns
    the memory. A pipeline is not thread-safe (its scheduler counts steps), so one engine renders one
    node at a time, even when the tiny models of the smoke profile run in CPU worker threads.
    """

    options_known: ClassVar[frozenset[str]] = COMMON_OPTIONS
    default_model: ClassVar[str]
    default_dtype: ClassVar[str] = "bfloat16"
    # Whether the model's attention processors go through diffusers' dispatch_attention_fn (FLUX.1)
    # rather than calling F.scaled_dot_product_attention themselves (CogVideoX, SVD).
    attention_dispatcher: ClassVar[bool] = False

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        self.model = model_ref(self.options.get("model", self.default_model), "model", engine=self.name)
        self.revision = self._optional_text("revision")
        # Tiny models are fp32: bf16 matmuls on a CPU are slow and add nothing to a test.
        dtype_default = "float32" if self.model.source == "tiny" else self.default_dtype
        self.dtype = self._choice("dtype", DTYPES, dtype_default)
        self.vram = self._choice("vram", VRAM_MODES, "auto")
        self.download = self._flag("download", False)
        device = self.options.get("device", "auto")
        if not isinstance(device, str) or not (device in ("auto", "cpu") or device.startswith("cuda")):
            raise OptionError(self.name, "device", '"auto", "cpu" or "cuda[:N]"', repr(device))
        self.device_option = device
        # Speed options (SPEED_OPTIONS): an engine that does not list one in options_known keeps its default.
        self.attention = attention_choice(self.name, self.options, self.attention_dispatcher)
        self.fuse_qkv = self._flag("fuse_qkv", False)
        self.quantize = self._choice("quantize", QUANTIZE, "none")
        self.device: str | None = None     # resolved by load()
        self.placement: Placement | None = None
        self._vram_mode: str | None = None  # resolved by load(), before the pipelines are built
        self._lock = threading.RLock()

    def _number(self, name: str, default: float, *, low: float, high: float) -> float:
        return number(self.name, self.options, name, default, low=low, high=high)

    def _whole(self, name: str, default: int, *, low: int, high: int) -> int:
        return whole(self.name, self.options, name, default, low=low, high=high)

    def _choice(self, name: str, allowed: tuple[str, ...], default: str) -> str:
        return choice(self.name, self.options, name, allowed, default)

    def _flag(self, name: str, default: bool) -> bool:
        return flag(self.name, self.options, name, default)

    def _optional_text(self, name: str) -> str | None:
        return text(self.name, self.options, name)

    # identity ---------------------------------------------------------------

    def identity(self) -> dict[str, Any]:
        # vram, device and download are left out: they change where and how fast, not the bytes.
        identity = {"name": self.name, "version": self.version, **self.model.identity(self.revision),
                    "diffusers": diffusers_version(), "dtype": self.dtype, **self._settings(),
                    **self._speed_settings()}
        if self.encodes:  # the video engines write their clip with x264 (see media.encoder_platform)
            identity["encoder"] = encoder_platform()
        return identity

    def _speed_settings(self) -> dict[str, Any]:
        """Attention kernel, fused projections and fp8 change the float sums, so the bytes. Only
        when set: keys made before these options existed stay valid."""
        settings: dict[str, Any] = {}
        if self.attention != "default":
            settings["attention"] = self.attention
        if self.fuse_qkv:
            settings["fuse_qkv"] = True
        if self.quantize != "none":
            settings["quantize"] = self.quantize
        return settings

    def _settings(self) -> dict[str, Any]:
        """The engine's own options that change output bytes, resolved to their effective values."""
        return {}

    # resources --------------------------------------------------------------

    def vram_need(self) -> VramNeed:
        raise NotImplementedError

    def resources(self) -> Resources:
        # Asked for while planning, so torch is not imported here: a driver means CUDA will be used.
        if self.device is not None:
            gpu = self.device.startswith("cuda")
        else:
            gpu = self.device_option != "cpu" and nvidia_driver_present()
        if not gpu:
            return Resources(gpu=False)
        # `auto` picks its mode from the free memory at load time; until then its need is the full one.
        mode = self.placement.mode if self.placement is not None else self.vram
        return Resources(gpu=True, vram_gb=self.vram_need().of("full" if mode == "auto" else mode))

    # loading ----------------------------------------------------------------

    @property
    def loaded(self) -> bool:
        return self.placement is not None

    def load(self) -> None:
        with self._lock:
            if self.loaded:
                return
            super().load()
            self.device = pick_device(self.device_option)
            check_speed_device(self.name, self.device, self.attention, self.quantize)
            placement = Placement(choose_vram_mode(self.vram, self.vram_need(), self.device), self.device)
            self._vram_mode = placement.mode
            with quiet(), torch_threads(self._cpu_threads()):
                self._load_pipelines(torch_dtype(self.dtype))
            self.placement = placement

    def unload(self) -> None:
        with self._lock:
            if not self.loaded:
                return
            self._drop_pipelines()
            assert self.placement is not None
            self.placement.release()
            self.placement = None
            free_memory(self.device or "cpu")

    def run(self, request: Request) -> dict[str, Path]:
        # Everything the render does in torch (a Kontext pipeline loaded on first use, the denoising
        # loop, the VAE) runs on a thread count fixed here, in the rendering thread.
        with self._lock, torch_threads(self._cpu_threads()):
            return self._render(request)

    def _cpu_threads(self) -> int | None:
        """The intra-op thread count renders on the CPU use; None on a GPU (its kernels decide)."""
        device = self.device
        if device is None:  # not loaded yet: where load() will put the model
            device = self.device_option
            if device == "auto":
                device = "cuda" if cuda_available() else "cpu"
        if device != "cpu":
            return None
        return cpu_thread_count(self.model.source == "tiny")

    def _render(self, request: Request) -> dict[str, Path]:
        raise NotImplementedError

    def _load_pipelines(self, dtype: torch.dtype) -> None:
        raise NotImplementedError

    def _drop_pipelines(self) -> None:
        raise NotImplementedError

    def _pipeline(self, pipeline_class: Any, ref: ModelRef, dtype: torch.dtype, revision: str | None,
                  option: str = "model") -> Any:
        assert self.device is not None
        pipeline = load_pipeline(pipeline_class, ref, dtype, engine=self.name, family=self.family,
                                 option=option, revision=revision, download=self.download, device=self.device)
        pipeline.set_progress_bar_config(disable=True)
        eval_mode(pipeline)
        return pipeline

    def _prepare_transformer(self, transformer: Any) -> None:
        """Apply fuse_qkv, quantize and a dispatcher attention backend to a freshly loaded transformer,
        before step-cache hooks and torch.compile wrap it (they must see the final modules)."""
        with quiet():
            if self.fuse_qkv:
                # diffusers keeps to_q/to_k/to_v beside the fused copy: +4.3 GB for a FLUX.1
                # transformer (2.15 B parameters), +2.4 GB for CogVideoX-5b (1.19 B).
                transformer.fuse_qkv_projections()
            if self.quantize == "fp8":
                # In the full mode the layers move to the GPU to be quantized there (seconds, not minutes
                # on the CPU); offload modes quantize where the weights are.
                quantize_fp8(transformer, self.device if self._vram_mode == "full" else None)
            if self.attention != "default" and self.attention_dispatcher:
                set_dispatch_backend(transformer, self.attention)

    def _generate(self, pipeline: Any, **arguments: Any) -> Any:
        """Run `pipeline` where the vram mode wants it."""
        assert self.placement is not None
        self.placement.activate(pipeline)
        attention = "default" if self.attention_dispatcher else self.attention
        with quiet(), torch_threads(self._cpu_threads()), sdpa_preferring(attention):
            return pipeline(**arguments)
