"""The consistency engine: tiny random DINOv2 and CLIP vision models, built in-process, on real images."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SMALL_DRAMA
from PIL import Image, ImageDraw

from fanren.compile import resolve_engines
from fanren.consistency import verdict
from fanren.engines.base import Request
from fanren.engines.consistency import ConsistencyEngine, regions
from fanren.errors import DramaError, EngineError
from fanren.project import ConsistencyCheck, parse_project

TINY_MODELS = ["fanren-tiny:dinov2", "fanren-tiny:clip-vision"]


def figure(path: Path, coat: tuple[int, int, int], background: tuple[int, int, int], shift: int = 0) -> Path:
    """A character-like picture: a head and a coat of one colour on a plain background."""
    image = Image.new("RGB", (256, 256), background)
    draw = ImageDraw.Draw(image)
    draw.ellipse((98 + shift, 30, 158 + shift, 90), fill=(235, 200, 170))
    draw.rectangle((78 + shift, 95, 178 + shift, 240), fill=coat)
    image.save(path)
    return path


def stripes(path: Path) -> Path:
    """Nothing like a figure: black and yellow diagonal stripes."""
    image = Image.new("RGB", (256, 256), (250, 220, 0))
    draw = ImageDraw.Draw(image)
    for x in range(-256, 256, 32):
        draw.polygon([(x, 0), (x + 16, 0), (x + 272, 256), (x + 256, 256)], fill=(0, 0, 0))
    image.save(path)
    return path


def side_by_side(path: Path, left: Path, right: Path) -> Path:
    with Image.open(left) as a, Image.open(right) as b:
        image = Image.new("RGB", (512, 256))
        image.paste(a, (0, 0))
        image.paste(b, (256, 0))
    image.save(path)
    return path


def check(engine: ConsistencyEngine, out: Path, character: str, shots: list[dict],
          inputs: dict[str, Path]) -> dict:
    out.mkdir()
    request = Request(node_id=f"consistency:{character}", kind="consistency",
                      params={"character_id": character, "name": character.title(), "shots": shots},
                      inputs={node: {"image.png": file} for node, file in inputs.items()}, out_dir=out)
    files = engine.run(request)
    assert set(files) == {"consistency.json"}
    return json.loads(files["consistency.json"].read_text(encoding="utf-8"))


@pytest.mark.parametrize("model", TINY_MODELS)
def test_a_keyframe_showing_someone_else_scores_lowest_and_is_the_outlier(tmp_path: Path, model: str) -> None:
    sheet = figure(tmp_path / "sheet.png", coat=(200, 30, 30), background=(40, 60, 90))
    keyframes = {f"k{i}": figure(tmp_path / f"k{i}.png", coat=(200, 30, 30), background=(40, 60, 90), shift=s)
                 for i, s in enumerate([-12, -6, 0, 6, 12, 18])}
    keyframes["k6"] = stripes(tmp_path / "k6.png")  # the image model drew something else entirely
    engine = ConsistencyEngine({"model": model, "device": "cpu"})
    shots = [{"shot": k, "characters": ["ann"]} for k in keyframes]
    inputs = {"character:ann": sheet} | {f"keyframe:{k}": f for k, f in keyframes.items()}

    scores = check(engine, tmp_path / "out", "ann", shots, inputs)

    assert set(scores) == {"character", "name", "shots", "mean_similarity", "mean_pairwise"}
    assert (scores["character"], scores["name"]) == ("ann", "Ann")
    assert [s["shot"] for s in scores["shots"]] == list(keyframes)
    assert all(set(s) == {"shot", "similarity", "to_centroid", "z", "z_centroid", "region"} for s in scores["shots"])
    assert all(s["region"] == [0, 1] for s in scores["shots"])
    lowest = min(scores["shots"], key=lambda s: s["similarity"])
    assert lowest["shot"] == "k6"
    assert min(scores["shots"], key=lambda s: s["to_centroid"])["shot"] == "k6"
    others = [s["similarity"] for s in scores["shots"] if s["shot"] != "k6"]
    threshold = round((lowest["similarity"] + min(others)) / 2, 4)  # between the stranger and the rest

    report = verdict(ConsistencyCheck(model=model, threshold=threshold, outlier_z=2.0), {"ann": scores})

    assert report["flagged"] == [{"character": "ann", "shot": "k6", "similarity": lowest["similarity"],
                                  "z": lowest["z"], "z_centroid": lowest["z_centroid"], "below": True,
                                  "outlier": True}]
    assert lowest["z"] <= -2.0 and lowest["z_centroid"] <= -2.0


def test_the_same_request_gives_the_same_bytes(tmp_path: Path) -> None:
    sheet = figure(tmp_path / "sheet.png", coat=(30, 30, 200), background=(90, 90, 40))
    keyframe = figure(tmp_path / "k.png", coat=(30, 30, 200), background=(90, 90, 40), shift=10)
    inputs = {"character:ann": sheet, "keyframe:k": keyframe}
    shots = [{"shot": "k", "characters": ["ann"]}]

    first = ConsistencyEngine({"model": "fanren-tiny:dinov2", "device": "cpu"})
    a = check(first, tmp_path / "a", "ann", shots, inputs)
    again = ConsistencyEngine({"model": "fanren-tiny:dinov2", "device": "cpu"})
    b = check(again, tmp_path / "b", "ann", shots, inputs)

    assert (tmp_path / "a" / "consistency.json").read_bytes() == (tmp_path / "b" / "consistency.json").read_bytes()
    assert a == b
    assert a["mean_pairwise"] is None  # one shot: nothing to pair
    assert (a["shots"][0]["z"], a["shots"][0]["z_centroid"]) == (0.0, 0.0)


@pytest.mark.parametrize("model", TINY_MODELS)
def test_two_characters_in_one_keyframe_are_matched_to_their_columns(tmp_path: Path, model: str) -> None:
    ann = figure(tmp_path / "ann.png", coat=(200, 30, 30), background=(40, 60, 90))
    bob = stripes(tmp_path / "bob.png")
    together = side_by_side(tmp_path / "two.png", ann, bob)    # ann left, bob right
    swapped = side_by_side(tmp_path / "swap.png", bob, ann)    # bob left, ann right
    engine = ConsistencyEngine({"model": model, "device": "cpu"})
    # the shots list bob first: the order in drama.toml says nothing about where they stand
    shots = [{"shot": "two", "characters": ["bob", "ann"]}, {"shot": "swap", "characters": ["bob", "ann"]}]
    inputs = {"character:ann": ann, "character:bob": bob, "keyframe:two": together, "keyframe:swap": swapped}

    scores_ann = check(engine, tmp_path / "ann", "ann", shots, inputs)
    scores_bob = check(engine, tmp_path / "bob", "bob", shots, inputs)

    assert [s["region"] for s in scores_ann["shots"]] == [[0, 2], [1, 2]]
    assert [s["region"] for s in scores_bob["shots"]] == [[1, 2], [0, 2]]
    # each column is exactly the sheet's pixels, so the matched similarity is 1
    assert [s["similarity"] for s in scores_ann["shots"]] == [1.0, 1.0]


def test_regions_are_columns_for_several_characters_and_squares_across_the_frame_for_one() -> None:
    wide, tall, square = Image.new("RGB", (100, 20)), Image.new("RGB", (20, 50)), Image.new("RGB", (30, 30))
    assert [r.size for r in regions(wide, 3)] == [(33, 20), (34, 20), (33, 20)]
    assert [r.size for r in regions(wide, 1)] == [(20, 20)] * 3
    assert [r.size for r in regions(tall, 1)] == [(20, 20)] * 3
    assert regions(square, 1) == [square]


def test_one_character_at_the_edge_of_a_wide_frame_is_found(tmp_path: Path) -> None:
    sheet = figure(tmp_path / "sheet.png", coat=(200, 30, 30), background=(40, 60, 90))
    wide = Image.open(stripes(tmp_path / "s.png")).resize((768, 256))
    with Image.open(sheet) as picture:
        wide.paste(picture, (512, 0))  # at the right edge: a centre crop would not show it
    wide.save(tmp_path / "wide.png")
    engine = ConsistencyEngine({"model": "fanren-tiny:dinov2", "device": "cpu"})

    scores = check(engine, tmp_path / "out", "ann", [{"shot": "k", "characters": ["ann"]}],
                   {"character:ann": sheet, "keyframe:k": tmp_path / "wide.png"})

    assert scores["shots"][0]["region"] == [2, 3]
    assert scores["shots"][0]["similarity"] == 1.0  # the right square is exactly the sheet


def test_bad_options_name_their_key_in_drama_toml(tmp_path: Path) -> None:
    def problems(check: str) -> list[str]:
        project = parse_project(SMALL_DRAMA + f"\n[check]\nconsistency = {check}\n", tmp_path)
        with pytest.raises(DramaError) as caught:
            resolve_engines(project, "draft")
        return [p.show() for p in caught.value.problems]

    assert problems('{ model = "fanren-tiny:dinov3" }') == [
        (f"{tmp_path / 'drama.toml'}: check.consistency.model: expected a known tiny model, got "
         "'fanren-tiny:dinov3' (known: fanren-tiny:dinov2, fanren-tiny:clip-vision)")]
    with pytest.raises(DramaError) as caught:
        parse_project(SMALL_DRAMA + '\n[check]\nconsistency = { threshold = 2, devise = "cpu" }\n', tmp_path)
    assert sorted(p.show() for p in caught.value.problems) == sorted([
        f"{tmp_path / 'drama.toml'}: check.consistency.threshold: expected a smaller number, got 2",
        (f"{tmp_path / 'drama.toml'}: check.consistency.devise: expected a known key, got unknown key "
         "'devise' (did you mean 'device'?)")])


def test_weights_that_are_not_here_are_named_with_how_to_get_them(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    engine = ConsistencyEngine({"model": "facebook/dinov2-small", "device": "cpu"})

    with pytest.raises(EngineError) as caught:
        engine.load()

    lines = str(caught.value).splitlines()
    assert lines[:4] == [
        "consistency: the weights of facebook/dinov2-small are not on this machine",
        f"  looked in the Hugging Face cache: {tmp_path / 'hf' / 'hub' / 'models--facebook--dinov2-small'}",
        "  download them with: huggingface-cli download facebook/dinov2-small",
        '  or point [check] consistency at a local copy: model = "/path/to/folder"']
