"""The card engine: storyboard cards drawn with Pillow, real fonts, real PNG bytes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageChops, ImageDraw

from fanren.engines.base import Request
from fanren.engines.image.card import CardEngine
from fanren.engines.image.card_drawing import font, wrap
from fanren.errors import EngineError

SIZES = {"16:9": (1280, 720), "9:16": (720, 1280), "1:1": (960, 960)}
ACTION = "韩立蹲在药园里，小心翼翼地把一株枯萎的草药埋进土中，手中的小绿瓶在夕阳下微微发光。"
TEXT_COLOUR = (240, 238, 232)


def keyframe_request(out_dir: Path, inputs: dict[str, Path] | None = None, **params: Any) -> Request:
    out_dir.mkdir(parents=True, exist_ok=True)
    inputs = inputs or {}
    base: dict[str, Any] = {
        "shot_id": "s1-2", "scene_id": "s1", "setting": "七玄门后山，黄昏",
        "characters": [{"id": cid, "name": {"hanli": "韩立", "mo": "墨大夫"}.get(cid, cid), "description": ""}
                       for cid in inputs],
        "action": ACTION, "camera": "中景，缓慢推近", "style": "", "prompt": "", "seed": 7,
        "size": [1280, 720], "language": "zh",
    }
    base.update(params)
    return Request(node_id="keyframe:s1-2", kind="keyframe", params=base,
                   inputs={f"character:{cid}": {"image.png": path} for cid, path in inputs.items()},
                   out_dir=out_dir)


def character_request(out_dir: Path, reference: Path | None = None, **params: Any) -> Request:
    out_dir.mkdir(parents=True, exist_ok=True)
    base: dict[str, Any] = {
        "character_id": "hanli", "name": "韩立", "description": "青衫少年，面容普通，眼神沉静，性格谨慎隐忍。",
        "style": "", "prompt": "", "seed": 1, "size": [768, 1024], "language": "zh",
    }
    base.update(params)
    sources = {"reference": reference} if reference is not None else {}
    return Request(node_id="character:hanli", kind="character", params=base, inputs={},
                   out_dir=out_dir, sources=sources)


def solid_png(path: Path, colour: tuple[int, int, int], size: tuple[int, int] = (300, 400)) -> Path:
    Image.new("RGB", size, colour).save(path)
    return path


def render(request: Request) -> Path:
    outputs = CardEngine().run(request)
    assert set(outputs) == {"image.png"}
    assert outputs["image.png"].parent == request.out_dir
    return outputs["image.png"]


def pixels_near(image: Image.Image, colour: tuple[int, int, int], tolerance: int = 8) -> int:
    """How many pixels are within `tolerance` of `colour` in every channel."""
    bands = [band.point(lambda v, c=c: 255 if abs(v - c) <= tolerance else 0)
             for band, c in zip(image.convert("RGB").split(), colour, strict=True)]
    mask = ImageChops.multiply(ImageChops.multiply(bands[0], bands[1]), bands[2])
    return sum(mask.histogram()[255:])


@pytest.mark.parametrize("aspect", sorted(SIZES))
def test_keyframe_card_is_exactly_the_requested_size(tmp_path: Path, aspect: str) -> None:
    size = SIZES[aspect]
    portrait = solid_png(tmp_path / "hanli.png", (40, 90, 200))
    path = render(keyframe_request(tmp_path / "out", {"hanli": portrait}, size=list(size)))
    with Image.open(path) as image:
        assert image.format == "PNG"
        assert image.size == size
        image.load()
        assert image.mode == "RGB"


@pytest.mark.parametrize("aspect", sorted(SIZES))
def test_character_card_is_exactly_the_requested_size(tmp_path: Path, aspect: str) -> None:
    size = SIZES[aspect]
    with Image.open(render(character_request(tmp_path, size=list(size)))) as image:
        assert image.format == "PNG"
        assert image.size == size
        image.load()


def test_same_request_gives_identical_bytes(tmp_path: Path) -> None:
    portrait = solid_png(tmp_path / "hanli.png", (40, 90, 200))
    first = render(keyframe_request(tmp_path / "a", {"hanli": portrait}))
    second = render(keyframe_request(tmp_path / "b", {"hanli": portrait}))
    assert first.read_bytes() == second.read_bytes()
    sheet_a = render(character_request(tmp_path / "c"))
    sheet_b = render(character_request(tmp_path / "d"))
    assert sheet_a.read_bytes() == sheet_b.read_bytes()


def test_a_different_action_gives_different_bytes(tmp_path: Path) -> None:
    first = render(keyframe_request(tmp_path / "a"))
    second = render(keyframe_request(tmp_path / "b", action="墨大夫推门而入。"))
    assert first.read_bytes() != second.read_bytes()


def glyph(ch: str, size: int = 40) -> bytes:
    canvas = Image.new("L", (size * 2, size * 2))
    ImageDraw.Draw(canvas).text((size // 2, size // 2), ch, font=font(size), fill=255)
    return canvas.tobytes()


def test_the_font_has_real_glyphs_for_the_chinese_text() -> None:
    notdef = glyph("\U000f0000")  # a private-use code point: no font has it, so it draws as tofu
    for ch in sorted(set(ACTION + "七玄门后山黄昏中景缓慢推近韩立墨大夫镜头")):
        assert font(40).getmask(ch).getbbox() is not None, ch
        assert glyph(ch) != notdef, f"{ch} draws as the missing-glyph box"


def test_the_action_is_drawn_in_the_text_colour(tmp_path: Path) -> None:
    with Image.open(render(keyframe_request(tmp_path / "text"))) as drawn, \
            Image.open(render(keyframe_request(tmp_path / "blank", action=""))) as blank:
        difference = ImageChops.difference(drawn.convert("RGB"), blank.convert("RGB"))
        box = difference.getbbox()
        assert box is not None
        width, height = drawn.size
        # the action sits in the middle band of the card, inside the margins
        assert box[0] >= width * 0.075 and box[2] <= width * (1 - 0.075)
        assert box[1] > height * 0.15 and box[3] < height * 0.85
        text_pixels = pixels_near(drawn.crop(box), TEXT_COLOUR, tolerance=10)
        assert text_pixels > 5000
        assert pixels_near(blank.crop(box), TEXT_COLOUR, tolerance=10) == 0


def test_character_thumbnails_appear_in_the_keyframe(tmp_path: Path) -> None:
    blue = solid_png(tmp_path / "blue.png", (40, 90, 200))
    green = solid_png(tmp_path / "green.png", (30, 180, 60))
    with Image.open(render(keyframe_request(tmp_path / "blue", {"hanli": blue}))) as with_blue, \
            Image.open(render(keyframe_request(tmp_path / "green", {"hanli": green}))) as with_green:
        assert with_blue.tobytes() != with_green.tobytes()
        # a 0.17 × 720 px square thumbnail, less its rounded corners and border
        assert pixels_near(with_blue, (40, 90, 200)) > 100 * 100
        assert pixels_near(with_blue, (30, 180, 60)) == 0
        assert pixels_near(with_green, (30, 180, 60)) > 100 * 100


def test_a_thumbnail_per_character(tmp_path: Path) -> None:
    colours = {"hanli": (40, 90, 200), "mo": (30, 180, 60)}
    inputs = {cid: solid_png(tmp_path / f"{cid}.png", colour) for cid, colour in colours.items()}
    with Image.open(render(keyframe_request(tmp_path / "out", inputs))) as card:
        for colour in colours.values():
            assert pixels_near(card, colour) > 100 * 100


def test_a_reference_image_is_pasted_into_the_character_card(tmp_path: Path) -> None:
    reference = solid_png(tmp_path / "ref.png", (200, 30, 30), size=(600, 800))
    with Image.open(render(character_request(tmp_path / "plain"))) as plain, \
            Image.open(render(character_request(tmp_path / "ref", reference=reference))) as sheet:
        assert plain.tobytes() != sheet.tobytes()
        width, height = sheet.size
        assert pixels_near(plain, (200, 30, 30)) == 0
        # the portrait: a square of min(0.45 h, 0.72 w) px with rounded corners
        side = min(0.45 * height, 0.72 * width)
        assert pixels_near(sheet, (200, 30, 30)) > 0.9 * side * side


def test_a_reference_keyed_by_its_drama_path_is_used_too(tmp_path: Path) -> None:
    reference = solid_png(tmp_path / "ref.png", (200, 30, 30), size=(600, 800))
    by_role = render(character_request(tmp_path / "role", reference=reference))
    request = character_request(tmp_path / "path")
    by_path = render(Request(node_id=request.node_id, kind=request.kind, params=request.params, inputs={},
                             out_dir=request.out_dir, sources={"refs/hanli.png": reference}))
    assert by_path.read_bytes() == by_role.read_bytes()


def test_the_scene_tints_the_background(tmp_path: Path) -> None:
    with Image.open(render(keyframe_request(tmp_path / "a", scene_id="s1"))) as one, \
            Image.open(render(keyframe_request(tmp_path / "b", scene_id="s2"))) as two:
        assert one.getpixel((2, 2)) != two.getpixel((2, 2))


def test_english_cards_render(tmp_path: Path) -> None:
    path = render(keyframe_request(tmp_path, language="en", setting="The herb garden at dusk",
                                   action="Han Li buries a withered herb.", camera="slow push in"))
    with Image.open(path) as image:
        assert image.size == (1280, 720)


def test_cjk_wraps_between_characters_and_never_starts_a_line_with_a_comma() -> None:
    face = font(30)
    lines = wrap(ACTION, face, 300)
    assert "".join(lines) == ACTION
    assert len(lines) > 3
    for line in lines:
        assert not line.startswith(("，", "。"))
    # a full line only goes past the width by hanging punctuation
    for line in lines:
        assert face.getlength(line.rstrip("，。")) <= 300


def test_latin_wraps_between_words() -> None:
    face = font(30)
    text = "Han Li buries the withered herb in the soil while Doctor Mo watches from the bamboo"
    lines = wrap(text, face, 320)
    assert " ".join(lines) == text
    assert len(lines) > 2
    for line in lines:
        assert face.getlength(line) <= 320


def test_a_word_wider_than_the_line_is_broken_between_letters() -> None:
    face = font(30)
    lines = wrap("x" * 80, face, 200)
    assert "".join(lines) == "x" * 80
    assert all(face.getlength(line) <= 200 for line in lines)


def test_other_node_kinds_are_refused(tmp_path: Path) -> None:
    request = Request(node_id="clip:s1", kind="clip", params={"size": [64, 64]}, inputs={}, out_dir=tmp_path)
    with pytest.raises(EngineError, match="characters and keyframes"):
        CardEngine().run(request)


def test_identity_names_the_font() -> None:
    identity = CardEngine().identity()
    assert identity["name"] == "card"
    assert "CJK" in identity["font"] or "Han" in identity["font"] or "Hei" in identity["font"]


@pytest.mark.parametrize("aspect", list(SIZES))
def test_sixty_characters_in_one_shot_draw_the_first_ones_and_a_count(tmp_path: Path, aspect: str) -> None:
    colours = [(40 + 3 * i, 90, 200 - 2 * i) for i in range(60)]
    inputs = {f"c{i:02d}": solid_png(tmp_path / f"c{i:02d}.png", colour) for i, colour in enumerate(colours)}
    size = SIZES[aspect]
    path = render(keyframe_request(tmp_path / "out", inputs, size=list(size)))
    with Image.open(path) as image:
        assert image.size == size
        strip = image.convert("RGB").crop((0, size[1] // 2, size[0], size[1]))
        # some portraits are drawn, at a readable size: the first character's colour covers at
        # least (8% of the shorter side)² pixels; the 60th is not drawn
        raw = strip.tobytes()
        pixels = list(zip(raw[0::3], raw[1::3], raw[2::3], strict=True))
        side = round(min(size) * 0.08)
        assert pixels.count(colours[0]) >= side * side * 0.8
        assert pixels.count(colours[59]) == 0
    # the same request gives the same bytes
    again = render(keyframe_request(tmp_path / "again", inputs, size=list(size)))
    assert again.read_bytes() == path.read_bytes()
