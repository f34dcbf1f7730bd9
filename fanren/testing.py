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
import inspect
import shutil
import string
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from .engines.consistency import CLIP_VIT_L14, DINOV2_BASE, DINOV2_SMALL
from .engines.diffusion.runtime import diffusers_module, quiet
from .engines.diffusion.weights import (
    COGVIDEOX15_5B_I2V,
    COGVIDEOX_5B_I2V,
    FLUX2_KLEIN_4B,
    FLUX_DEV,
    FLUX_KONTEXT,
    FLUX_SCHNELL,
    HUNYUANVIDEO15_480P_I2V,
    HUNYUANVIDEO15_480P_I2V_STEP_DISTILLED,
    HUNYUANVIDEO15_720P_I2V,
    LTX2,
    SVD_XT,
    TINY_COGVIDEOX15_FRAMES,
    TINY_COGVIDEOX_FRAMES,
    TINY_HUNYUANVIDEO15_TARGET_SIZE,
    TINY_SVD_FRAMES,
    TINY_VIDEO_SIZES,
    WAN22_I2V_A14B,
    WAN22_TI2V_5B,
    register_synthetic,
)

if TYPE_CHECKING:
    import torch

__all__ = ["COGVIDEOX15_5B_I2V", "COGVIDEOX_5B_I2V", "FLUX2_KLEIN_4B", "FLUX_DEV", "FLUX_KONTEXT", "FLUX_SCHNELL",
           "FULL_SIZE_ENCODERS", "FULL_SIZE_MODELS", "LTX2", "SVD_XT", "TINY_COGVIDEOX15_FRAMES",
           "TINY_COGVIDEOX_FRAMES", "TINY_ENCODERS", "TINY_KINDS", "TINY_SVD_FRAMES", "TINY_VERSION",
           "TINY_VIDEO_SIZES", "WAN22_I2V_A14B", "WAN22_TI2V_5B", "full_size_pipeline", "full_size_transformer",
           "gemma_tokenizer", "image_encoder", "tiny_encoder_dir", "tiny_model_dir", "tiny_pipeline"]

# Bump when a tiny pipeline changes: it is part of the identity of every node a tiny model renders.
TINY_VERSION = "1"
TINY_SEED = 0

TINY_KINDS = ("flux", "flux-kontext", "cogvideox", "cogvideox1.5", "svd", "hunyuanvideo15", "flux2", "wan",
              "wan-a14b", "ltx2")
FULL_SIZE_MODELS = (FLUX_DEV, FLUX_SCHNELL, FLUX_KONTEXT, COGVIDEOX_5B_I2V, COGVIDEOX15_5B_I2V, SVD_XT,
                    HUNYUANVIDEO15_480P_I2V, HUNYUANVIDEO15_720P_I2V, HUNYUANVIDEO15_480P_I2V_STEP_DISTILLED,
                    FLUX2_KLEIN_4B, WAN22_TI2V_5B, WAN22_I2V_A14B, LTX2)
# Image encoders of the consistency check (transformers models, not pipelines)
TINY_ENCODERS = ("dinov2", "clip-vision")
FULL_SIZE_ENCODERS = (DINOV2_SMALL, DINOV2_BASE, CLIP_VIT_L14)

_lock = threading.Lock()
_tiny_root: Path | None = None
_tiny_dirs: dict[str, Path] = {}


def _saved_once(name: str, build: Callable[[], Any]) -> Path:
    """A folder `name` holding what `build()` returns (save_pretrained), built once per process."""
    global _tiny_root
    with _lock:
        if name not in _tiny_dirs:
            if _tiny_root is None:
                _tiny_root = Path(tempfile.mkdtemp(prefix="fanren-tiny-"))
                atexit.register(shutil.rmtree, _tiny_root, True)
            folder = _tiny_root / name
            with quiet():
                build().save_pretrained(folder)
            _tiny_dirs[name] = folder
        return _tiny_dirs[name]


def tiny_model_dir(kind: str) -> Path:
    """A folder holding the tiny `kind` pipeline (save_pretrained), built once per process."""
    if kind not in TINY_KINDS:
        raise ValueError(f"unknown tiny model {kind!r} (known: {', '.join(TINY_KINDS)})")
    return _saved_once(kind, lambda: tiny_pipeline(kind))


def tiny_pipeline(kind: str) -> Any:
    """The tiny `kind` pipeline in memory: real classes, random weights from TINY_SEED, in eval mode."""
    builders = {"flux": _tiny_flux, "flux-kontext": _tiny_flux_kontext, "cogvideox": _tiny_cogvideox,
                "cogvideox1.5": _tiny_cogvideox15, "svd": _tiny_svd, "hunyuanvideo15": _tiny_hunyuanvideo15,
                "flux2": _tiny_flux2, "wan": _tiny_wan, "wan-a14b": _tiny_wan_a14b, "ltx2": _tiny_ltx2}
    pipeline = builders[kind]()
    _eval(pipeline)
    return pipeline


def full_size_pipeline(hub_id: str, *, dtype: torch.dtype, device: str) -> Any:
    """The full-size architecture of `hub_id` with random weights, built on `device` in `dtype`."""
    builders = {FLUX_DEV: _full_flux, FLUX_SCHNELL: _full_flux, FLUX_KONTEXT: _full_flux,
                COGVIDEOX_5B_I2V: _full_cogvideox, COGVIDEOX15_5B_I2V: _full_cogvideox, SVD_XT: _full_svd,
                HUNYUANVIDEO15_480P_I2V: _full_hunyuanvideo15, HUNYUANVIDEO15_720P_I2V: _full_hunyuanvideo15,
                HUNYUANVIDEO15_480P_I2V_STEP_DISTILLED: _full_hunyuanvideo15, FLUX2_KLEIN_4B: _full_flux2_klein,
                WAN22_TI2V_5B: _full_wan, WAN22_I2V_A14B: _full_wan, LTX2: _full_ltx2}
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


# Qwen3's template, cut to what a one-message prompt uses (enable_thinking=False adds the empty
# think block, as the real template does; without enable_thinking it is Qwen2's).
QWEN_CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}"
    "{% endif %}")
QWEN_VOCAB = 259  # 256 byte symbols and 3 special tokens; the full-size Qwen3 keeps its 151936


def qwen_tokenizer(*, gpt2_order: bool = False, special_chat_markers: bool = False) -> Any:
    """A Qwen2 byte-level BPE tokenizer without merges (every UTF-8 byte is a token, so Chinese
    spells out byte by byte), Qwen's three special tokens and a chat template of Qwen3's shape.

    The two tiny models that read it differ in two ways, kept because their random embeddings are
    looked up by these ids (either change would change their bytes under the same TINY_VERSION):
    FLUX.2 [klein]'s numbers the bytes in byte order and spells <|im_start|> and <|im_end|> byte by
    byte; HunyuanVideo-1.5's numbers them in GPT-2's order, printable bytes first as in the real
    Qwen vocabulary (`gpt2_order`), and reads each of those markers as one token (`special_chat_markers`).
    """
    from transformers import Qwen2Tokenizer
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    stand_ins = bytes_to_unicode()  # byte → GPT-2's printable stand-in, printable bytes first
    symbols = list(stand_ins.values()) if gpt2_order else [stand_ins[byte] for byte in range(256)]
    vocab = {symbol: index for index, symbol in enumerate(symbols)}
    for special in ("<|endoftext|>", "<|im_start|>", "<|im_end|>"):
        vocab[special] = len(vocab)
    tokenizer = Qwen2Tokenizer(vocab=vocab, merges=[], model_max_length=512)
    if special_chat_markers:
        tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    tokenizer.chat_template = QWEN_CHAT_TEMPLATE
    return tokenizer
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


def tiny_encoder_dir(target: str) -> Path:
    """A folder holding the tiny image encoder `target` (save_pretrained), built once per process."""
    if target not in TINY_ENCODERS:
        raise ValueError(f"unknown tiny image encoder {target!r} (known: {', '.join(TINY_ENCODERS)})")
    return _saved_once(f"encoder-{target}", lambda: image_encoder(target))


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
        built = full_size_pipeline(target, dtype=dtype, device=device)
        if type(built) is pipeline_class:
            return built
        # Another class over the same components: carry the settings the pipeline registered besides
        # them (Wan 2.2 TI2V's expand_timesteps, its A14B boundary_ratio) that the class accepts.
        accepted = inspect.signature(pipeline_class.__init__).parameters
        settings = {name: value for name, value in built.config.items()
                    if name in accepted and name not in built.components}
        return pipeline_class(**built.components, **settings)

    def transformer(self, model_class: Any, target: str, dtype: torch.dtype, device: str) -> Any:
        return full_size_transformer(target, dtype=dtype, device=device)

    def image_encoder(self, model_class: Any, target: str, device: str) -> Any:
        return image_encoder(target, device=device)


register_synthetic(_TinyWeights())
register_synthetic(_RandomWeights())


# ── HunyuanVideo-1.5 image-to-video ──────────────────────────────────────────
#
# Five models besides the scheduler and the guider: the transformer and its VAE, Qwen2.5-VL's text
# model (the prompt, in a chat template), ByT5 (the glyphs of quoted text in the prompt) and SigLIP
# (the keyframe). The tiny ones follow diffusers' tests/pipelines/hunyuan_video1_5; their
# transformer's target_size (80) gives the tiny sizes of weights.py as its buckets.


QWEN2_VOCAB = 260  # > the 259 tokens of its qwen_tokenizer; the full-size Qwen2.5-VL keeps its 152064


def _siglip_processor(size: int) -> Any:
    import transformers

    # Without torchvision, transformers 5 falls back to the PIL processor, with a warning.
    name = "SiglipImageProcessor" if importlib.util.find_spec("torchvision") else "SiglipImageProcessorPil"
    return getattr(transformers, name)(size={"height": size, "width": size})


def _hunyuanvideo15_components(full: bool, hub_id: str = HUNYUANVIDEO15_480P_I2V) -> dict[str, Any]:
    from transformers import (
        ByT5Tokenizer,
        Qwen2_5_VLTextConfig,
        Qwen2_5_VLTextModel,
        SiglipVisionConfig,
        SiglipVisionModel,
        T5Config,
        T5EncoderModel,
    )

    diffusers = diffusers_module()
    if full:
        # hunyuanvideo-community's 480p/720p I2V configs (the class defaults are the 480p one).
        transformer = diffusers.HunyuanVideo15Transformer3DModel(
            target_size=960 if hub_id == HUNYUANVIDEO15_720P_I2V else 640,
            use_meanflow=hub_id == HUNYUANVIDEO15_480P_I2V_STEP_DISTILLED)
        vae = diffusers.AutoencoderKLHunyuanVideo15()
        # Qwen2.5-VL-7B-Instruct's text model; ByT5-small's encoder (Glyph-SDXL-v2 adds ~1100 color
        # and font tokens to its 384); SigLIP-so400m-patch14-384 (FLUX.1 Redux's image encoder).
        text_config = Qwen2_5_VLTextConfig(
            vocab_size=152064, hidden_size=3584, intermediate_size=18944, num_hidden_layers=28,
            num_attention_heads=28, num_key_value_heads=4, rms_norm_eps=1e-6, rope_theta=1000000.0,
            max_position_embeddings=128000,
            rope_scaling={"mrope_section": [16, 24, 24], "rope_type": "default", "type": "default"})
        byt5_config = T5Config(vocab_size=1510, d_model=1472, d_kv=64, d_ff=3584, num_layers=12, num_heads=6,
                               feed_forward_proj="gated-gelu", dropout_rate=0.0, pad_token_id=0, eos_token_id=1)
        vision_config = SiglipVisionConfig(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27,
                                           num_attention_heads=16, image_size=384, patch_size=14)
        shift = 5.0 if hub_id == HUNYUANVIDEO15_480P_I2V else 7.0
        guidance = 1.0 if hub_id == HUNYUANVIDEO15_480P_I2V_STEP_DISTILLED else 6.0
        image_size = 384
    else:
        _seeded()
        # Latents 4 + the keyframe's latents 4 + its mask 1 in; the rope axes add up to the head dim.
        transformer = diffusers.HunyuanVideo15Transformer3DModel(
            in_channels=9, out_channels=4, num_attention_heads=2, attention_head_dim=8, num_layers=2,
            num_refiner_layers=1, mlp_ratio=2.0, patch_size=1, patch_size_t=1, text_embed_dim=16,
            text_embed_2_dim=32, image_embed_dim=16, rope_axes_dim=(2, 2, 4),
            target_size=TINY_HUNYUANVIDEO15_TARGET_SIZE, task_type="i2v")
        _seeded()
        # Five blocks make the real VAE's 16× spatial and 4× temporal compression.
        vae = diffusers.AutoencoderKLHunyuanVideo15(latent_channels=4, block_out_channels=(8,) * 5,
                                                    layers_per_block=1)
        text_config = Qwen2_5_VLTextConfig(
            vocab_size=QWEN2_VOCAB, hidden_size=16, intermediate_size=16, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=2, rope_theta=1000000.0,
            rope_scaling={"mrope_section": [1, 1, 2], "rope_type": "default", "type": "default"})
        byt5_config = T5Config(vocab_size=384, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                               relative_attention_num_buckets=8, feed_forward_proj="gated-gelu",
                               dropout_rate=0.0, pad_token_id=0, eos_token_id=1)
        vision_config = SiglipVisionConfig(hidden_size=16, intermediate_size=37, num_hidden_layers=2,
                                           num_attention_heads=2, image_size=32, patch_size=8)
        shift, guidance, image_size = 5.0, 6.0, 32
    _seeded()
    text_encoder = Qwen2_5_VLTextModel(text_config)
    _seeded()
    text_encoder_2 = T5EncoderModel(byt5_config)
    _seeded()
    image_encoder = SiglipVisionModel(vision_config)
    with quiet():  # "Guiders are currently an experimental feature"
        guider = diffusers.ClassifierFreeGuidance(guidance_scale=guidance)
    return {"transformer": transformer, "vae": vae, "scheduler": diffusers.FlowMatchEulerDiscreteScheduler(shift=shift),
            "text_encoder": text_encoder, "tokenizer": qwen_tokenizer(gpt2_order=True, special_chat_markers=True),
            "text_encoder_2": text_encoder_2,
            "tokenizer_2": ByT5Tokenizer(), "guider": guider, "image_encoder": image_encoder,
            "feature_extractor": _siglip_processor(image_size)}


def _tiny_hunyuanvideo15() -> Any:
    return diffusers_module().HunyuanVideo15ImageToVideoPipeline(**_hunyuanvideo15_components(False))


def _full_hunyuanvideo15(hub_id: str, device: str, dtype: torch.dtype) -> Any:
    with _building_on(device, dtype):
        components = _hunyuanvideo15_components(True, hub_id)
    return diffusers_module().HunyuanVideo15ImageToVideoPipeline(**components)
# ── FLUX.2 (klein) ───────────────────────────────────────────────────────────
# FLUX.2 [klein] reads its prompt with Qwen3 (the hidden states of layers 9, 18 and 27, stacked) and
# its references through the transformer's own attention; its VAE has 32 latent channels, packed
# 2×2 into the transformer's 128. The tiny model keeps that shape: a 27-layer Qwen3 (the pipeline
# reads layer 27) of width 16, a VAE with the real 8× downsampling and 4 latent channels.
# Only klein is built: FLUX.2 [dev]'s 24B Mistral text encoder has no place on a test machine.


def _qwen3_encoder(full: bool) -> Any:
    from transformers import Qwen3Config, Qwen3ForCausalLM

    if full:  # Qwen/Qwen3-4B, the text encoder of FLUX.2 [klein] 4B
        config = Qwen3Config(vocab_size=151936, hidden_size=2560, intermediate_size=9728, num_hidden_layers=36,
                             num_attention_heads=32, num_key_value_heads=8, head_dim=128,
                             max_position_embeddings=40960, rope_theta=1000000, rms_norm_eps=1e-6,
                             tie_word_embeddings=True)
    else:
        config = Qwen3Config(vocab_size=QWEN_VOCAB, hidden_size=16, intermediate_size=16, num_hidden_layers=27,
                             num_attention_heads=2, num_key_value_heads=2, head_dim=8,
                             max_position_embeddings=512, tie_word_embeddings=True)
    _seeded()
    return Qwen3ForCausalLM(config)


def _flux2_klein_transformer_config() -> dict[str, Any]:
    # black-forest-labs/FLUX.2-klein-4B transformer/config.json
    return {"patch_size": 1, "in_channels": 128, "num_layers": 5, "num_single_layers": 20,
            "attention_head_dim": 128, "num_attention_heads": 24, "joint_attention_dim": 7680,
            "timestep_guidance_channels": 256, "mlp_ratio": 3.0, "axes_dims_rope": (32, 32, 32, 32),
            "rope_theta": 2000, "eps": 1e-6, "guidance_embeds": False}


def _tiny_flux2() -> Any:
    diffusers = diffusers_module()
    _seeded()
    # 4 latent channels packed 2×2 → 16; joint_attention_dim = 3 stacked Qwen3 layers × 16.
    transformer = diffusers.Flux2Transformer2DModel(
        patch_size=1, in_channels=16, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=48, timestep_guidance_channels=32,
        axes_dims_rope=(4, 4, 4, 4), guidance_embeds=False)
    _seeded()
    # Four blocks make the real 8× downsampling (×2 more by the packing: sizes are multiples of 16).
    vae = diffusers.AutoencoderKLFlux2(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(4, 4, 4, 4), layers_per_block=1,
        latent_channels=4, norm_num_groups=2, sample_size=32, use_quant_conv=False,
        use_post_quant_conv=False, mid_block_add_attention=False)
    return diffusers.Flux2KleinPipeline(scheduler=_flux_scheduler(False), vae=vae, text_encoder=_qwen3_encoder(False),
                                        tokenizer=qwen_tokenizer(), transformer=transformer, is_distilled=True)


def _full_flux2_klein(hub_id: str, device: str, dtype: torch.dtype) -> Any:
    diffusers = diffusers_module()
    scheduler = _flux_scheduler(False)
    with _building_on(device, dtype):
        transformer = diffusers.Flux2Transformer2DModel(**_flux2_klein_transformer_config())
        vae = diffusers.AutoencoderKLFlux2()  # the defaults are FLUX.2's VAE
        text_encoder = _qwen3_encoder(True)
    return diffusers.Flux2KleinPipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder,
                                        tokenizer=qwen_tokenizer(), transformer=transformer, is_distilled=True)
# ── Wan 2.2 and LTX-2 (branch vida) ──────────────────────────────────────────
# Tiny components follow diffusers' tests/pipelines/wan/test_wan_22_image_to_video.py (the TI2V-5B
# case) and tests/pipelines/ltx2/test_ltx2_image2video.py; the Gemma 3 text encoder and its
# tokenizer are built here instead of fetched. Full-size configs are the checkpoints' own.


def _wan_scheduler(flow_shift: float) -> Any:
    return diffusers_module().UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                                      num_train_timesteps=1000, flow_shift=flow_shift)


def _wan22_vae(full: bool) -> Any:
    # The 2.2 VAE: 48 latent channels, a 2×2 patchify in front, 16× spatial and 4× temporal.
    if full:
        return diffusers_module().AutoencoderKLWan(
            base_dim=160, decoder_base_dim=256, z_dim=48, in_channels=12, out_channels=12, is_residual=True,
            patch_size=2, scale_factor_spatial=16, scale_factor_temporal=4, dim_mult=[1, 2, 4, 4],
            num_res_blocks=2, temperal_downsample=[False, True, True], latents_mean=[0.0] * 48,
            latents_std=[1.0] * 48)
    _seeded()
    return diffusers_module().AutoencoderKLWan(
        base_dim=3, z_dim=48, in_channels=12, out_channels=12, is_residual=True, patch_size=2,
        scale_factor_spatial=16, scale_factor_temporal=4, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
        temperal_downsample=[False, True, True], latents_mean=[0.0] * 48, latents_std=[1.0] * 48)


def _tiny_wan() -> Any:
    diffusers = diffusers_module()
    _seeded()
    transformer = diffusers.WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=48, out_channels=48,
        text_dim=32, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", rope_max_seq_len=32)
    return diffusers.WanImageToVideoPipeline(
        tokenizer=t5_tokenizer(), text_encoder=_umt5_encoder(False), vae=_wan22_vae(False),
        scheduler=_wan_scheduler(5.0), transformer=transformer, transformer_2=None, image_encoder=None,
        image_processor=None, boundary_ratio=None, expand_timesteps=True)


def _tiny_wan_a14b() -> Any:
    # Two experts behind the 2.1 VAE (16 latent channels, 8×), the image latent and mask joining
    # the noise (16 + 4 + 16 = 36 channels in), as in Wan2.2-I2V-A14B.
    import torch

    diffusers = diffusers_module()
    experts = []
    for seed in (TINY_SEED, TINY_SEED + 1):  # two experts, two sets of weights
        torch.manual_seed(seed)
        experts.append(diffusers.WanTransformer3DModel(
            patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=36, out_channels=16,
            text_dim=32, freq_dim=256, ffn_dim=32, num_layers=2, cross_attn_norm=True,
            qk_norm="rms_norm_across_heads", rope_max_seq_len=32))
    _seeded()
    vae = diffusers.AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                                     temperal_downsample=[False, True, True])
    return diffusers.WanImageToVideoPipeline(
        tokenizer=t5_tokenizer(), text_encoder=_umt5_encoder(False), vae=vae, scheduler=_wan_scheduler(5.0),
        transformer=experts[0], transformer_2=experts[1], image_encoder=None, image_processor=None,
        boundary_ratio=0.9, expand_timesteps=False)


def _umt5_encoder(full: bool) -> Any:
    from transformers import UMT5Config, UMT5EncoderModel

    if full:  # google/umt5-xxl, the text encoder of Wan 2.1 and 2.2
        config = UMT5Config(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64,
                            relative_attention_num_buckets=32, relative_attention_max_distance=128,
                            feed_forward_proj="gated-gelu", dropout_rate=0.0, layer_norm_epsilon=1e-6,
                            pad_token_id=0, eos_token_id=1)
    else:
        config = UMT5Config(vocab_size=T5_VOCAB, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                            relative_attention_num_buckets=8, feed_forward_proj="gated-gelu", dropout_rate=0.0,
                            pad_token_id=0, eos_token_id=1)
    _seeded()
    return UMT5EncoderModel(config)


def _full_wan(hub_id: str, device: str, dtype: torch.dtype) -> Any:
    diffusers = diffusers_module()
    common: dict[str, Any] = {"patch_size": (1, 2, 2), "attention_head_dim": 128, "text_dim": 4096,
                              "freq_dim": 256, "cross_attn_norm": True, "qk_norm": "rms_norm_across_heads",
                              "eps": 1e-6, "rope_max_seq_len": 1024}
    with _building_on(device, dtype):
        if hub_id == WAN22_TI2V_5B:
            transformer = diffusers.WanTransformer3DModel(num_attention_heads=24, in_channels=48,
                                                          out_channels=48, ffn_dim=14336, num_layers=30, **common)
            transformer_2, vae = None, _wan22_vae(True)
        else:  # A14B: two experts of the Wan 2.1 14B I2V shape (latent + mask + image latent in)
            experts = {"num_attention_heads": 40, "in_channels": 36, "out_channels": 16, "ffn_dim": 13824,
                       "num_layers": 40, **common}
            transformer = diffusers.WanTransformer3DModel(**experts)
            transformer_2 = diffusers.WanTransformer3DModel(**experts)
            vae = diffusers.AutoencoderKLWan()  # the defaults are the 2.1 VAE's config
        text_encoder = _umt5_encoder(True)
    a14b = hub_id == WAN22_I2V_A14B
    return diffusers.WanImageToVideoPipeline(
        tokenizer=t5_tokenizer(), text_encoder=text_encoder, vae=vae, scheduler=_wan_scheduler(5.0),
        transformer=transformer, transformer_2=transformer_2, image_encoder=None, image_processor=None,
        boundary_ratio=0.9 if a14b else None, expand_timesteps=not a14b)


GEMMA_SYMBOLS = ("<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "▁")


def gemma_tokenizer() -> Any:
    """A Gemma tokenizer over single characters (no merges), left-padding as LTX-2 pads prompts."""
    from transformers import GemmaTokenizer

    vocab = {symbol: index for index, symbol in enumerate(GEMMA_SYMBOLS)}
    for symbol in _SYMBOLS:
        vocab[symbol] = len(vocab)
    return GemmaTokenizer(vocab=vocab, merges=[], padding_side="left", model_max_length=1024)


def _gemma3_encoder(full: bool) -> Any:
    from transformers import (
        Gemma3Config,
        Gemma3ForConditionalGeneration,
        Gemma3TextConfig,
        SiglipVisionConfig,
    )

    if full:  # google/gemma-3-12b-it, the text encoder of LTX-2 (its SigLIP tower is loaded, never run)
        text = Gemma3TextConfig(vocab_size=262208, hidden_size=3840, intermediate_size=15360, num_hidden_layers=48,
                                num_attention_heads=16, num_key_value_heads=8, head_dim=256,
                                query_pre_attn_scalar=256, sliding_window=1024)
        vision = SiglipVisionConfig(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27,
                                    num_attention_heads=16, image_size=896, patch_size=14)
        config = Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=256)
    else:
        text = Gemma3TextConfig(vocab_size=64, hidden_size=32, intermediate_size=32, num_hidden_layers=2,
                                num_attention_heads=2, num_key_value_heads=1, head_dim=8, sliding_window=8,
                                max_position_embeddings=1024)
        vision = SiglipVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                    num_attention_heads=2, image_size=8, patch_size=4)
        config = Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4,
                              boi_token_index=60, eoi_token_index=61, image_token_index=62)
    _seeded()
    return Gemma3ForConditionalGeneration(config)


def _ltx2_components(full: bool) -> dict[str, Any]:
    from diffusers.pipelines.ltx2 import LTX2TextConnectors
    from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder

    diffusers = diffusers_module()
    text_encoder = _gemma3_encoder(full)
    hidden, layers = text_encoder.config.text_config.hidden_size, text_encoder.config.text_config.num_hidden_layers
    if full:  # the defaults of these classes are LTX-2's configs
        transformer = diffusers.LTX2VideoTransformer3DModel()
        connectors = LTX2TextConnectors()
        # Its blocks halve space three times and time three times (spatial, temporal, then two
        # spatiotemporal), which the class cannot infer from spatio_temporal_scaling: the checkpoint
        # states the ratios, and so does this.
        vae = diffusers.AutoencoderKLLTX2Video(spatial_compression_ratio=32, temporal_compression_ratio=8)
        audio_vae = diffusers.AutoencoderKLLTX2Audio()
        vocoder = LTX2Vocoder()
    else:
        _seeded()
        transformer = diffusers.LTX2VideoTransformer3DModel(
            in_channels=4, out_channels=4, patch_size=1, patch_size_t=1, num_attention_heads=2,
            attention_head_dim=8, cross_attention_dim=16, audio_in_channels=4, audio_out_channels=4,
            audio_num_attention_heads=2, audio_attention_head_dim=4, audio_cross_attention_dim=8, num_layers=2,
            qk_norm="rms_norm_across_heads", caption_channels=hidden, rope_double_precision=False,
            rope_type="split")
        _seeded()
        connectors = LTX2TextConnectors(
            caption_channels=hidden, text_proj_in_factor=layers + 1, video_connector_num_attention_heads=4,
            video_connector_attention_head_dim=8, video_connector_num_layers=1,
            video_connector_num_learnable_registers=None, audio_connector_num_attention_heads=4,
            audio_connector_attention_head_dim=8, audio_connector_num_layers=1,
            audio_connector_num_learnable_registers=None, connector_rope_base_seq_len=32, rope_theta=10000.0,
            rope_double_precision=False, causal_temporal_positioning=False, rope_type="split")
        _seeded()
        # LTX-2's compression, 32× in space (a 4×4 patchify and three halvings) and 8× in time, so the
        # engine's 8k+1 frames and multiples of 32 hold for the tiny model too.
        vae = diffusers.AutoencoderKLLTX2Video(
            in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8, 8, 8),
            decoder_block_out_channels=(8, 16, 32), layers_per_block=(1, 1, 1, 1, 1),
            decoder_layers_per_block=(1, 1, 1, 1), spatio_temporal_scaling=(True, True, True, True),
            decoder_spatio_temporal_scaling=(True, True, True), decoder_inject_noise=(False,) * 4,
            upsample_residual=(True, True, True), upsample_factor=(2, 2, 2), timestep_conditioning=False,
            patch_size=4, patch_size_t=1, encoder_causal=True, decoder_causal=False,
            spatial_compression_ratio=32, temporal_compression_ratio=8)
        _seeded()
        audio_vae = diffusers.AutoencoderKLLTX2Audio(
            base_channels=4, output_channels=2, ch_mult=(1,), num_res_blocks=1, attn_resolutions=None,
            in_channels=2, resolution=32, latent_channels=2, norm_type="pixel", causality_axis="height",
            dropout=0.0, mid_block_add_attention=False, sample_rate=16000, mel_hop_length=160, is_causal=True,
            mel_bins=8)
        _seeded()
        vocoder = LTX2Vocoder(
            in_channels=audio_vae.config.output_channels * audio_vae.config.mel_bins, hidden_channels=32,
            out_channels=2, upsample_kernel_sizes=[4, 4], upsample_factors=[2, 2], resnet_kernel_sizes=[3],
            resnet_dilations=[[1, 3, 5]], leaky_relu_negative_slope=0.1, output_sampling_rate=16000)
    # LTX-2's scheduler config: the shift grows with the token count (see the pipeline's calculate_shift).
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=True, base_shift=0.95, max_shift=2.05,
        base_image_seq_len=1024, max_image_seq_len=4096, shift_terminal=0.1)
    return {"transformer": transformer, "vae": vae, "audio_vae": audio_vae, "scheduler": scheduler,
            "text_encoder": text_encoder, "tokenizer": gemma_tokenizer(), "connectors": connectors,
            "vocoder": vocoder}


def _tiny_ltx2() -> Any:
    return diffusers_module().LTX2ImageToVideoPipeline(**_ltx2_components(full=False))


def _full_ltx2(hub_id: str, device: str, dtype: torch.dtype) -> Any:
    with _building_on(device, dtype):
        components = _ltx2_components(full=True)
    return diffusers_module().LTX2ImageToVideoPipeline(**components)
