"""Real diffusers pipelines without weights: tiny random ones for CPU tests, full-size ones for benches.

Following diffusers' own tests (`get_dummy_components`), every pipeline here is the real class with
real components, only small and randomly initialised from a fixed seed, so the engines' code runs
unchanged on a laptop or in CI. Two differences from diffusers' tests:

- Tokenizers are built in-process from a tiny vocabulary (a BPE CLIP tokenizer and a Unigram T5
  tokenizer) instead of being fetched from the hub: nothing here touches the network.
- `tiny_model_dir(kind)` saves the tiny pipeline with save_pretrained, so engines load it through
  the same `from_pretrained(folder)` path as real weights.

`full_size_pipeline(hub_id)` builds the real architectures (configs written out below) with random
weights directly on the GPU: a denoising step costs the same whatever the weights are, so speed and
memory can be measured on a machine that has no weights (bench/gpu_engines.py).

Importing this module registers both as synthetic weights (fanren.engines.diffusion.weights):
"fanren-tiny:<kind>" and "fanren-random:<hub id>" in a model option. fanren imports it only when a
model option names one of them (the smoke profile does); production code never imports it by itself.

torch, diffusers and transformers are imported inside the functions that use them.
"""

from __future__ import annotations

import atexit
import importlib.util
import shutil
import string
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .engines.consistency import CLIP_VIT_L14, DINOV2_BASE, DINOV2_SMALL
from .engines.diffusion.runtime import diffusers_module, quiet
from .engines.diffusion.weights import (
    COGVIDEOX15_5B_I2V,
    COGVIDEOX_5B_I2V,
    FLUX_DEV,
    FLUX_KONTEXT,
    FLUX_SCHNELL,
    SVD_XT,
    TINY_COGVIDEOX15_FRAMES,
    TINY_COGVIDEOX_FRAMES,
    TINY_SVD_FRAMES,
    TINY_VIDEO_SIZES,
    register_synthetic,
)

if TYPE_CHECKING:
    import torch

__all__ = ["COGVIDEOX15_5B_I2V", "COGVIDEOX_5B_I2V", "FLUX_DEV", "FLUX_KONTEXT", "FLUX_SCHNELL",
           "FULL_SIZE_ENCODERS", "FULL_SIZE_MODELS", "SVD_XT", "TINY_COGVIDEOX15_FRAMES", "TINY_COGVIDEOX_FRAMES",
           "TINY_ENCODERS", "TINY_KINDS", "TINY_SVD_FRAMES", "TINY_VERSION", "TINY_VIDEO_SIZES",
           "full_size_pipeline", "full_size_transformer", "image_encoder", "tiny_encoder_dir", "tiny_model_dir",
           "tiny_pipeline"]

# Bump when a tiny pipeline changes: it is part of the identity of every node a tiny model renders.
TINY_VERSION = "1"
TINY_SEED = 0

TINY_KINDS = ("flux", "flux-kontext", "cogvideox", "cogvideox1.5", "svd")
FULL_SIZE_MODELS = (FLUX_DEV, FLUX_SCHNELL, FLUX_KONTEXT, COGVIDEOX_5B_I2V, COGVIDEOX15_5B_I2V, SVD_XT)
# Image encoders of the consistency check (transformers models, not pipelines)
TINY_ENCODERS = ("dinov2", "clip-vision")
FULL_SIZE_ENCODERS = (DINOV2_SMALL, DINOV2_BASE, CLIP_VIT_L14)

_lock = threading.Lock()
_tiny_root: Path | None = None
_tiny_dirs: dict[str, Path] = {}


def tiny_model_dir(kind: str) -> Path:
    """A folder holding the tiny `kind` pipeline (save_pretrained), built once per process."""
    global _tiny_root
    if kind not in TINY_KINDS:
        raise ValueError(f"unknown tiny model {kind!r} (known: {', '.join(TINY_KINDS)})")
    with _lock:
        if kind in _tiny_dirs:
            return _tiny_dirs[kind]
        if _tiny_root is None:
            _tiny_root = Path(tempfile.mkdtemp(prefix="fanren-tiny-"))
            atexit.register(shutil.rmtree, _tiny_root, True)
        folder = _tiny_root / kind
        with quiet():
            tiny_pipeline(kind).save_pretrained(folder)
        _tiny_dirs[kind] = folder
        return folder


def tiny_pipeline(kind: str) -> Any:
    """The tiny `kind` pipeline in memory: real classes, random weights from TINY_SEED, in eval mode."""
    builders = {"flux": _tiny_flux, "flux-kontext": _tiny_flux_kontext, "cogvideox": _tiny_cogvideox,
                "cogvideox1.5": _tiny_cogvideox15, "svd": _tiny_svd}
    pipeline = builders[kind]()
    _eval(pipeline)
    return pipeline


def full_size_pipeline(hub_id: str, *, dtype: torch.dtype, device: str) -> Any:
    """The full-size architecture of `hub_id` with random weights, built on `device` in `dtype`."""
    builders = {FLUX_DEV: _full_flux, FLUX_SCHNELL: _full_flux, FLUX_KONTEXT: _full_flux,
                COGVIDEOX_5B_I2V: _full_cogvideox, COGVIDEOX15_5B_I2V: _full_cogvideox, SVD_XT: _full_svd}
    if hub_id not in builders:
        raise ValueError(f"no full-size architecture is written down for {hub_id!r}")
    pipeline = builders[hub_id](hub_id, device, dtype)
    _eval(pipeline)
    return pipeline


def full_size_transformer(hub_id: str, *, dtype: torch.dtype, device: str) -> Any:
    """Only the transformer of a full-size Flux model (FLUX.1 Kontext beside FLUX.1-dev's encoders)."""
    with _building_on(device, dtype):
        transformer = diffusers_module().FluxTransformer2DModel(**_flux_transformer_config(hub_id))
    return transformer.eval()


# ── tokenizers ───────────────────────────────────────────────────────────────

_SYMBOLS = string.ascii_lowercase + string.digits + ",.!?'-"


def clip_tokenizer() -> Any:
    """A CLIP BPE tokenizer over single characters (no merges): every word becomes its letters."""
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "<unk>": 2}
    for symbol in _SYMBOLS:
        vocab[symbol] = len(vocab)
        vocab[symbol + "</w>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], unk_token="<unk>", model_max_length=77)


def t5_tokenizer() -> Any:
    """A T5 Unigram tokenizer over single characters; anything else (Chinese) is <unk>."""
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [(symbol, -3.0) for symbol in _SYMBOLS]
    return T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=512)


CLIP_EOS = 1
T5_VOCAB = 64  # > the tiny vocabulary; the full-size T5 keeps its 32128


# ── building helpers ─────────────────────────────────────────────────────────


def _eval(pipeline: Any) -> None:
    import torch

    for component in pipeline.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()


def _seeded() -> None:
    import torch

    torch.manual_seed(TINY_SEED)


@contextmanager
def _building_on(device: str, dtype: torch.dtype) -> Iterator[None]:
    """Create parameters directly on `device` in `dtype`: a 12B transformer never passes through fp32."""
    import torch

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            _seeded()
            yield
    finally:
        torch.set_default_dtype(previous)


def _t5_encoder(full: bool) -> Any:
    from transformers import T5Config, T5EncoderModel

    if full:  # google/t5-v1_1-xxl, the text encoder of FLUX.1 and CogVideoX
        config = T5Config(vocab_size=32128, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                          relative_attention_num_buckets=32, relative_attention_max_distance=128,
                          layer_norm_epsilon=1e-6, feed_forward_proj="gated-gelu", dropout_rate=0.0,
                          pad_token_id=0, eos_token_id=1)
    else:
        config = T5Config(vocab_size=T5_VOCAB, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                          relative_attention_num_buckets=8, feed_forward_proj="gated-gelu", dropout_rate=0.0,
                          pad_token_id=0, eos_token_id=1)
    _seeded()
    return T5EncoderModel(config)


def _clip_text_encoder(full: bool) -> Any:
    from transformers import CLIPTextConfig, CLIPTextModel

    if full:  # openai/clip-vit-large-patch14's text tower
        config = CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072, projection_dim=768,
                                num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=77,
                                hidden_act="quick_gelu", bos_token_id=0, eos_token_id=CLIP_EOS,
                                pad_token_id=1)
    else:
        config = CLIPTextConfig(vocab_size=len(_SYMBOLS) * 2 + 3, hidden_size=32, intermediate_size=37,
                                projection_dim=32, num_hidden_layers=2, num_attention_heads=4,
                                max_position_embeddings=77, hidden_act="gelu", bos_token_id=0,
                                eos_token_id=CLIP_EOS, pad_token_id=1)
    _seeded()
    return CLIPTextModel(config)


# ── FLUX.1 ───────────────────────────────────────────────────────────────────


def _flux_transformer_config(hub_id: str) -> dict[str, Any]:
    return {"patch_size": 1, "in_channels": 64, "num_layers": 19, "num_single_layers": 38,
            "attention_head_dim": 128, "num_attention_heads": 24, "joint_attention_dim": 4096,
            "pooled_projection_dim": 768, "guidance_embeds": hub_id != FLUX_SCHNELL,
            "axes_dims_rope": (16, 56, 56)}


def _flux_components(transformer: Any, vae: Any, scheduler: Any, text_encoder: Any,
                     text_encoder_2: Any) -> dict[str, Any]:
    return {"transformer": transformer, "vae": vae, "scheduler": scheduler,
            "text_encoder": text_encoder, "tokenizer": clip_tokenizer(),
            "text_encoder_2": text_encoder_2, "tokenizer_2": t5_tokenizer(),
            "image_encoder": None, "feature_extractor": None}


def _tiny_flux_transformer(seed: int) -> Any:
    import torch

    torch.manual_seed(seed)
    # 4 latent channels packed 2×2 → 16 input channels; the rope axes add up to the head dim.
    return diffusers_module().FluxTransformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, guidance_embeds=True,
        axes_dims_rope=(4, 4, 8))


def _tiny_flux_vae() -> Any:
    _seeded()
    # Four blocks make the 8× downsampling of the real VAE, so sizes are multiples of 16 as for FLUX.1.
    # No mid-block attention: at 1280×720 its 14400² attention was half of a tiny render.
    return diffusers_module().AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(4, 4, 4, 4), layers_per_block=1,
        latent_channels=4, norm_num_groups=2, sample_size=32, use_quant_conv=False, use_post_quant_conv=False,
        mid_block_add_attention=False, shift_factor=0.0609, scaling_factor=1.5035)


def _flux_scheduler(schnell: bool) -> Any:
    scheduler = diffusers_module().FlowMatchEulerDiscreteScheduler
    if schnell:
        return scheduler(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=False)
    return scheduler(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5,
                     max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096)


def _tiny_flux() -> Any:
    return diffusers_module().FluxPipeline(**_flux_components(
        _tiny_flux_transformer(TINY_SEED), _tiny_flux_vae(), _flux_scheduler(False),
        _clip_text_encoder(False), _t5_encoder(False)))


def _tiny_flux_kontext() -> Any:
    # Another seed than the text-to-image transformer: two models, as FLUX.1-dev and Kontext are.
    return diffusers_module().FluxKontextPipeline(**_flux_components(
        _tiny_flux_transformer(TINY_SEED + 1), _tiny_flux_vae(), _flux_scheduler(False),
        _clip_text_encoder(False), _t5_encoder(False)))


def _full_flux(hub_id: str, device: str, dtype: torch.dtype) -> Any:
    diffusers = diffusers_module()
    scheduler = _flux_scheduler(hub_id == FLUX_SCHNELL)
    with _building_on(device, dtype):
        transformer = diffusers.FluxTransformer2DModel(**_flux_transformer_config(hub_id))
        vae = diffusers.AutoencoderKL(
            in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512),
            layers_per_block=2, latent_channels=16, norm_num_groups=32, sample_size=1024,
            use_quant_conv=False, use_post_quant_conv=False, shift_factor=0.1159, scaling_factor=0.3611)
        text_encoder, text_encoder_2 = _clip_text_encoder(True), _t5_encoder(True)
    pipeline_class = diffusers.FluxKontextPipeline if hub_id == FLUX_KONTEXT else diffusers.FluxPipeline
    return pipeline_class(**_flux_components(transformer, vae, scheduler, text_encoder, text_encoder_2))


# ── CogVideoX ────────────────────────────────────────────────────────────────


def _cogvideox_scheduler() -> Any:
    # The scheduler config both THUDM I2V repositories ship.
    return diffusers_module().CogVideoXDPMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
        num_train_timesteps=1000, prediction_type="v_prediction", rescale_betas_zero_snr=True,
        set_alpha_to_one=True, snr_shift_scale=1.0, steps_offset=0, timestep_spacing="trailing")


def _tiny_cogvideox(v15: bool = False) -> Any:
    diffusers = diffusers_module()
    width, height = TINY_VIDEO_SIZES["16:9"]
    _seeded()
    # Rotary embeddings only (no learned positional table), so any multiple of 16 renders. Two
    # blocks: first-block caching needs a block after the first.
    extra: dict[str, Any] = {"patch_size_t": 2, "ofs_embed_dim": 2, "patch_bias": False} if v15 else {}
    transformer = diffusers.CogVideoXTransformer3DModel(
        num_attention_heads=2, attention_head_dim=16, in_channels=8, out_channels=4, time_embed_dim=2,
        text_embed_dim=32, num_layers=2, sample_width=16 if v15 else width // 8,
        sample_height=16 if v15 else height // 8,
        sample_frames=TINY_COGVIDEOX15_FRAMES if v15 else TINY_COGVIDEOX_FRAMES, patch_size=2,
        temporal_compression_ratio=4, max_text_seq_length=16, use_rotary_positional_embeddings=True,
        use_learned_positional_embeddings=False, **extra)
    _seeded()
    vae = diffusers.AutoencoderKLCogVideoX(
        in_channels=3, out_channels=3, down_block_types=("CogVideoXDownBlock3D",) * 4,
        up_block_types=("CogVideoXUpBlock3D",) * 4, block_out_channels=(4, 4, 4, 4), latent_channels=4,
        layers_per_block=1, norm_num_groups=2, temporal_compression_ratio=4, invert_scale_latents=v15)
    return diffusers.CogVideoXImageToVideoPipeline(transformer=transformer, vae=vae,
                                                   scheduler=_cogvideox_scheduler(),
                                                   text_encoder=_t5_encoder(False), tokenizer=t5_tokenizer())


def _tiny_cogvideox15() -> Any:
    return _tiny_cogvideox(v15=True)


def _full_cogvideox(hub_id: str, device: str, dtype: torch.dtype) -> Any:
    diffusers = diffusers_module()
    v15 = hub_id == COGVIDEOX15_5B_I2V
    common: dict[str, Any] = {
        "num_attention_heads": 48, "attention_head_dim": 64, "in_channels": 32, "out_channels": 16,
        "flip_sin_to_cos": True, "freq_shift": 0, "time_embed_dim": 512, "text_embed_dim": 4096,
        "num_layers": 42, "attention_bias": True, "patch_size": 2, "temporal_compression_ratio": 4,
        "max_text_seq_length": 226, "activation_fn": "gelu-approximate", "timestep_activation_fn": "silu",
        "norm_elementwise_affine": True, "norm_eps": 1e-5, "spatial_interpolation_scale": 1.875,
        "temporal_interpolation_scale": 1.0, "use_rotary_positional_embeddings": True}
    if v15:
        shape: dict[str, Any] = {"sample_width": 300, "sample_height": 300, "sample_frames": 81,
                                 "patch_size_t": 2, "ofs_embed_dim": 512, "patch_bias": False,
                                 "use_learned_positional_embeddings": False}
    else:
        # The I2V model learned a positional table for 720×480: it renders no other size.
        shape = {"sample_width": 90, "sample_height": 60, "sample_frames": 49,
                 "use_learned_positional_embeddings": True}
    scheduler = _cogvideox_scheduler()
    with _building_on(device, dtype):
        transformer = diffusers.CogVideoXTransformer3DModel(**common, **shape)
        vae = diffusers.AutoencoderKLCogVideoX(scaling_factor=0.7, invert_scale_latents=v15)
        text_encoder = _t5_encoder(True)
    return diffusers.CogVideoXImageToVideoPipeline(transformer=transformer, vae=vae, scheduler=scheduler,
                                                   text_encoder=text_encoder, tokenizer=t5_tokenizer())


# ── Stable Video Diffusion ───────────────────────────────────────────────────


def _svd_scheduler() -> Any:
    return diffusers_module().EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", interpolation_type="linear",
        num_train_timesteps=1000, prediction_type="v_prediction", sigma_max=700.0, sigma_min=0.002,
        steps_offset=1, timestep_spacing="leading", timestep_type="continuous", use_karras_sigmas=True)


def _image_processor(size: int) -> Any:
    import transformers

    # Without torchvision, transformers 5 falls back to the PIL processor, with a warning.
    name = "CLIPImageProcessor" if importlib.util.find_spec("torchvision") else "CLIPImageProcessorPil"
    return getattr(transformers, name)(crop_size=size, size=size)


def _tiny_svd() -> Any:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    diffusers = diffusers_module()
    _seeded()
    unet = diffusers.UNetSpatioTemporalConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=32, in_channels=8, out_channels=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"), cross_attention_dim=32,
        num_attention_heads=8, projection_class_embeddings_input_dim=96, addition_time_embed_dim=32)
    _seeded()
    # Four blocks make the 8× downsampling of the real VAE (32 channels: its norms use 32 groups).
    vae = diffusers.AutoencoderKLTemporalDecoder(
        block_out_channels=(32, 32, 32, 32), in_channels=3, out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4, latent_channels=4, layers_per_block=1)
    _seeded()
    # SVD resizes the conditioning image to 224×224 before the image encoder, whatever its config.
    image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, projection_dim=32, num_hidden_layers=2, num_attention_heads=4, image_size=224,
        intermediate_size=37, patch_size=32))
    return diffusers.StableVideoDiffusionPipeline(unet=unet, vae=vae, image_encoder=image_encoder,
                                                  scheduler=_svd_scheduler(),
                                                  feature_extractor=_image_processor(224))


def _full_svd(hub_id: str, device: str, dtype: torch.dtype) -> Any:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    diffusers = diffusers_module()
    scheduler = _svd_scheduler()
    with _building_on(device, dtype):
        unet = diffusers.UNetSpatioTemporalConditionModel(sample_size=96)  # the defaults are SVD's config
        vae = diffusers.AutoencoderKLTemporalDecoder(
            down_block_types=("DownEncoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512),
            layers_per_block=2, latent_channels=4, sample_size=768)
        image_encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(  # OpenCLIP ViT-H/14's vision tower
            hidden_size=1280, intermediate_size=5120, projection_dim=1024, num_hidden_layers=32,
            num_attention_heads=16, image_size=224, patch_size=14, hidden_act="gelu"))
    return diffusers.StableVideoDiffusionPipeline(unet=unet, vae=vae, image_encoder=image_encoder,
                                                  scheduler=scheduler,
                                                  feature_extractor=_image_processor(224))


# ── image encoders (the consistency check) ─────────────────────────────────────


def image_encoder(target: str, *, device: str = "cpu", dtype: torch.dtype | None = None) -> Any:
    """A tiny (`TINY_ENCODERS`) or full-size (`FULL_SIZE_ENCODERS`) image encoder with random weights:
    transformers' Dinov2Model or CLIPVisionModelWithProjection, in eval mode."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection, Dinov2Config, Dinov2Model

    configs: dict[str, Any] = {
        "dinov2": Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, mlp_ratio=2,
                               image_size=224, patch_size=14),
        "clip-vision": CLIPVisionConfig(hidden_size=32, intermediate_size=37, projection_dim=32,
                                        num_hidden_layers=2, num_attention_heads=4, image_size=224,
                                        patch_size=14),
        # the published configs (config.json of each hub repository)
        DINOV2_SMALL: Dinov2Config(hidden_size=384, num_hidden_layers=12, num_attention_heads=6,
                                   mlp_ratio=4, image_size=518, patch_size=14, layerscale_value=1.0),
        DINOV2_BASE: Dinov2Config(hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                  mlp_ratio=4, image_size=518, patch_size=14, layerscale_value=1.0),
        CLIP_VIT_L14: CLIPVisionConfig(hidden_size=1024, intermediate_size=4096, projection_dim=768,
                                       num_hidden_layers=24, num_attention_heads=16, image_size=224,
                                       patch_size=14, hidden_act="quick_gelu"),
    }
    if target not in configs:
        raise ValueError(f"no image encoder is written down for {target!r}")
    config = configs[target]
    model_class = Dinov2Model if config.model_type == "dinov2" else CLIPVisionModelWithProjection
    with _building_on(device, dtype or torch.float32):
        model = model_class(config)
    return model.eval()


_encoder_dirs: dict[str, Path] = {}


def tiny_encoder_dir(target: str) -> Path:
    """A folder holding the tiny image encoder `target` (save_pretrained), built once per process."""
    global _tiny_root
    if target not in TINY_ENCODERS:
        raise ValueError(f"unknown tiny image encoder {target!r} (known: {', '.join(TINY_ENCODERS)})")
    with _lock:
        if target not in _encoder_dirs:
            if _tiny_root is None:
                _tiny_root = Path(tempfile.mkdtemp(prefix="fanren-tiny-"))
                atexit.register(shutil.rmtree, _tiny_root, True)
            folder = _tiny_root / f"encoder-{target}"
            with quiet():
                image_encoder(target).save_pretrained(folder)
            _encoder_dirs[target] = folder
        return _encoder_dirs[target]


# ── registered as synthetic weights ──────────────────────────────────────────


class _TinyWeights:
    """"fanren-tiny:<kind>": loaded through from_pretrained of the saved folder, as real weights are."""

    scheme = "fanren-tiny"
    source: Literal["tiny", "random"] = "tiny"
    targets: tuple[str, ...] = TINY_KINDS
    encoders: tuple[str, ...] = TINY_ENCODERS
    description = "tiny model"

    def identity(self, target: str) -> dict[str, Any]:
        return {"tiny": TINY_VERSION}

    def pipeline(self, pipeline_class: Any, target: str, dtype: torch.dtype, device: str) -> Any:
        return pipeline_class.from_pretrained(tiny_model_dir(target), torch_dtype=dtype)

    def transformer(self, model_class: Any, target: str, dtype: torch.dtype, device: str) -> Any:
        return model_class.from_pretrained(tiny_model_dir(target), subfolder="transformer", torch_dtype=dtype)

    def image_encoder(self, model_class: Any, target: str, device: str) -> Any:
        return model_class.from_pretrained(tiny_encoder_dir(target)).eval().to(device)


class _RandomWeights:
    """"fanren-random:<hub id>": the full-size architecture with random weights, built on the device."""

    scheme = "fanren-random"
    source: Literal["tiny", "random"] = "random"
    targets: tuple[str, ...] = FULL_SIZE_MODELS
    encoders: tuple[str, ...] = FULL_SIZE_ENCODERS
    description = "full-size architecture"

    def identity(self, target: str) -> dict[str, Any]:
        return {}

    def pipeline(self, pipeline_class: Any, target: str, dtype: torch.dtype, device: str) -> Any:
        return pipeline_class(**full_size_pipeline(target, dtype=dtype, device=device).components)

    def transformer(self, model_class: Any, target: str, dtype: torch.dtype, device: str) -> Any:
        return full_size_transformer(target, dtype=dtype, device=device)

    def image_encoder(self, model_class: Any, target: str, device: str) -> Any:
        return image_encoder(target, device=device)


register_synthetic(_TinyWeights())
register_synthetic(_RandomWeights())
