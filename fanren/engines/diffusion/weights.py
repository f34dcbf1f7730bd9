"""Where a model's weights come from, and what about them goes into keys.

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

The last two are synthetic weights: built by code, not read from disk. That code is the test
helpers' (fanren.testing), and production code never imports it: a synthetic scheme registers
itself here (`register_synthetic`) when its module is imported, and `synthetic()` imports the module
that SYNTHETIC_PROVIDERS names for a scheme only when a model option names that scheme (the smoke
profile does). Nothing else of fanren loads the test helpers.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from ...errors import EngineError, OptionError
from .runtime import first_line

if TYPE_CHECKING:
    import torch

# The checkpoints the engines know by name: their defaults, and those they have settings for.
FLUX_DEV = "black-forest-labs/FLUX.1-dev"
FLUX_SCHNELL = "black-forest-labs/FLUX.1-schnell"
FLUX_KONTEXT = "black-forest-labs/FLUX.1-Kontext-dev"
COGVIDEOX_5B_I2V = "THUDM/CogVideoX-5b-I2V"
COGVIDEOX15_5B_I2V = "THUDM/CogVideoX1.5-5B-I2V"
SVD_XT = "stabilityai/stable-video-diffusion-img2vid-xt"
HUNYUANVIDEO15_480P_I2V = "hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-480p_i2v"
HUNYUANVIDEO15_720P_I2V = "hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-720p_i2v"
HUNYUANVIDEO15_480P_I2V_STEP_DISTILLED = "hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-480p_i2v_step_distilled"
FLUX2_KLEIN_4B = "black-forest-labs/FLUX.2-klein-4B"
FLUX2_DEV = "black-forest-labs/FLUX.2-dev"
WAN22_TI2V_5B = "Wan-AI/Wan2.2-TI2V-5B-Diffusers"
WAN22_I2V_A14B = "Wan-AI/Wan2.2-I2V-A14B-Diffusers"
LTX2 = "Lightricks/LTX-2"

# What the tiny models render natively: the engines render them at these shapes and fanren.testing
# builds them to fit. Sizes per aspect, multiples of 16 like the real models' sizes.
TINY_VIDEO_SIZES = {"16:9": (96, 64), "9:16": (64, 96), "1:1": (64, 64)}
TINY_COGVIDEOX_FRAMES = 9      # 8k+1, as CogVideoX-5b-I2V wants
TINY_COGVIDEOX15_FRAMES = 17   # 16k+1, as CogVideoX1.5-5B-I2V wants
TINY_SVD_FRAMES = 9
# HunyuanVideo-1.5 picks its size from the keyframe's aspect among buckets of about target_size²
# pixels; the tiny model's target_size is 80, whose buckets for these aspects are these sizes.
TINY_HUNYUANVIDEO15_SIZES = {"16:9": (96, 64), "9:16": (64, 96), "1:1": (80, 80)}
TINY_HUNYUANVIDEO15_TARGET_SIZE = 80
TINY_HUNYUANVIDEO15_FRAMES = 9  # 4k+1, as HunyuanVideo-1.5 wants
TINY_WAN_FRAMES = 9            # 4k+1, as Wan 2.2 wants
TINY_LTX2_FRAMES = 9           # 8k+1, as LTX-2 wants

TINY_PREFIX = "fanren-tiny:"
RANDOM_PREFIX = "fanren-random:"
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*/[A-Za-z0-9][A-Za-z0-9_.\-]*$")
COMMIT = re.compile(r"^[0-9a-f]{40}$")


# ── synthetic weights ────────────────────────────────────────────────────────


class SyntheticWeights(Protocol):
    """Weights built by code, named "<scheme>:<target>" in a model option."""

    scheme: str                          # "fanren-tiny"
    source: Literal["tiny", "random"]    # how engines treat them: tiny ones get small defaults
    targets: tuple[str, ...]             # what may follow the scheme (pipelines)
    encoders: tuple[str, ...]            # ... in an image encoder's model option (the consistency check)
    description: str                     # "tiny model", for error messages

    def identity(self, target: str) -> dict[str, Any]:
        """What besides the option's value goes into keys (a version of the tiny weights)."""
        ...

    def pipeline(self, pipeline_class: Any, target: str, dtype: torch.dtype, device: str) -> Any:
        """A `pipeline_class` with these weights."""
        ...

    def transformer(self, model_class: Any, target: str, dtype: torch.dtype, device: str) -> Any:
        """Only the `transformer` component (FLUX.1 Kontext beside FLUX.1-dev's encoders and VAE)."""
        ...

    def image_encoder(self, model_class: Any, target: str, device: str) -> Any:
        """A transformers image encoder (the consistency check's DINOv2 or CLIP vision tower)."""
        ...


# Which module registers each scheme when it is imported.
SYNTHETIC_PROVIDERS = {"fanren-tiny": "fanren.testing", "fanren-random": "fanren.testing"}
_synthetic: dict[str, SyntheticWeights] = {}


def register_synthetic(weights: SyntheticWeights) -> None:
    _synthetic[weights.scheme] = weights


def synthetic(scheme: str) -> SyntheticWeights:
    """The registered synthetic weights of `scheme`, importing the module that provides them."""
    if scheme not in _synthetic and scheme in SYNTHETIC_PROVIDERS:
        importlib.import_module(SYNTHETIC_PROVIDERS[scheme])
    return _synthetic[scheme]


def synthetic_scheme(value: str) -> str | None:
    """The scheme of a model option that names synthetic weights, else None."""
    scheme, colon, _ = value.partition(":")
    return scheme if colon and (scheme in SYNTHETIC_PROVIDERS or scheme in _synthetic) else None


# ── model references ─────────────────────────────────────────────────────────


@dataclass(frozen=True)
class ModelRef:
    """Where a model's weights come from, as named by an engine option."""

    value: str                                          # as written in the profile
    source: Literal["hub", "folder", "tiny", "random"]
    target: str  # hub id, absolute folder path, tiny kind, or the hub id whose architecture is built

    @property
    def synthetic(self) -> SyntheticWeights:
        scheme = synthetic_scheme(self.value)
        assert scheme is not None, self.value
        return synthetic(scheme)

    def identity(self, revision: str | None = None) -> dict[str, Any]:
        """What about these weights goes into keys. Never a local path: keys must travel."""
        if self.source == "hub":
            return {"model": self.target, "revision": resolved_revision(self.target, revision)}
        if self.source == "folder":
            folder = Path(self.target)
            return {"model": folder.name, "config": folder_config_digest(folder)}
        return {"model": self.value, **self.synthetic.identity(self.target)}

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


def model_ref(value: Any, option: str, engine: str = "", encoder: bool = False) -> ModelRef:
    """Parse a model option. A value is a folder when it looks like a path ("/…", "./…", "~/…",
    "a/b/c") or names an existing folder; "org/name" otherwise is a hub id. A relative folder is
    relative to the directory fanren runs in. `encoder`: the option names an image encoder (a
    transformers model), not a diffusers pipeline."""
    if not isinstance(value, str) or not value.strip():
        raise OptionError(engine, option, "a hub id or a folder", repr(value))
    value = value.strip()
    scheme = synthetic_scheme(value)
    if scheme is not None:
        weights = synthetic(scheme)
        target = value[len(scheme) + 1:]
        targets = weights.encoders if encoder else weights.targets
        if target not in targets:
            raise OptionError(engine, option, f"a known {weights.description}", repr(value),
                              hint=f"known: {', '.join(f'{scheme}:{t}' for t in targets)}")
        return ModelRef(value, weights.source, target)
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

GATED = {"black-forest-labs/FLUX.1-dev", "black-forest-labs/FLUX.1-Kontext-dev", "black-forest-labs/FLUX.2-dev",
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
    if ref.source in ("tiny", "random"):
        return ref.synthetic.pipeline(pipeline_class, ref.target, dtype, device)
    return _from_pretrained(pipeline_class, ref, dtype, engine, family, option, revision, download)


def load_transformer(model_class: Any, ref: ModelRef, dtype: torch.dtype, *, engine: str,
                     family: str, option: str, revision: str | None, download: bool,
                     device: str) -> Any:
    """One pipeline's `transformer` component (FLUX.1 Kontext beside FLUX.1-dev's encoders and VAE)."""
    if ref.source in ("tiny", "random"):
        return ref.synthetic.transformer(model_class, ref.target, dtype, device)
    return _from_pretrained(model_class, ref, dtype, engine, family, option, revision, download,
                            subfolder="transformer")


def _from_pretrained(cls: Any, ref: ModelRef, dtype: torch.dtype, engine: str, family: str, option: str,
                     revision: str | None, download: bool, **where: str) -> Any:
    """`cls.from_pretrained` of the real weights `ref` names; missing ones are an actionable error."""
    location = _weights_location(ref, revision, download, engine, family, option)
    try:
        return cls.from_pretrained(location, **where, torch_dtype=dtype, revision=revision,
                                   local_files_only=hub_offline() or not download)
    except (OSError, ValueError) as exc:
        raise missing_weights(ref, family, engine, option, reason=first_line(exc)) from None


def _weights_location(ref: ModelRef, revision: str | None, download: bool, engine: str, family: str,
                      option: str) -> str:
    if ref.source == "folder":
        if not (Path(ref.target) / "model_index.json").is_file():
            raise missing_weights(ref, family, engine, option)
        return ref.target
    if hub_snapshot(ref.target, revision) is None and (hub_offline() or not download):
        raise missing_weights(ref, family, engine, option)
    return ref.target
