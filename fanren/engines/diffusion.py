"""What the diffusers engines (flux, cogvideox, svd) share: finding weights, keying them, placing them.

A model option names weights in one of four ways:

    "black-forest-labs/FLUX.1-dev"            a Hugging Face hub id, read from the local hub cache
    "/models/FLUX.1-dev" or "./weights/flux"  a folder holding a diffusers pipeline (model_index.json)
    "fanren-tiny:flux"                        tiny random weights built in-process (fanren.testing)
    "fanren-random:black-forest-labs/FLUX.1-dev"
                                              the full-size architecture with random weights, built
                                              on the device: measures speed and memory without weights

Weights are never downloaded behind the user's back: a 30 GB download should not start in the
middle of a build, and a model whose revision is only known after the download would change every
key once it lands. `download = true` lets diffusers fetch them; `HF_HUB_OFFLINE=1` always wins.

Nothing here imports torch or diffusers at module import: identity() must stay cheap, because
`fanren status` computes keys without running anything.
"""

from __future__ import annotations

import functools
import gc
import hashlib
import importlib.util
import json
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from ..errors import EngineError, UsageError
from ..media import run_ffmpeg
from .base import Engine, Request, Resources

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image

TINY_PREFIX = "fanren-tiny:"
RANDOM_PREFIX = "fanren-random:"
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*/[A-Za-z0-9][A-Za-z0-9_.\-]*$")
COMMIT = re.compile(r"^[0-9a-f]{40}$")

VRAM_MODES = ("auto", "full", "model-offload", "group-offload", "sequential-offload")
DTYPES = ("bfloat16", "float16", "float32")

# x264 output depends on its thread count, so it is fixed rather than taken from the machine.
X264 = ["-c:v", "libx264", "-preset", "medium", "-crf", "16", "-pix_fmt", "yuv420p", "-threads", "2"]
BITEXACT = ["-map_metadata", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact"]

GIB = 1024**3


# ── model references ─────────────────────────────────────────────────────────


@dataclass(frozen=True)
class ModelRef:
    """Where a model's weights come from, as named by an engine option."""

    value: str                                          # as written in the profile
    source: Literal["hub", "folder", "tiny", "random"]
    target: str  # hub id, absolute folder path, tiny kind, or the hub id whose architecture is built

    def identity(self, revision: str | None = None) -> dict[str, Any]:
        """What about these weights goes into keys. Never a local path: keys must travel."""
        if self.source == "hub":
            return {"model": self.target, "revision": resolved_revision(self.target, revision)}
        if self.source == "folder":
            folder = Path(self.target)
            return {"model": folder.name, "config": folder_config_digest(folder)}
        if self.source == "tiny":
            from .. import testing

            return {"model": self.value, "tiny": testing.TINY_VERSION}
        return {"model": self.value}

    def config(self, subfolder: str) -> dict[str, Any] | None:
        """A component's config.json when it is on this machine (no torch needed), else None."""
        folder = self.local_folder()
        if folder is None:
            return None
        file = folder / subfolder / "config.json"
        try:
            return dict(json.loads(file.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            return None

    def local_folder(self, revision: str | None = None) -> Path | None:
        """The folder from_pretrained would read, when it exists here (tiny models are not built)."""
        if self.source == "folder":
            return Path(self.target) if Path(self.target).is_dir() else None
        if self.source == "hub":
            return hub_snapshot(self.target, revision)
        return None


def model_ref(value: Any, option: str) -> ModelRef:
    """Parse a model option. A value is a folder when it looks like a path ("/…", "./…", "~/…",
    "a/b/c") or names an existing folder; "org/name" otherwise is a hub id. A relative folder is
    relative to the directory fanren runs in."""
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"option {option} must be a hub id or a folder, got {value!r}")
    value = value.strip()
    if value.startswith(TINY_PREFIX):
        from .. import testing

        kind = value[len(TINY_PREFIX):]
        if kind not in testing.TINY_KINDS:
            raise UsageError(f"option {option}: unknown tiny model {value!r} "
                             f"(known: {', '.join(TINY_PREFIX + k for k in testing.TINY_KINDS)})")
        return ModelRef(value, "tiny", kind)
    if value.startswith(RANDOM_PREFIX):
        from .. import testing

        target = value[len(RANDOM_PREFIX):]
        if target not in testing.FULL_SIZE_MODELS:
            raise UsageError(f"option {option}: no full-size architecture is known for {target!r} "
                             f"(known: {', '.join(testing.FULL_SIZE_MODELS)})")
        return ModelRef(value, "random", target)
    looks_like_path = value.startswith((".", "/", "~")) or value.count("/") > 1 \
        or Path(value).expanduser().is_dir()
    if looks_like_path or not HUB_ID.match(value):
        return ModelRef(value, "folder", str(Path(value).expanduser().resolve()))
    return ModelRef(value, "hub", value)


# ── the Hugging Face cache, read without importing huggingface_hub ──────────


def hub_cache_dir() -> Path:
    """The hub cache folder, resolved the way huggingface_hub resolves it."""
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(variable):
            return Path(os.environ[variable]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "huggingface" / "hub"


def hub_repo_dir(repo_id: str) -> Path:
    return hub_cache_dir() / ("models--" + repo_id.replace("/", "--"))


def resolved_revision(repo_id: str, revision: str | None = None) -> str | None:
    """The commit a revision (default: main) points at in the local cache, or None if not cached."""
    if revision is not None and COMMIT.match(revision):
        return revision
    ref = hub_repo_dir(repo_id) / "refs" / (revision or "main")
    try:
        commit = ref.read_text(encoding="utf-8").strip()
    except OSError:
        return revision
    return commit or revision


def hub_snapshot(repo_id: str, revision: str | None = None) -> Path | None:
    commit = resolved_revision(repo_id, revision)
    if commit is None:
        return None
    snapshot = hub_repo_dir(repo_id) / "snapshots" / commit
    return snapshot if (snapshot / "model_index.json").is_file() else None


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def folder_config_digest(folder: Path) -> str | None:
    """A digest of a pipeline folder's configs (model_index.json and every component's JSON files).

    Weights are too large to hash on every `fanren status`; a folder with other weights under the
    same configs is a change the user makes on purpose, and can mark with a new folder name.
    """
    if not (folder / "model_index.json").is_file():
        return None
    digest = hashlib.sha256()
    files = [folder / "model_index.json", *sorted(folder.glob("*/*.json"))]
    for file in files:
        if file.name.endswith(".index.json"):
            continue  # shard maps list file names, not behaviour
        digest.update(file.relative_to(folder).as_posix().encode() + b"\0")
        digest.update(file.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


@functools.cache
def diffusers_version() -> str | None:
    """The installed diffusers' version, read from its __init__.py.

    Every key of these engines holds it, so every build asks; importing diffusers (seconds) or
    importlib.metadata (30 ms) for it would slow a build that has nothing to do.
    """
    spec = importlib.util.find_spec("diffusers")
    if spec is None or spec.origin is None:
        return None
    head = Path(spec.origin).read_text(encoding="utf-8")[:4000]
    match = re.search(r"^__version__\s*=\s*[\"']([^\"']+)[\"']", head, re.MULTILINE)
    return match.group(1) if match else None


# ── missing weights ───────────────────────────────────────────────────────────

GATED = {"black-forest-labs/FLUX.1-dev", "black-forest-labs/FLUX.1-Kontext-dev",
         "stabilityai/stable-video-diffusion-img2vid-xt"}


def missing_weights(ref: ModelRef, family: str, engine: str, option: str,
                    reason: str | None = None) -> EngineError:
    """The error for weights that are not on this machine, saying how to get them."""
    lines = [f"{engine}: the weights of {ref.value} are not on this machine"]
    if ref.source == "folder":
        lines.append(f"  looked for a diffusers pipeline (model_index.json) in {ref.target}")
        lines.append(f"  get one with: huggingface-cli download <hub id> --local-dir {ref.target}")
    else:
        where = hub_repo_dir(ref.target)
        offline = " (HF_HUB_OFFLINE is set: nothing is downloaded)" if hub_offline() else ""
        lines.append(f"  looked in the Hugging Face cache: {where}{offline}")
        lines.append(f"  download them with: huggingface-cli download {ref.target}")
        if ref.target in GATED:
            lines.append(f"    (gated: accept the licence on https://huggingface.co/{ref.target} "
                         f"and run `huggingface-cli login` first)")
        if not hub_offline():
            lines.append("  or add download = true to the engine's options to fetch them during the build")
    example = "/path/to/" + ref.target.rstrip("/").split("/")[-1]
    lines.append(f"  or point the profile at a local copy, e.g. in drama.toml:\n"
                 f"    [profiles.final]\n"
                 f"    {family} = {{ engine = \"{engine}\", {option} = \"{example}\" }}")
    if reason:
        lines.append(f"  ({reason})")
    return EngineError("\n".join(lines))


def load_pipeline(pipeline_class: Any, ref: ModelRef, dtype: torch.dtype, *, engine: str,
                  family: str, option: str, revision: str | None, download: bool,
                  device: str) -> Any:
    """`pipeline_class.from_pretrained` from wherever `ref` says, with an actionable error if absent."""
    from .. import testing

    if ref.source == "tiny":
        return pipeline_class.from_pretrained(testing.tiny_model_dir(ref.target), torch_dtype=dtype)
    if ref.source == "random":
        built = testing.full_size_pipeline(ref.target, dtype=dtype, device=device)
        return pipeline_class(**built.components)
    location = _weights_location(ref, revision, download, engine, family, option)
    try:
        return pipeline_class.from_pretrained(location, torch_dtype=dtype, revision=revision,
                                              local_files_only=hub_offline() or not download)
    except (OSError, ValueError) as exc:
        raise missing_weights(ref, family, engine, option, reason=_first_line(exc)) from None


def load_transformer(model_class: Any, ref: ModelRef, dtype: torch.dtype, *, engine: str,
                     family: str, option: str, revision: str | None, download: bool,
                     device: str) -> Any:
    """One pipeline's `transformer` component (FLUX.1 Kontext beside FLUX.1-dev's encoders and VAE)."""
    from .. import testing

    if ref.source == "tiny":
        return model_class.from_pretrained(testing.tiny_model_dir(ref.target), subfolder="transformer",
                                           torch_dtype=dtype)
    if ref.source == "random":
        return testing.full_size_transformer(ref.target, dtype=dtype, device=device)
    location = _weights_location(ref, revision, download, engine, family, option)
    try:
        return model_class.from_pretrained(location, subfolder="transformer", torch_dtype=dtype,
                                           revision=revision, local_files_only=hub_offline() or not download)
    except (OSError, ValueError) as exc:
        raise missing_weights(ref, family, engine, option, reason=_first_line(exc)) from None


def _weights_location(ref: ModelRef, revision: str | None, download: bool, engine: str, family: str,
                      option: str) -> str:
    if ref.source == "folder":
        if not (Path(ref.target) / "model_index.json").is_file():
            raise missing_weights(ref, family, engine, option)
        return ref.target
    if hub_snapshot(ref.target, revision) is None and (hub_offline() or not download):
        raise missing_weights(ref, family, engine, option)
    return ref.target


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


# ── options ──────────────────────────────────────────────────────────────────


def check_options(engine: str, options: Mapping[str, Any], known: set[str]) -> None:
    """Unknown option names are typos: say so before anything runs (exit 2)."""
    import difflib

    for name in sorted(options):
        if name not in known:
            match = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
            hint = f"did you mean {match[0]!r}?" if match else f"known: {', '.join(sorted(known))}"
            raise UsageError(f"engine {engine} has no option {name!r} ({hint})")


def choice(engine: str, options: Mapping[str, Any], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = options.get(name, default)
    if value not in allowed:
        raise UsageError(f"engine {engine}: option {name} must be one of {', '.join(map(repr, allowed))}, "
                         f"got {value!r}")
    return str(value)


def number(engine: str, options: Mapping[str, Any], name: str, default: float, *, low: float,
           high: float) -> float:
    value = options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise UsageError(f"engine {engine}: option {name} must be a number in [{low}, {high}], got {value!r}")
    return float(value)


def whole(engine: str, options: Mapping[str, Any], name: str, default: int, *, low: int, high: int) -> int:
    value = options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise UsageError(f"engine {engine}: option {name} must be an integer in [{low}, {high}], "
                         f"got {value!r}")
    return value


def flag(engine: str, options: Mapping[str, Any], name: str, default: bool) -> bool:
    value = options.get(name, default)
    if not isinstance(value, bool):
        raise UsageError(f"engine {engine}: option {name} must be true or false, got {value!r}")
    return value


CACHE_DEFAULTS: dict[str, dict[str, float]] = {
    # FirstBlockCache skips the rest of the transformer while the first block's residual barely
    # changes; TaylorSeer predicts skipped steps' features from earlier ones.
    "first-block": {"threshold": 0.08},
    "taylorseer": {"cache_interval": 5, "disable_cache_before_step": 3, "max_order": 1},
}


def step_cache(engine: str, value: Any) -> dict[str, Any] | None:
    """The `cache` option in canonical form.

    null, "first-block", "taylorseer", or a table: { kind = "first-block", threshold = 0.1 }.
    """
    if value is None or value is False or value == "none":
        return None
    if isinstance(value, str):
        value = {"kind": value}
    if not isinstance(value, Mapping) or value.get("kind") not in CACHE_DEFAULTS:
        raise UsageError(f"engine {engine}: option cache must be null, one of "
                         f"{', '.join(map(repr, CACHE_DEFAULTS))} or a table with kind = one of them, "
                         f"got {value!r}")
    kind = str(value["kind"])
    settings = dict(CACHE_DEFAULTS[kind])
    for name, setting in value.items():
        if name == "kind":
            continue
        if name not in settings or isinstance(setting, bool) or not isinstance(setting, (int, float)):
            raise UsageError(f"engine {engine}: cache {kind!r} takes {', '.join(settings)} (numbers), "
                             f"got {name} = {setting!r}")
        settings[name] = setting
    return {"kind": kind, **settings}


def enable_step_cache(transformer: Any, cache: dict[str, Any] | None) -> None:
    if cache is None:
        return
    hooks = diffusers_module().hooks
    settings = {k: v for k, v in cache.items() if k != "kind"}
    if cache["kind"] == "first-block":
        transformer.enable_cache(hooks.FirstBlockCacheConfig(threshold=float(settings["threshold"])))
    else:
        transformer.enable_cache(hooks.TaylorSeerCacheConfig(
            cache_interval=int(settings["cache_interval"]),
            disable_cache_before_step=int(settings["disable_cache_before_step"]),
            max_order=int(settings["max_order"])))


# ── speed options: attention kernels, fused projections, fp8 ─────────────────

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
        raise EngineError(f"attention = {attention!r}: {_first_line(exc)}") from None
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


# ── devices, dtypes, memory ──────────────────────────────────────────────────


def diffusers_module() -> Any:
    """diffusers, typed loosely: its constructors carry no annotations for a strict type checker."""
    import diffusers

    return diffusers


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


def torch_dtype(name: str) -> torch.dtype:
    import torch

    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]


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
    """`auto` picks the fastest mode that fits the free memory, with 5% to spare."""
    if requested != "auto":
        return requested
    free = free_vram_gb(device)
    if free is None:
        return "full"
    for mode in ("full", "model-offload", "group-offload"):
        if need.of(mode) * 1.05 <= free:
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


def eval_mode(pipeline: Any) -> None:
    """Every torch module of `pipeline` in eval mode (no dropout): from_pretrained does this for the
    components it loads, but not for ones built or swapped in by hand."""
    import torch

    for component in pipeline.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()


def generator(seed: int) -> torch.Generator:
    """A seeded CPU generator: the same noise on every device, so a key means the same picture."""
    import torch

    return torch.Generator("cpu").manual_seed(int(seed) % 2**63)


def step_progress(request: Request, steps: int) -> Callable[..., dict[str, Any]]:
    """A callback_on_step_end that reports the denoising step of the running node."""

    def on_step_end(pipeline: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        request.progress(min(1.0, (step + 1) / steps), f"step {step + 1}/{steps}")
        return tensors

    return on_step_end


@contextmanager
def quiet() -> Iterator[None]:
    """No tqdm bars and no chatter from diffusers or transformers: fanren shows its own progress.

    Their warnings (CLIP truncating a long prompt to 77 tokens, deprecated argument names) say
    nothing a user of fanren can act on; errors still come through as exceptions.
    """
    import warnings

    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    restore = []
    for library in (diffusers_logging, transformers_logging):
        restore.append((library, library.get_verbosity(), library.is_progress_bar_enabled()))
        library.set_verbosity_error()
        library.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        for library, verbosity, bars in restore:
            library.set_verbosity(verbosity)
            if bars:
                library.enable_progress_bar()


def cpu_thread_count(tiny: bool) -> int:
    """How many intra-op threads torch uses for a render on the CPU: fixed, never whatever the
    rendering thread happens to have.

    Tiny models run on one thread. They are thousands of kernels of microseconds each, so torch's
    thread pool costs more than it saves (a tiny FLUX.1 keyframe took 1.1 s with 2 threads on a
    busy 2-core machine, 0.07 s with one), and one thread gives the same float sums on every machine
    whatever its core count: the smoke profile's keys mean the same bytes everywhere. Real models on
    a CPU use every core this process may run on; their bytes then hold for machines with as many.
    """
    if tiny:
        return 1
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run torch on `count` intra-op threads in the calling thread (None: leave it as it is).

    torch's CPU float sums depend on how many threads split them, and with OpenMP the count is per
    thread: torch.set_num_threads changes the calling thread's count and the process default, and a
    thread takes that default the first time it asks torch for its count (overwriting a count set
    on it before). So a count set in one thread does not hold in another, and which count a worker
    thread renders with would depend on what ran before, where. The scheduler renders on worker
    threads, several engines at once: the count is set here, in the thread that renders, right
    before it renders (after asking for it once, so it sticks), and put back after.
    """
    if count is None:
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


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


def check_size(engine: str, size: Any, multiple: int = 16) -> tuple[int, int]:
    width, height = (int(v) for v in size)
    if width <= 0 or height <= 0 or width % multiple or height % multiple:
        raise EngineError(f"{engine} renders sizes that are multiples of {multiple} pixels, "
                          f"asked for {width}×{height}")
    return width, height


# ── writing outputs ──────────────────────────────────────────────────────────


def keyframe_image(request: Request, size: tuple[int, int]) -> Image.Image:
    """The clip's keyframe as RGB at `size` (it is rendered at that size; resized only if it is not)."""
    from PIL import Image

    keyframes = request.inputs_of_kind("keyframe")
    if not keyframes or "image.png" not in keyframes[0][1]:
        raise EngineError(f"{request.node_id}: a clip needs its keyframe's image.png as input")
    with Image.open(keyframes[0][1]["image.png"]) as image:
        keyframe = image.convert("RGB")
    if keyframe.size != size:
        keyframe = keyframe.resize(size, Image.Resampling.LANCZOS)
    return keyframe


def clip_frames(engine: str, frames: np.ndarray, count: int, size: tuple[int, int]) -> np.ndarray:
    """Pipeline frames (float in [0, 1], frames × height × width × 3) → uint8 RGB, checked against the ask."""
    import numpy as np

    width, height = size
    if frames.shape[:3] != (count, height, width):
        raise EngineError(f"{engine} made {frames.shape[0]} frames of {frames.shape[2]}×{frames.shape[1]}, "
                          f"{count} of {width}×{height} were asked")
    pixels: np.ndarray = (np.clip(frames, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    return pixels


def write_clip(frames: np.ndarray, fps: int, out: Path) -> Path:
    """Encode uint8 RGB frames (frames × height × width × 3) as an H.264 MP4, byte for byte repeatable."""
    count, height, width, _ = frames.shape
    raw = out.with_suffix(".rgb")
    raw.write_bytes(frames.tobytes())
    try:
        run_ffmpeg(["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-framerate", str(fps),
                    "-i", str(raw), "-frames:v", str(count), *X264, "-an", *BITEXACT,
                    "-movflags", "+faststart", str(out)], f"encoding {out.name}")
    finally:
        raw.unlink(missing_ok=True)
    return out


# ── the engine base ──────────────────────────────────────────────────────────

COMMON_OPTIONS = frozenset({"model", "revision", "dtype", "device", "vram", "download"})


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
        check_options(self.name, self.options, set(self.options_known))
        self.model = model_ref(self.options.get("model", self.default_model), "model")
        self.revision = self._optional_text("revision")
        # Tiny models are fp32: bf16 matmuls on a CPU are slow and add nothing to a test.
        dtype_default = "float32" if self.model.source == "tiny" else self.default_dtype
        self.dtype = self._choice("dtype", DTYPES, dtype_default)
        self.vram = self._choice("vram", VRAM_MODES, "auto")
        self.download = self._flag("download", False)
        device = self.options.get("device", "auto")
        if not isinstance(device, str) or not (device in ("auto", "cpu") or device.startswith("cuda")):
            raise UsageError(f"engine {self.name}: option device must be \"auto\", \"cpu\" or \"cuda[:N]\", "
                             f"got {device!r}")
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
        value = self.options.get(name)
        if value is not None and (not isinstance(value, str) or not value):
            raise UsageError(f"engine {self.name}: option {name} must be a string, got {value!r}")
        return value

    # identity ---------------------------------------------------------------

    def identity(self) -> dict[str, Any]:
        # vram, device and download are left out: they change where and how fast, not the bytes.
        return {"name": self.name, "version": self.version, **self.model.identity(self.revision),
                "diffusers": diffusers_version(), "dtype": self.dtype, **self._settings(),
                **self._speed_settings()}

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
        with self._lock:
            # Everything the render does in torch (a Kontext pipeline loaded on first use, the
            # denoising loop, the VAE) runs on a thread count fixed here, in the rendering thread.
            with torch_threads(self._cpu_threads()):
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
