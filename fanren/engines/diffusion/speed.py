"""Speed options: attention kernels, fused QKV projections, fp8 weights, regional torch.compile.

Each changes the float sums, so the ones set go into the engine's identity (engine.py).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ...errors import EngineError
from .options import choice
from .runtime import first_line

if TYPE_CHECKING:
    import torch

ATTENTION = ("default", "cudnn", "flash", "efficient", "flash-attn", "flash-attn3", "sage")
# PyTorch's own kernels behind F.scaled_dot_product_attention: usable by every model.
SDPA_KERNELS = {"cudnn": "CUDNN_ATTENTION", "flash": "FLASH_ATTENTION", "efficient": "EFFICIENT_ATTENTION"}
# diffusers' attention dispatcher (models whose processors call dispatch_attention_fn: FLUX.1).
# The last three need their packages (flash-attn, flash-attn 3 built from source, sageattention).
DISPATCH_BACKENDS = {"cudnn": "_native_cudnn", "flash": "_native_flash", "efficient": "_native_efficient",
                     "flash-attn": "flash", "flash-attn3": "_flash_3", "sage": "sage"}
QUANTIZE = ("none", "fp8")
SPEED_OPTIONS = frozenset({"attention", "fuse_qkv", "quantize"})
# torchao 0.18 is built against torch 2.11 (its C++ kernels load only on torch >= 2.11; the fp8
# path itself is Python over torch._scaled_mm).
TORCHAO_HINT = "pip install torchao==0.18.0 (the release built for torch 2.11)"


def attention_choice(engine: str, options: Mapping[str, Any], dispatcher: bool) -> str:
    """The `attention` option. Models that call F.scaled_dot_product_attention themselves (CogVideoX,
    SVD) can only be steered among PyTorch's kernels; the packaged kernels need diffusers' dispatcher."""
    allowed = ATTENTION if dispatcher else ("default", *SDPA_KERNELS)
    return choice(engine, options, "attention", allowed, "default")


def check_speed_device(engine: str, device: str, attention: str, quantize: str) -> None:
    """Refuse at load what cannot run here, before minutes of loading: these kernels are CUDA's."""
    cuda = device.startswith("cuda")
    if attention != "default" and not cuda:
        raise EngineError(f"{engine}: attention = {attention!r} needs a CUDA device, this engine runs on "
                          f"{device} (remove the option, or set attention = \"default\")")
    if quantize == "none":
        return
    if importlib.util.find_spec("torchao") is None:
        raise EngineError(f"{engine}: quantize = {quantize!r} needs torchao, which is not installed: "
                          f"{TORCHAO_HINT}")
    if not cuda:
        raise EngineError(f"{engine}: quantize = {quantize!r} needs a CUDA device, this engine runs on {device}")
    import torch

    capability = torch.cuda.get_device_capability(torch.device(device))
    if capability < (8, 9):
        raise EngineError(f"{engine}: quantize = \"fp8\" needs fp8 tensor cores (Ada or Hopper, compute "
                          f"capability 8.9+); {torch.cuda.get_device_name(torch.device(device))} has "
                          f"{capability[0]}.{capability[1]}")


def set_dispatch_backend(transformer: Any, attention: str) -> None:
    """Point every attention processor of `transformer` at one of diffusers' dispatcher backends."""
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry

    # set_attention_backend also makes the backend the process-wide default for processors that
    # name none; other models (another engine, the text encoders) must keep theirs.
    previous = _AttentionBackendRegistry._active_backend
    try:
        transformer.set_attention_backend(DISPATCH_BACKENDS[attention])
    except (RuntimeError, ValueError) as exc:  # a missing package: flash-attn, sageattention
        raise EngineError(f"attention = {attention!r}: {first_line(exc)}") from None
    finally:
        _AttentionBackendRegistry.set_active_backend(previous)


@contextmanager
def sdpa_preferring(attention: str) -> Iterator[None]:
    """F.scaled_dot_product_attention prefers `attention`'s kernel inside; the others stay as
    fallbacks for shapes or masks it cannot take (so a text encoder's call never fails on it)."""
    if attention not in SDPA_KERNELS:
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    preferred = getattr(SDPBackend, SDPA_KERNELS[attention])
    others = [SDPBackend.FLASH_ATTENTION, SDPBackend.CUDNN_ATTENTION, SDPBackend.EFFICIENT_ATTENTION,
              SDPBackend.MATH]
    with sdpa_kernel([preferred, *(b for b in others if b != preferred)], set_priority=True):
        yield


def quantize_fp8(transformer: Any, device: str | None) -> None:
    """fp8 weights and per-token fp8 activations for the transformer's linear layers (torchao).

    Per-row scales (one per output channel and per token) keep far more of the weights' range than
    one scale per tensor, and run on the same fp8 GEMMs of Hopper's tensor cores.
    """
    import torch
    from torchao.quantization import (  # type: ignore[import-not-found]
        Float8DynamicActivationFloat8WeightConfig,
        PerRow,
        quantize_,
    )

    def fp8_gemm_fits(module: torch.nn.Module, name: str) -> bool:
        # torch._scaled_mm takes only dimensions that are multiples of 16.
        return isinstance(module, torch.nn.Linear) and module.in_features % 16 == 0 \
            and module.out_features % 16 == 0

    quantize_(transformer, Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()),
              filter_fn=fp8_gemm_fits, device=device)


def compile_blocks(transformer: Any, block_lists: tuple[str, ...] = (), *, fullgraph: bool = True) -> None:
    """Regional torch.compile: each repeated transformer block compiles once and is reused.

    Models that declare `_repeated_blocks` (Flux) use diffusers' compile_repeated_blocks; others
    (CogVideoX) compile every block of the named ModuleLists. Step-caching hooks wrap the blocks
    and are not traceable: with a cache, compile without `fullgraph` so dynamo may break around them.
    """
    if getattr(transformer, "_repeated_blocks", None):
        transformer.compile_repeated_blocks(fullgraph=fullgraph)
        return
    for name in block_lists:
        for block in getattr(transformer, name):
            block.compile(fullgraph=fullgraph)
