"""The flux engine on the tiny real FLUX.1 and FLUX.1 Kontext pipelines (CPU, no weights)."""

from __future__ import annotations

import importlib.util
import itertools
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageOps

pytest.importorskip("torch")
pytest.importorskip("diffusers")

from fanren import testing
from fanren.engines.base import Request
from fanren.engines.diffusion import set_dispatch_backend
from fanren.engines.image.flux import FluxEngine, side_by_side
from fanren.errors import EngineError, OptionError, UsageError

TINY = {"model": "fanren-tiny:flux"}
_runs = itertools.count()


def render(engine: FluxEngine, tmp: Path, kind: str, sources: dict[str, Path] | None = None,
           inputs: dict[str, dict[str, Path]] | None = None, progress: Any = None, **params: Any) -> Path:
    out = tmp / f"run-{next(_runs)}"
    out.mkdir()
    request = Request(node_id=f"{kind}:x", kind=kind,
                      params={"prompt": "a swordswoman in a blue robe", "seed": 1, "size": [32, 48],
                              **params},
                      inputs=inputs or {}, out_dir=out, sources=sources or {},
                      **({"progress": progress} if progress else {}))
    return engine.run(request)["image.png"]


@pytest.fixture(scope="module")
def engine() -> FluxEngine:
    return FluxEngine(TINY)


@pytest.fixture(scope="module")
def sheets(engine: FluxEngine, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("sheets")
    return {"lin": render(engine, tmp, "character", seed=1),
            "elder": render(engine, tmp, "character", prompt="an old elder with a white beard", seed=2)}


def keyframe(engine: FluxEngine, tmp: Path, sheets: dict[str, Path], **params: Any) -> Path:
    cast = [{"id": cid, "name": cid.title(), "description": ""} for cid in sheets]
    inputs = {f"character:{cid}": {"image.png": sheet} for cid, sheet in sheets.items()}
    params = {"prompt": "they meet at the gate", "seed": 5, "size": [64, 32], **params}
    return render(engine, tmp, "keyframe", inputs=inputs, characters=cast, **params)


def test_character_sheet_is_a_png_of_exactly_the_size(engine: FluxEngine, tmp_path: Path) -> None:
    sheet = render(engine, tmp_path, "character", size=[48, 64])
    with Image.open(sheet) as image:
        assert (image.format, image.mode, image.size) == ("PNG", "RGB", (48, 64))


def test_same_request_same_bytes_and_seed_or_prompt_change_them(engine: FluxEngine, tmp_path: Path) -> None:
    first = render(engine, tmp_path, "character").read_bytes()
    assert render(engine, tmp_path, "character").read_bytes() == first
    assert render(engine, tmp_path, "character", seed=2).read_bytes() != first
    assert render(engine, tmp_path, "character", prompt="an old elder").read_bytes() != first


def test_keyframe_is_conditioned_on_its_characters_sheets(engine: FluxEngine, sheets: dict[str, Path],
                                                          tmp_path: Path) -> None:
    with_both = keyframe(engine, tmp_path, sheets)
    with Image.open(with_both) as image:
        assert image.size == (64, 32)
    assert keyframe(engine, tmp_path, sheets).read_bytes() == with_both.read_bytes()
    # Another sheet for one character changes the keyframe: the sheets are read, not only the prompt.
    edited = {**sheets, "elder": render(engine, tmp_path, "character", prompt="a tall monk", seed=9)}
    assert keyframe(engine, tmp_path, edited).read_bytes() != with_both.read_bytes()
    assert keyframe(engine, tmp_path, {"lin": sheets["lin"]}).read_bytes() != with_both.read_bytes()
    no_one = render(engine, tmp_path, "keyframe", characters=[], prompt="they meet at the gate", seed=5,
                    size=[64, 32])
    assert no_one.read_bytes() != with_both.read_bytes()


def test_without_consistency_a_keyframe_ignores_the_sheets(sheets: dict[str, Path], tmp_path: Path) -> None:
    plain = FluxEngine({**TINY, "consistency": "none"})
    with_sheets = keyframe(plain, tmp_path, sheets)
    without = render(plain, tmp_path, "keyframe", characters=[], prompt="they meet at the gate", seed=5,
                     size=[64, 32])
    assert with_sheets.read_bytes() == without.read_bytes()
    assert plain.identity()["consistency"] == "none" and "kontext" not in plain.identity()


def test_reference_photo_becomes_the_sheet(engine: FluxEngine, tmp_path: Path) -> None:
    photo = tmp_path / "face.png"
    Image.new("RGB", (40, 40), (200, 40, 40)).save(photo)
    from_photo = render(engine, tmp_path, "character", sources={"reference": photo})
    assert from_photo.read_bytes() != render(engine, tmp_path, "character").read_bytes()
    plain = FluxEngine({**TINY, "consistency": "none"})
    fitted = render(plain, tmp_path, "character", sources={"reference": photo})
    with Image.open(fitted) as image, Image.open(photo) as original:
        assert image.tobytes() == ImageOps.fit(original.convert("RGB"), (32, 48)).tobytes()


def test_side_by_side_gives_each_character_a_column() -> None:
    red, blue = Image.new("RGB", (10, 20), (255, 0, 0)), Image.new("RGB", (10, 20), (0, 0, 255))
    canvas = side_by_side([red, blue], (64, 32))
    assert canvas.size == (64, 32)
    assert canvas.getpixel((16, 16)) == (255, 0, 0) and canvas.getpixel((48, 16)) == (0, 0, 255)
    assert canvas.getpixel((0, 0)) == (128, 128, 128)


def test_model_loads_once_for_many_runs_and_again_after_unload(tmp_path: Path) -> None:
    engine = FluxEngine(TINY)
    engine.load()
    for seed in (1, 2, 3):
        render(engine, tmp_path, "character", seed=seed)
    engine.load()
    assert engine.loads == 1
    engine.unload()
    assert not engine.loaded
    render(engine, tmp_path, "character")
    assert engine.loads == 2


def test_progress_reports_each_denoising_step(engine: FluxEngine, tmp_path: Path) -> None:
    messages: list[tuple[float, str]] = []
    render(engine, tmp_path, "character", progress=lambda fraction, text: messages.append((fraction, text)))
    assert messages == [(0.5, "step 1/2"), (1.0, "step 2/2")]


def test_identity_keys_what_changes_bytes_and_nothing_else() -> None:
    base = FluxEngine(TINY).identity()
    assert base["model"] == "fanren-tiny:flux" and base["steps"] == 2 and base["dtype"] == "float32"
    assert FluxEngine({**TINY, "steps": 3}).identity() != base
    assert FluxEngine({**TINY, "cache": "first-block"}).identity()["cache"] == {"kind": "first-block",
                                                                               "threshold": 0.08}
    # Where and how fast it runs does not change the picture.
    assert FluxEngine({**TINY, "vram": "model-offload", "device": "cpu", "download": True}).identity() == base


def test_local_folder_is_keyed_by_name_and_configs_not_path(tmp_path: Path) -> None:
    folder = tmp_path / "weights" / "my-flux"
    shutil.copytree(testing.tiny_model_dir("flux"), folder)
    engine = FluxEngine({"model": str(folder), "consistency": "none", "dtype": "float32", "steps": 2})
    identity = engine.identity()
    assert identity["model"] == "my-flux" and len(identity["config"]) == 16
    assert str(tmp_path) not in repr(identity)
    moved = tmp_path / "elsewhere" / "my-flux"
    shutil.copytree(folder, moved)
    assert FluxEngine({"model": str(moved), "consistency": "none", "dtype": "float32",
                       "steps": 2}).identity() == identity
    sheet = render(engine, tmp_path, "character")
    with Image.open(sheet) as image:
        assert image.size == (32, 48)


def test_missing_folder_says_where_it_looked_and_how_to_fix_it(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    missing = tmp_path / "no-such-weights"
    engine = FluxEngine({"model": str(missing)})
    with pytest.raises(EngineError) as caught:
        render(engine, tmp_path, "character")
    message = str(caught.value)
    assert f"flux: the weights of {missing} are not on this machine" in message
    assert f"looked for a diffusers pipeline (model_index.json) in {missing}" in message
    assert "huggingface-cli download" in message
    assert '[profiles.final]\n    image = { engine = "flux", model = "/path/to/no-such-weights" }' in message


def test_missing_hub_model_names_the_cache_and_the_download_command(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    engine = FluxEngine({})
    assert engine.identity()["model"] == testing.FLUX_DEV and engine.identity()["revision"] is None
    with pytest.raises(EngineError) as caught:
        render(engine, tmp_path, "character")
    message = str(caught.value)
    where = tmp_path / "hub" / "models--black-forest-labs--FLUX.1-dev"
    assert f"looked in the Hugging Face cache: {where} (HF_HUB_OFFLINE is set: nothing is downloaded)" \
        in message
    assert "huggingface-cli download black-forest-labs/FLUX.1-dev" in message
    assert "huggingface-cli login" in message  # FLUX.1-dev is gated


def test_cached_hub_revision_is_in_the_identity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    refs = tmp_path / "models--black-forest-labs--FLUX.1-schnell" / "refs"
    refs.mkdir(parents=True)
    (refs / "main").write_text("0123456789abcdef0123456789abcdef01234567")
    identity = FluxEngine({"model": testing.FLUX_SCHNELL, "consistency": "none"}).identity()
    assert identity["revision"] == "0123456789abcdef0123456789abcdef01234567"
    assert (identity["steps"], identity["guidance"], identity["max_sequence_length"]) == (4, 0.0, 256)


@pytest.mark.parametrize("options, words", [
    ({"stpes": 4}, "engine flux: option stpes: expected an option of engine 'flux' (did you mean 'steps'? "
                   "known options: attention, cache, compile, consistency, device, download, dtype, fuse_qkv, "
                   "guidance, kontext_guidance, kontext_model, kontext_revision, kontext_steps, model, quantize, "
                   "revision, steps, vram)"),
    ({"consistency": "ip"}, "engine flux: option consistency: expected one of 'kontext', 'none', got 'ip'"),
    ({"steps": 0}, "engine flux: option steps: expected an integer in [1, 200], got 0"),
    ({"cache": "magic"}, "engine flux: option cache: expected \"none\", one of 'first-block', 'taylorseer' or a "
                         "table with kind = one of them, got 'magic'"),
    ({"model": "fanren-tiny:nope"}, "engine flux: option model: expected a known tiny model, got "
                                    "'fanren-tiny:nope' (known: " + ", ".join(
                                        f"fanren-tiny:{kind}" for kind in testing.TINY_KINDS) + ")"),
    ({"attention": "fast"}, ("engine flux: option attention: expected one of 'default', 'cudnn', 'flash', "
                             "'efficient', 'flash-attn', 'flash-attn3', 'sage', got 'fast'")),
    ({"fuse_qkv": "yes"}, "engine flux: option fuse_qkv: expected true or false, got 'yes'"),
    ({"quantize": "int4"}, "engine flux: option quantize: expected one of 'none', 'fp8', got 'int4'"),
    ({"device": "tpu"}, "engine flux: option device: expected \"auto\", \"cpu\" or \"cuda[:N]\", got 'tpu'"),
    ({"revision": 3}, "engine flux: option revision: expected a string, got 3"),
])
def test_bad_options_are_usage_errors(options: dict[str, Any], words: str) -> None:
    with pytest.raises(OptionError) as caught:
        FluxEngine({**TINY, **options})
    assert str(caught.value) == words and caught.value.exit_code == 2
    assert isinstance(caught.value, UsageError) and caught.value.option == next(iter(options))


def test_size_must_be_a_multiple_of_16(engine: FluxEngine, tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="multiples of 16 pixels, asked for 40×48"):
        render(engine, tmp_path, "character", size=[40, 48])


def test_step_cache_renders_the_same_bytes_twice(sheets: dict[str, Path], tmp_path: Path) -> None:
    cached = FluxEngine({**TINY, "cache": "first-block"})
    plain_sheet = render(cached, tmp_path, "character")
    assert render(cached, tmp_path, "character").read_bytes() == plain_sheet.read_bytes()
    kontext = keyframe(cached, tmp_path, sheets)  # Kontext: the engine opens the cache context itself
    assert keyframe(cached, tmp_path, sheets).read_bytes() == kontext.read_bytes()


def test_planning_imports_neither_torch_nor_diffusers_nor_pillow() -> None:
    # identity(), resources() and native_size() run for every node of every build, even a no-op one.
    code = (
        "import sys\n"
        "from fanren.engines.image.flux import FluxEngine\n"
        "from fanren.engines.video.cogvideox import CogVideoXEngine\n"
        "from fanren.engines.video.svd import SVDEngine\n"
        "engines = FluxEngine({}), CogVideoXEngine({'model': 'fanren-tiny:cogvideox'}), SVDEngine({})\n"
        "for engine in engines:\n"
        "    engine.identity(); engine.resources()\n"
        "    getattr(engine, 'native_size', lambda a: None)('16:9')\n"
        "heavy = ('torch', 'diffusers', 'transformers', 'PIL', 'numpy', 'importlib.metadata')\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_speed_options_are_keyed_only_when_set() -> None:
    base = FluxEngine(TINY).identity()
    assert not {"attention", "fuse_qkv", "quantize"} & set(base)  # keys from before these options hold
    assert FluxEngine({**TINY, "attention": "default", "fuse_qkv": False, "quantize": "none"}).identity() == base
    fast = FluxEngine({**TINY, "attention": "cudnn", "fuse_qkv": True, "quantize": "fp8"}).identity()
    assert (fast["attention"], fast["fuse_qkv"], fast["quantize"]) == ("cudnn", True, "fp8")
    assert {k: v for k, v in fast.items() if k not in {"attention", "fuse_qkv", "quantize"}} == base


def test_fused_qkv_renders_repeatably_through_fused_projections(sheets: dict[str, Path], tmp_path: Path) -> None:
    fused = FluxEngine({**TINY, "fuse_qkv": True})
    sheet = render(fused, tmp_path, "character")
    with Image.open(sheet) as image:
        assert image.size == (32, 48)
    assert render(fused, tmp_path, "character").read_bytes() == sheet.read_bytes()
    kontext = keyframe(fused, tmp_path, sheets)
    assert keyframe(fused, tmp_path, sheets).read_bytes() == kontext.read_bytes()
    for pipeline in (fused._text_to_image, fused._kontext):
        attentions = [m for m in pipeline.transformer.modules() if hasattr(m, "fused_projections")]
        assert len(attentions) == 2 and all(m.fused_projections for m in attentions)  # 1 double + 1 single


def test_cuda_attention_kernels_are_refused_at_load_on_the_cpu(tmp_path: Path) -> None:
    engine = FluxEngine({**TINY, "attention": "cudnn"})
    with pytest.raises(EngineError, match=r"flux: attention = 'cudnn' needs a CUDA device, this engine runs "
                                          r"on cpu \(remove the option, or set attention = \"default\"\)"):
        render(engine, tmp_path, "character")
    assert not engine.loaded


@pytest.mark.skipif(importlib.util.find_spec("torchao") is not None, reason="torchao is installed")
def test_fp8_without_torchao_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match=r"quantize = 'fp8' needs torchao, which is not installed: "
                                          r"pip install torchao==0\.18\.0"):
        render(FluxEngine({**TINY, "quantize": "fp8"}), tmp_path, "character")


def test_dispatch_backend_reaches_every_processor_and_leaves_the_process_default() -> None:
    from diffusers.models.attention_dispatch import _AttentionBackendRegistry

    engine = FluxEngine(TINY)
    engine.load()
    transformer = engine._text_to_image.transformer
    before = _AttentionBackendRegistry._active_backend
    set_dispatch_backend(transformer, "efficient")
    backends = {str(p._attention_backend.value) for p in transformer.attn_processors.values()}
    assert backends == {"_native_efficient"}
    assert _AttentionBackendRegistry._active_backend == before
    transformer.reset_attention_backend()


@pytest.mark.skipif(importlib.util.find_spec("flash_attn") is not None, reason="flash-attn is installed")
def test_packaged_attention_without_its_package_is_an_engine_error() -> None:
    engine = FluxEngine(TINY)
    engine.load()
    with pytest.raises(EngineError, match=r"attention = 'flash-attn': .*flash-attn"):
        set_dispatch_backend(engine._text_to_image.transformer, "flash-attn")
