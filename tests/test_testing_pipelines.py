"""fanren.testing: tiny real pipelines saved as folders, and the full-size architectures for benches."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fanren import testing
from fanren.engines.diffusion import diffusers_module
from fanren.engines.diffusion.weights import (
    HUNYUANVIDEO15_480P_I2V,
    HUNYUANVIDEO15_480P_I2V_STEP_DISTILLED,
    HUNYUANVIDEO15_720P_I2V,
    load_pipeline,
    model_ref,
)

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

PIPELINE_CLASSES = {
    "flux": "FluxPipeline",
    "flux-kontext": "FluxKontextPipeline",
    "cogvideox": "CogVideoXImageToVideoPipeline",
    "cogvideox1.5": "CogVideoXImageToVideoPipeline",
    "svd": "StableVideoDiffusionPipeline",
    "hunyuanvideo15": "HunyuanVideo15ImageToVideoPipeline",
    "flux2": "Flux2KleinPipeline",
    "wan": "WanImageToVideoPipeline",
    "wan-a14b": "WanImageToVideoPipeline",
    "ltx2": "LTX2ImageToVideoPipeline",
}


@pytest.mark.parametrize("kind", testing.TINY_KINDS)
def test_tiny_model_dir_is_a_diffusers_pipeline_folder_built_once(kind: str) -> None:
    folder = testing.tiny_model_dir(kind)
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == PIPELINE_CLASSES[kind]
    assert testing.tiny_model_dir(kind) == folder


def test_tiny_weights_are_the_same_on_every_build() -> None:
    first = testing.tiny_pipeline("flux").transformer.state_dict()
    second = testing.tiny_pipeline("flux").transformer.state_dict()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_kontext_has_its_own_transformer_weights() -> None:
    flux = testing.tiny_pipeline("flux").transformer.state_dict()
    kontext = testing.tiny_pipeline("flux-kontext").transformer.state_dict()
    assert not torch.equal(flux["proj_out.weight"], kontext["proj_out.weight"])


def test_tiny_folder_loads_with_from_pretrained_in_eval_mode() -> None:
    pipeline_class = diffusers_module().CogVideoXImageToVideoPipeline
    pipeline = pipeline_class.from_pretrained(testing.tiny_model_dir("cogvideox"))
    assert pipeline.transformer.config.sample_frames == testing.TINY_COGVIDEOX_FRAMES
    assert not pipeline.transformer.training and not pipeline.text_encoder.training


def test_gemma_tokenizer_spells_words_and_pads_on_the_left() -> None:
    tokenizer = testing.gemma_tokenizer()
    ids = tokenizer("ab ba", padding="max_length", max_length=8).input_ids
    a, b, space = (tokenizer.convert_tokens_to_ids(t) for t in ("a", "b", "▁"))
    assert ids == [tokenizer.pad_token_id] * 3 + [a, b, space, b, a]


def test_clip_tokenizer_spells_words_letter_by_letter() -> None:
    tokenizer = testing.clip_tokenizer()
    vocab = tokenizer.get_vocab()
    ids = tokenizer("ab c").input_ids
    start, end = vocab["<|startoftext|>"], vocab["<|endoftext|>"]
    assert ids == [start, vocab["a"], vocab["b</w>"], vocab["c</w>"], end]
    assert tokenizer.model_max_length == 77


def test_t5_tokenizer_knows_latin_letters_and_nothing_else() -> None:
    tokenizer = testing.t5_tokenizer()
    vocab = tokenizer.get_vocab()
    assert tokenizer("ab").input_ids == [vocab["▁"], vocab["a"], vocab["b"], vocab["</s>"]]
    assert vocab["<unk>"] in tokenizer("林").input_ids
    assert len(vocab) <= testing.T5_VOCAB


# Parameter counts of the published checkpoints: the architectures written in fanren.testing are
# the real ones, so the GPU bench measures the real models' cost.
FULL_SIZE_PARAMETERS = {
    testing.FLUX_DEV: {"transformer": 11_901_408_320, "text_encoder": 123_060_480,
                       "text_encoder_2": 4_762_310_656, "vae": 83_819_683},
    testing.FLUX_SCHNELL: {"transformer": 11_891_178_560},
    testing.FLUX_KONTEXT: {"transformer": 11_901_408_320},
    testing.COGVIDEOX_5B_I2V: {"transformer": 5_570_479_680, "text_encoder": 4_762_310_656,
                               "vae": 215_583_907},
    testing.COGVIDEOX15_5B_I2V: {"transformer": 5_571_594_880},
    testing.SVD_XT: {"unet": 1_524_623_082, "image_encoder": 632_076_800, "vae": 97_742_847},
    # 8.3 B; Qwen2.5-VL-7B's text model (Qwen2.5-7B less its lm_head); SigLIP-so400m's vision tower
    HUNYUANVIDEO15_480P_I2V: {"transformer": 8_326_608_160, "text_encoder": 7_070_619_136,
                              "image_encoder": 428_225_600},
    HUNYUANVIDEO15_720P_I2V: {"transformer": 8_326_608_160},
    # mean flow adds a second timestep embedding
    HUNYUANVIDEO15_480P_I2V_STEP_DISTILLED: {"transformer": 8_331_330_848},
    testing.FLUX2_KLEIN_4B: {"text_encoder": 4_022_468_096},  # Qwen/Qwen3-4B
    # Wan 2.2 and LTX-2: counted from the configs written in fanren.testing; they match the model
    # cards' rounded sizes (TI2V 5B, A14B 2 × 14B, LTX-2 19B, umT5-xxl 5.7B, Gemma 3 12B).
    testing.WAN22_TI2V_5B: {"transformer": 4_999_787_712, "text_encoder": 5_680_910_336, "vae": 704_688_668},
    testing.WAN22_I2V_A14B: {"transformer": 14_288_901_184, "transformer_2": 14_288_901_184},
    testing.LTX2: {"transformer": 18_876_174_592, "text_encoder": 12_202_563_392, "connectors": 1_431_475_200},
}


@pytest.mark.parametrize("hub_id", testing.FULL_SIZE_MODELS)
def test_full_size_architectures_have_the_published_parameter_counts(hub_id: str) -> None:
    # On the meta device: shapes without memory, so this runs anywhere in a second.
    pipeline = testing.full_size_pipeline(hub_id, dtype=torch.bfloat16, device="meta")
    counts = {name: sum(p.numel() for p in module.parameters())
              for name, module in pipeline.components.items() if isinstance(module, torch.nn.Module)}
    for name, expected in FULL_SIZE_PARAMETERS[hub_id].items():
        assert counts[name] == expected, name
        assert next(pipeline.components[name].parameters()).dtype == torch.bfloat16


def test_fanren_imports_the_test_helpers_only_when_a_model_option_names_synthetic_weights() -> None:
    # fanren.testing registers "fanren-tiny" and "fanren-random" when imported; production code
    # never imports it, except by that registry's name when a profile asks for such weights.
    code = """
import sys
from fanren.engines.image.flux import FluxEngine
from fanren.engines.video.cogvideox import CogVideoXEngine
from fanren.engines.video.svd import SVDEngine
from fanren.engines.video.wan import WanEngine
from fanren.engines.video.ltx2 import LTX2Engine
import fanren.cli, fanren.compile, fanren.doctor, fanren.watch
engines = [FluxEngine(), CogVideoXEngine(), SVDEngine(), WanEngine(), LTX2Engine()]
[engine.identity() for engine in engines]
print("before", "fanren.testing" in sys.modules)
print(FluxEngine({"model": "fanren-tiny:flux"}).identity()["tiny"], "fanren.testing" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["before False", "1 True"], out.stdout + out.stderr


def test_random_weights_load_through_the_synthetic_registry() -> None:
    pipeline_class = diffusers_module().FluxPipeline
    ref = model_ref("fanren-random:" + testing.FLUX_SCHNELL, "model")
    assert (ref.source, ref.target, ref.identity()) == ("random", testing.FLUX_SCHNELL,
                                                         {"model": "fanren-random:" + testing.FLUX_SCHNELL})
    pipeline = load_pipeline(pipeline_class, ref, torch.bfloat16, engine="flux", family="image",
                             option="model", revision=None, download=False, device="meta")
    assert isinstance(pipeline, pipeline_class)
    assert sum(p.numel() for p in pipeline.transformer.parameters()) == \
        FULL_SIZE_PARAMETERS[testing.FLUX_SCHNELL]["transformer"]


def test_qwen_tokenizer_spells_bytes_inside_qwen3s_chat_template() -> None:
    tokenizer = testing.qwen_tokenizer()
    text = tokenizer.apply_chat_template([{"role": "user", "content": "林 a"}], tokenize=False,
                                         add_generation_prompt=True, enable_thinking=False)
    assert text == "<|im_start|>user\n林 a<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    assert tokenizer("林 a").input_ids == [*"林 a".encode()]  # one token a UTF-8 byte: nothing is <unk>
    assert len(tokenizer) == testing.QWEN_VOCAB


def test_qwen_tokenizer_of_hunyuanvideo15_numbers_bytes_in_gpt2s_order_with_markers_as_tokens() -> None:
    tokenizer = testing.qwen_tokenizer(gpt2_order=True, special_chat_markers=True)
    text = tokenizer.apply_chat_template([{"role": "user", "content": "a"}], tokenize=False,
                                         add_generation_prompt=True)
    assert text == "<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\n"  # Qwen2's: no think block
    # "!" (byte 33) is id 0, so "a" (97) is 64; byte 0 comes after the 188 printable bytes.
    assert tokenizer("<|im_start|>a\x00<|im_end|>").input_ids == [257, 64, 188, 258]
    assert len(tokenizer) == testing.QWEN_VOCAB


@pytest.mark.parametrize(("hub_id", "expand_timesteps", "boundary_ratio"),
                         [(testing.WAN22_TI2V_5B, True, None), (testing.WAN22_I2V_A14B, False, 0.9)])
def test_random_weights_keep_the_settings_a_pipeline_registers(hub_id: str, expand_timesteps: bool,
                                                               boundary_ratio: float | None) -> None:
    # Wan 2.2 TI2V conditions on the keyframe through expand_timesteps: a pipeline rebuilt from the
    # components alone lost it and fed its 48-channel transformer 100 channels on the GPU.
    pipeline_class = diffusers_module().WanImageToVideoPipeline
    pipeline = load_pipeline(pipeline_class, model_ref("fanren-random:" + hub_id, "model"), torch.bfloat16,
                             engine="wan", family="video", option="model", revision=None, download=False,
                             device="meta")
    assert (pipeline.config.expand_timesteps, pipeline.config.boundary_ratio) == (expand_timesteps, boundary_ratio)
