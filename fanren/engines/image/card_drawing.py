"""Drawing the storyboard cards with Pillow (imported only when a card is drawn)."""

from __future__ import annotations

import colorsys
import functools
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, ImageOps

from ...errors import EngineError
from ...fonts import Font, cjk_font
from ..base import Request

RGB = tuple[int, int, int]

LABELS = {
    "zh": {"camera": "镜头", "character": "角色"},
    "en": {"camera": "Camera", "character": "Character"},
}

MIN_PORTRAIT = 0.08  # the smallest portrait on a keyframe card, as a share of the frame's shorter side
TEXT = (240, 238, 232)
MUTED = (182, 180, 172)

# Lines may not start with closing punctuation: it hangs on the line before instead.
NO_LINE_START = set("，。、；：！？）」』”’》〉】…,.;:!?)]}%")
# A Latin word (with its trailing spaces) is one unit; every other character is its own unit,
# which is how CJK text wraps.
_UNIT = re.compile(r"[A-Za-z0-9À-ɏ'’\-_/@#&+.]+[ \t]*|[ \t]+|.")


# --- the two cards -------------------------------------------------------------------------------


def keyframe_card(request: Request, size: tuple[int, int]) -> Image.Image:
    """Header (scene · shot, setting, camera), the action as large as fits, then portraits."""
    params = request.params
    width, height = size
    unit = min(width, height)
    # Title-safe margins: the video engine may zoom or pan up to ~8% into the frame.
    pad_x, pad_y = round(width * 0.075), round(height * 0.075)
    labels = LABELS.get(params.get("language", "zh"), LABELS["en"])
    scene = str(params["scene_id"])
    accent = tint(scene, saturation=0.55, lightness=0.62)

    card = gradient(size, tint(scene, 0.35, 0.22), tint(scene, 0.35, 0.10))
    draw = ImageDraw.Draw(card)
    inner = width - 2 * pad_x

    # Header: an accent bar beside "scene · shot", the setting and the camera note.
    text_x = pad_x + round(unit * 0.03)
    header_width = width - pad_x - text_x
    title_font = font(round(unit * 0.05), bold=True)
    note_font = font(round(unit * 0.032))
    notes = [str(params.get("setting", "")).strip()]
    camera = str(params.get("camera", "")).strip()
    if camera:
        notes.append(f"{labels['camera']} · {camera}")
    y = pad_y
    draw.text((text_x, y - round(unit * 0.008)), fit_line(f"{scene} · {params['shot_id']}", title_font, header_width),
              font=title_font, fill=TEXT)
    note_y = y + round(unit * 0.066)
    note_height = round(note_font.size * 1.4)
    for i, note in enumerate(notes):
        draw.text((text_x, note_y + i * note_height), fit_line(note, note_font, header_width),
                  font=note_font, fill=MUTED)
    header_bottom = note_y + len(notes) * note_height
    draw.rectangle((pad_x, y, pad_x + round(unit * 0.012), header_bottom - round(unit * 0.005)), fill=accent)
    top = header_bottom + round(unit * 0.03)

    # The bottom band is left to the subtitles that the episode burns in there.
    bottom = height - round(height * 0.17)

    # Portraits of the shot's characters, in the order the shot lists them.
    portraits = character_portraits(request)
    if portraits:
        name_font = font(round(unit * 0.028))
        gap = round(unit * 0.025)
        # As many portraits as fit at a readable size; past that, the first ones and "+N".
        room = max(1, (inner + gap) // (round(unit * MIN_PORTRAIT) + gap))
        more = len(portraits) - room + 1 if len(portraits) > room else 0
        shown = portraits[:room - 1] if more else portraits
        tiles = len(shown) + (1 if more else 0)
        thumb = min(round(unit * 0.17), (inner - gap * (tiles - 1)) // tiles)
        name_height = round(name_font.size * 1.5)
        row_top = bottom - thumb - name_height
        for i, (name, image) in enumerate(shown):
            x = pad_x + i * (thumb + gap)
            paste_rounded(card, thumbnail(image, thumb), (x, row_top), radius=round(thumb * 0.12),
                          border=accent, border_width=max(1, round(unit * 0.003)))
            label = fit_line(name, name_font, thumb + gap // 2)
            label_width = name_font.getlength(label)
            draw.text((x + (thumb - label_width) / 2, row_top + thumb + round(name_font.size * 0.25)),
                      label, font=name_font, fill=TEXT)
        if more:
            x = pad_x + len(shown) * (thumb + gap)
            draw.rounded_rectangle((x, row_top, x + thumb - 1, row_top + thumb - 1), radius=round(thumb * 0.12),
                                   fill=tint(scene, 0.30, 0.27), outline=accent,
                                   width=max(1, round(unit * 0.003)))
            more_font = font(max(8, round(thumb * 0.3)), bold=True)
            text = fit_line(f"+{more}", more_font, thumb * 0.9)
            draw.text((x + (thumb - more_font.getlength(text)) / 2, row_top + thumb / 2), text,
                      font=more_font, fill=TEXT, anchor="lm")
        bottom = row_top - round(unit * 0.035)

    # The action fills what is left, on a slightly lighter panel, as large as it fits.
    panel = (pad_x, top, width - pad_x, bottom)
    draw.rounded_rectangle(panel, radius=round(unit * 0.02),
                           fill=tint(scene, 0.30, 0.27))
    panel_pad = round(unit * 0.03)
    draw_fitted(draw, str(params.get("action", "")),
                (panel[0] + panel_pad, panel[1] + panel_pad, panel[2] - panel_pad, panel[3] - panel_pad),
                largest=round(unit * 0.062), smallest=round(unit * 0.026), fill=TEXT, middle=True)
    return card


def character_card(request: Request, size: tuple[int, int]) -> Image.Image:
    """A character sheet: portrait centred at the top, name, description. Symmetric about the
    vertical axis so that a keyframe's top-centre crop of it shows the portrait and the name."""
    params = request.params
    width, height = size
    unit = min(width, height)
    pad = round(unit * 0.055)
    character_id = str(params["character_id"])
    labels = LABELS.get(params.get("language", "zh"), LABELS["en"])
    accent = tint(character_id, saturation=0.55, lightness=0.62)

    card = gradient(size, tint(character_id, 0.30, 0.24), tint(character_id, 0.30, 0.10))
    draw = ImageDraw.Draw(card)

    tag_font = font(round(unit * 0.026))
    draw.text((pad, pad - round(unit * 0.01)), f"{labels['character']} · {character_id}",
              font=tag_font, fill=MUTED)

    side = min(round(height * 0.45), round(width * 0.72))
    portrait_top = pad + round(unit * 0.04)
    portrait_left = (width - side) // 2
    reference = character_reference(request)
    if reference is not None:
        portrait = reference_portrait(reference, side)
    else:
        portrait = silhouette(side, tint(character_id, 0.25, 0.34), accent)
    paste_rounded(card, portrait, (portrait_left, portrait_top), radius=round(side * 0.08),
                  border=accent, border_width=max(2, round(unit * 0.005)))

    name_font = font(round(unit * 0.07), bold=True)
    name = str(params.get("name") or character_id)
    name_line = fit_line(name, name_font, width - 2 * pad)
    name_y = portrait_top + side + round(unit * 0.03)
    draw.text(((width - name_font.getlength(name_line)) / 2, name_y), name_line, font=name_font, fill=TEXT)

    rule_y = name_y + int(name_font.getbbox(name_line)[3]) + round(unit * 0.02)
    rule_half = round(unit * 0.06)
    draw.rectangle((width // 2 - rule_half, rule_y, width // 2 + rule_half, rule_y + max(2, round(unit * 0.004))),
                   fill=accent)

    column = min(width - 2 * pad, round(unit * 1.1))
    left = (width - column) // 2
    draw_fitted(draw, str(params.get("description", "")),
                (left, rule_y + round(unit * 0.03), left + column, height - pad),
                largest=round(unit * 0.046), smallest=round(unit * 0.022), fill=MUTED, centred=True)
    return card


# --- pictures ------------------------------------------------------------------------------------


def character_portraits(request: Request) -> list[tuple[str, Image.Image]]:
    """(name, picture) for each character input, named from the shot's character list."""
    names = {str(c.get("id")): str(c.get("name") or c.get("id")) for c in request.params.get("characters", [])}
    portraits: list[tuple[str, Image.Image]] = []
    for node_id, files in request.inputs_of_kind("character"):
        character_id = node_id.split(":", 1)[1]
        portraits.append((names.get(character_id, character_id), open_image(files["image.png"])))
    return portraits


def character_reference(request: Request) -> Path | None:
    """The user's reference image: the source named "reference", or else a character node's only
    source (the runner may key sources by their drama-relative path)."""
    if "reference" in request.sources:
        return Path(request.sources["reference"])
    if len(request.sources) == 1:
        return Path(next(iter(request.sources.values())))
    return None


def open_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            return ImageOps.exif_transpose(image).convert("RGB")
    except (OSError, ValueError) as error:
        raise EngineError(f"cannot read the image {path}: {error}") from error


def thumbnail(image: Image.Image, side: int) -> Image.Image:
    # Top-centre: a character card has its portrait there, and a generated portrait its face.
    return ImageOps.fit(image, (side, side), method=Image.Resampling.LANCZOS, centering=(0.5, 0.0))


def reference_portrait(path: Path, side: int) -> Image.Image:
    return ImageOps.fit(open_image(path), (side, side), method=Image.Resampling.LANCZOS, centering=(0.5, 0.35))


def silhouette(side: int, background: RGB, figure: RGB) -> Image.Image:
    """A head-and-shoulders placeholder for a character without a reference image."""
    picture = Image.new("RGB", (side, side), background)
    draw = ImageDraw.Draw(picture)
    head = side * 0.19
    cx, cy = side / 2, side * 0.40
    draw.ellipse((cx - head, cy - head * 1.15, cx + head, cy + head * 1.15), fill=figure)
    draw.ellipse((side * 0.14, side * 0.66, side * 0.86, side * 1.30), fill=figure)
    return picture


def paste_rounded(card: Image.Image, picture: Image.Image, at: tuple[int, int], radius: int,
                  border: RGB, border_width: int) -> None:
    w, h = picture.size
    mask = Image.new("L", picture.size, 0)
    ImageDraw.Draw(mask).rounded_rectangle((0, 0, w - 1, h - 1), radius=radius, fill=255)
    card.paste(picture, at, mask)
    x, y = at
    ImageDraw.Draw(card).rounded_rectangle((x, y, x + w - 1, y + h - 1), radius=radius,
                                           outline=border, width=border_width)


def tint(seed_text: str, saturation: float, lightness: float) -> RGB:
    """A colour whose hue comes from the text: the same scene always gets the same colour."""
    hue = int.from_bytes(hashlib.sha256(seed_text.encode("utf-8")).digest()[:4], "big") / 2**32
    r, g, b = colorsys.hls_to_rgb(hue, lightness, saturation)
    return round(r * 255), round(g * 255), round(b * 255)


def gradient(size: tuple[int, int], top: RGB, bottom: RGB) -> Image.Image:
    """A vertical gradient from `top` to `bottom`."""
    height = size[1]
    column = Image.new("RGB", (1, height))
    for y in range(height):
        t = y / max(1, height - 1)
        column.putpixel((0, y), tuple(round(a + (b - a) * t) for a, b in zip(top, bottom, strict=True)))
    return column.resize(size, Image.Resampling.NEAREST)


# --- text ----------------------------------------------------------------------------------------


@functools.cache
def font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    """The CJK font at `size` pixels; the bold face when the family ships one beside the regular."""
    face = cjk_font()
    file = face.file
    if bold:
        bold_file = file.with_name(file.name.replace("Regular", "Bold"))
        if bold_file != file and bold_file.is_file():
            file = bold_file
    return truetype(face, file, max(1, size))


def truetype(face: Font, file: Path, size: int) -> ImageFont.FreeTypeFont:
    try:
        return ImageFont.truetype(str(file), size, index=face.index)
    except OSError as error:
        raise EngineError(f"cannot open the font {file} (face {face.index}): {error}") from error


def wrap(text: str, face: ImageFont.FreeTypeFont, max_width: float) -> list[str]:
    """Break text into lines no wider than max_width: CJK between any two characters, Latin
    between words (a word wider than the line is broken between letters)."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for unit in _UNIT.findall(paragraph.strip()):
            candidate = line + unit
            if face.getlength(candidate.rstrip()) <= max_width:
                line = candidate
            elif line.strip() and unit[0] in NO_LINE_START:
                line = candidate  # hanging punctuation: a little past the edge beats a line of "，"
            else:
                if line.strip():
                    lines.append(line.rstrip())
                line = unit.lstrip()
                while face.getlength(line.rstrip()) > max_width and len(line.rstrip()) > 1:
                    # a word wider than the whole line
                    cut = longest_prefix(line, face, max_width)
                    lines.append(line[:cut])
                    line = line[cut:]
        lines.append(line.rstrip())
    return lines


def longest_prefix(text: str, face: ImageFont.FreeTypeFont, max_width: float) -> int:
    """Length of the longest prefix of text that fits in max_width (at least 1)."""
    n = 1
    while n < len(text) and face.getlength(text[: n + 1]) <= max_width:
        n += 1
    return n


def fit_line(text: str, face: ImageFont.FreeTypeFont, max_width: float) -> str:
    """One line: the text itself if it fits, else as much as fits followed by an ellipsis."""
    text = " ".join(text.split())
    if face.getlength(text) <= max_width:
        return text
    while text and face.getlength(text + "…") > max_width:
        text = text[:-1]
    return text.rstrip() + "…"


@dataclass(frozen=True)
class Block:
    face: ImageFont.FreeTypeFont
    lines: list[str]
    line_height: int


def fitted_block(text: str, box_width: int, box_height: int, largest: int, smallest: int) -> Block:
    """The largest font size (stepping down ~6%) at which the wrapped text fits the box; at the
    smallest size, the lines that do not fit are cut and the last one ends with an ellipsis."""
    size = largest
    while True:
        face = font(size)
        line_height = round(size * 1.45)
        lines = wrap(text, face, box_width)
        if len(lines) * line_height <= box_height or size <= smallest:
            break
        size = max(smallest, int(size * 0.94))
    keep = max(1, box_height // line_height)
    if len(lines) > keep:
        lines = lines[:keep]
        lines[-1] = fit_line(lines[-1] + "…", face, box_width)
    return Block(face, lines, line_height)


def draw_fitted(draw: ImageDraw.ImageDraw, text: str, box: tuple[int, int, int, int], largest: int,
                smallest: int, fill: RGB, centred: bool = False, middle: bool = False) -> None:
    """Text wrapped into the box at the largest size that fits; `centred` horizontally per line,
    `middle` vertically."""
    left, top, right, bottom = box
    if right <= left or bottom <= top:
        return
    block = fitted_block(text, right - left, bottom - top, largest, smallest)
    if middle:
        top += (bottom - top - len(block.lines) * block.line_height) // 2
    for i, line in enumerate(block.lines):
        x = left + (right - left - block.face.getlength(line)) / 2 if centred else left
        draw.text((x, top + i * block.line_height), line, font=block.face, fill=fill)

