"""The flux2 engine on the tiny real FLUX.2 [klein] pipeline (CPU, no weights)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from conftest import SMALL_DRAMA, fanren, report, write_drama
from PIL import Image, ImageOps

pytest.importorskip("torch")
pytest.importorskip("diffusers")

from fanren.engines.base import Request
from fanren.engines.image.flux2 import Flux2Engine, reference_image
from fanren.errors import EngineError, OptionError

TINY = {"model": "fanren-tiny:flux2"}
_runs = itertools.count()


def render(engine: Flux2Engine, tmp: Path, kind: str, sources: dict[str, Path] | None = None,
           inputs: dict[str, dict[str, Path]] | None = None, **params: Any) -> Path:
    out = tmp / f"run-{next(_runs)}"
    out.mkdir()
    request = Request(node_id=f"{kind}:x", kind=kind,
                      params={"prompt": "a swordswoman in a blue robe", "seed": 1, "size": [64, 96], **params},
                      inputs=inputs or {}, out_dir=out, sources=sources or {})
    return engine.run(request)["image.png"]


@pytest.fixture(scope="module")
def engine() -> Flux2Engine:
    return Flux2Engine(TINY)


@pytest.fixture(scope="module")
def sheets(engine: Flux2Engine, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("sheets")
    return {"lin": render(engine, tmp, "character", seed=1),
            "elder": render(engine, tmp, "character", prompt="an old elder with a white beard", seed=2)}


def keyframe(engine: Flux2Engine, tmp: Path, sheets: dict[str, Path], **params: Any) -> Path:
    cast = [{"id": cid, "name": cid.title(), "description": ""} for cid in sheets]
    inputs = {f"character:{cid}": {"image.png": sheet} for cid, sheet in sheets.items()}
    params = {"prompt": "they meet at the gate", "seed": 5, **params}
    return render(engine, tmp, "keyframe", inputs=inputs, characters=cast, **params)


def test_character_sheet_is_a_png_of_exactly_the_size_same_bytes_twice(engine: Flux2Engine,
                                                                       tmp_path: Path) -> None:
    sheet = render(engine, tmp_path, "character", size=[96, 64])
    with Image.open(sheet) as image:
        assert (image.format, image.mode, image.size) == ("PNG", "RGB", (96, 64))
    assert render(engine, tmp_path, "character", size=[96, 64]).read_bytes() == sheet.read_bytes()
    assert render(engine, tmp_path, "character", size=[96, 64], seed=2).read_bytes() != sheet.read_bytes()


def test_keyframe_reads_every_sheet_as_its_own_reference_in_the_shots_order(
        engine: Flux2Engine, sheets: dict[str, Path], tmp_path: Path) -> None:
    both = keyframe(engine, tmp_path, sheets)
    with Image.open(both) as image:
        assert image.size == (64, 96)
    assert keyframe(engine, tmp_path, sheets).read_bytes() == both.read_bytes()
    # another sheet for one character, or the same sheets in the other order, give another keyframe
    edited = {**sheets, "elder": render(engine, tmp_path, "character", prompt="a tall monk", seed=9)}
    assert keyframe(engine, tmp_path, edited).read_bytes() != both.read_bytes()
    swapped = {"elder": sheets["elder"], "lin": sheets["lin"]}
    assert keyframe(engine, tmp_path, swapped).read_bytes() != both.read_bytes()
    # without the references the keyframe is plain text-to-image of the same prompt
    alone = render(engine, tmp_path, "keyframe", prompt="they meet at the gate", seed=5)
    assert alone.read_bytes() != both.read_bytes()


def test_consistency_none_renders_keyframes_from_the_prompt_alone(sheets: dict[str, Path], tmp_path: Path) -> None:
    plain = Flux2Engine({**TINY, "consistency": "none"})
    alone = render(plain, tmp_path, "keyframe", prompt="they meet at the gate", seed=5)
    assert keyframe(plain, tmp_path, sheets).read_bytes() == alone.read_bytes()


def test_a_characters_reference_picture_is_redrawn_or_used_as_it_is(engine: Flux2Engine, tmp_path: Path) -> None:
    photo = tmp_path / "face.png"
    picture = Image.new("RGB", (120, 80), (200, 150, 120))
    picture.paste((20, 20, 20), (40, 10, 80, 50))
    picture.save(photo)
    redrawn = render(engine, tmp_path, "character", sources={"reference": photo}, reference="refs/face.png")
    assert redrawn.read_bytes() != render(engine, tmp_path, "character").read_bytes()
    as_is = render(Flux2Engine({**TINY, "consistency": "none"}), tmp_path, "character",
                   sources={"reference": photo}, reference="refs/face.png")
    with Image.open(as_is) as image:
        expected = ImageOps.fit(picture, (64, 96), Image.Resampling.LANCZOS)
        assert image.tobytes() == expected.tobytes()


@pytest.mark.parametrize("size, area, expected", [
    ((720, 1280), 64 * 96, (64, 112)),        # a 9:16 sheet read at a tiny keyframe's area
    ((720, 1280), 720 * 1280, (720, 1280)),   # at its own size: unchanged
    ((2000, 1000), 4_000_000, (1456, 720)),   # never above 1 MP, which the pipeline would shrink itself
    ((40, 30), 40 * 30, (64, 64)),            # never a side under 64, which the pipeline refuses
])
def test_reference_is_read_at_the_keyframes_area(size: tuple[int, int], area: int,
                                                 expected: tuple[int, int]) -> None:
    assert reference_image(Image.new("RGB", size), area).size == expected


def test_the_model_picks_the_pipeline_and_its_defaults(tmp_path: Path) -> None:
    klein = Flux2Engine({}).identity()
    assert (klein["model"], klein["pipeline"], klein["steps"], klein["guidance"]) == (
        "black-forest-labs/FLUX.2-klein-4B", "Flux2KleinPipeline", 4, 1.0)
    dev = Flux2Engine({"model": "black-forest-labs/FLUX.2-dev"}).identity()
    assert (dev["pipeline"], dev["steps"], dev["guidance"]) == ("Flux2Pipeline", 50, 4.0)
    base = tmp_path / "klein-base"
    base.mkdir()
    (base / "model_index.json").write_text(json.dumps({"_class_name": "Flux2KleinPipeline",
                                                       "is_distilled": False}))
    folder = Flux2Engine({"model": str(base)}).identity()
    assert (folder["model"], folder["pipeline"], folder["steps"], folder["guidance"]) == (
        "klein-base", "Flux2KleinPipeline", 50, 4.0)
    assert Flux2Engine({**TINY, "steps": 3}).identity()["steps"] == 3


@pytest.mark.parametrize("options, words", [
    ({"cache": "first-block"}, ("engine flux2: option cache: expected an option of engine 'flux2' (known options: "
                               "attention, compile, consistency, device, download, dtype, fuse_qkv, guidance, "
                               "model, quantize, revision, steps, vram)")),
    ({"consistency": "kontext"}, ("engine flux2: option consistency: expected one of 'reference', 'none', "
                                 "got 'kontext'")),
    ({"steps": 0}, "engine flux2: option steps: expected an integer in [1, 200], got 0"),
    ({"guidance": "high"}, "engine flux2: option guidance: expected a number in [0, 30], got 'high'"),
    ({"vram": "half"}, ("engine flux2: option vram: expected one of 'auto', 'full', 'model-offload', "
                       "'group-offload', 'sequential-offload', got 'half'")),
    ({"compile": 1}, "engine flux2: option compile: expected true or false, got 1"),
])
def test_bad_options_are_usage_errors_before_anything_loads(options: dict[str, Any], words: str) -> None:
    with pytest.raises(OptionError) as caught:
        Flux2Engine({**TINY, **options})
    assert str(caught.value) == words and caught.value.exit_code == 2


def test_size_must_be_a_multiple_of_16(engine: Flux2Engine, tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="flux2 renders sizes that are multiples of 16 pixels, asked for 72×96"):
        render(engine, tmp_path, "character", size=[72, 96])


def test_model_loads_once_for_many_renders(tmp_path: Path) -> None:
    engine = Flux2Engine(TINY)
    for seed in (1, 2, 3):
        render(engine, tmp_path, "character", seed=seed)
    assert engine.loads == 1


VERTICAL = SMALL_DRAMA.replace('aspect = "16:9"', 'aspect = "9:16"') + """
[profiles.x]
image = { engine = "flux2", model = "fanren-tiny:flux2" }
video = { engine = "cogvideox", model = "fanren-tiny:cogvideox" }
voice = { engine = "espeak" }
"""


def test_a_9_16_drama_renders_through_flux2_and_checks_clean(tmp_path: Path) -> None:
    drama = write_drama(tmp_path / "drama", VERTICAL)
    built = fanren("build", drama, "--profile", "x")
    assert built.code == 0, built.stderr
    nodes = report(drama, "x")["nodes"]
    images = {n["id"]: n for n in nodes if n["id"].startswith(("character:", "keyframe:"))}
    assert set(images) == {"character:lin", "character:elder", "keyframe:s1", "keyframe:s2", "keyframe:s3"}
    assert {n["engine"] for n in images.values()} == {"flux2"}
    # same key, same bytes: every node rendered again gives the bytes in the cache
    checked = fanren("build", drama, "--profile", "x", "--check")
    assert checked.code == 0, checked.stderr
    assert f"checked {len(nodes)} nodes: every one gave the same bytes again" in checked.stdout
