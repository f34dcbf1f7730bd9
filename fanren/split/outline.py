"""The shape of a chapter's text: scenes → paragraphs → segments (narrative or quoted speech).

Both split engines start from this outline; it is pure text layout and knows nothing of characters.

- A chapter heading (`第一章 …`, `Chapter 3`, `楔子`) starts a scene and is its first paragraph.
- A line of symbols (`***`, `◇◇◇`) starts a scene.
- Blank lines start a scene, except in text that puts a blank line between all its paragraphs
  (most .txt novels do): there it takes two blank lines in a row.
- A paragraph is a line, or in hard-wrapped text (lines cut at a fixed width, as e-book .txt files
  are) the lines of a block joined.
- Quoted text (“…” 「…」 『…』 "…") is speech when it reads like speech: it follows a colon or comma,
  opens the paragraph, or ends in punctuation. A quoted name or term (他们叫它“鬼井”) stays narrative.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from .coverage import is_break_line, normalize

_NUMBER_ZH = "0-9０-９零〇一二三四五六七八九十百千万两"
_HEADING_ZH = re.compile(rf"^(第[{_NUMBER_ZH}]+[章回节卷集部篇]|序章|序言|楔子|引子|尾声|后记|番外)(?P<rest>.*)$")
_HEADING_EN = re.compile(
    r"^(?i:(chapter|part|book)\s+([0-9]+|[ivxlcdm]+|one|two|three|four|five|six|seven|eight|nine|ten"
    r"|eleven|twelve|\w+teen|twenty|thirty|forty|fifty)\b|prologue\b|epilogue\b)")
_HEADING_MAX = 60

_QUOTE_PAIRS = {"“": "”", "「": "」", "『": "』", '"': '"', "＂": "＂"}
# Punctuation right after a closing quote belongs to the speech it closes: “好”。
_AFTER_CLOSE = "。！？!?…，,、；;."
_SPEECH_END = "。！？!?…，,.~～—-、；;"
_SPEECH_LEAD = "：:，,"

# The wrap-width test: most lines within a few characters of one width of at most 100.
_WRAP_MIN_WIDTH = 20
_WRAP_MAX_WIDTH = 100
PARAGRAPH_END = "。！？!?…」』”\"’'.）)"
_WRAP_SLACK = 15
_WRAP_SHARE = 0.4


@dataclass(frozen=True)
class Segment:
    """A run of a paragraph: narrative text, or speech (its text without the quote marks)."""

    text: str
    speech: bool


@dataclass(frozen=True)
class Paragraph:
    text: str
    segments: tuple[Segment, ...]
    heading: bool = False


@dataclass(frozen=True)
class SceneText:
    paragraphs: tuple[Paragraph, ...]

    @property
    def heading(self) -> str | None:
        return self.paragraphs[0].text if self.paragraphs and self.paragraphs[0].heading else None


def is_heading(line: str) -> bool:
    """`第一章 山边小村`, `第一章山边小村`, `楔子`, `Chapter 3: The Well`; not `第三节课下课后，…`."""
    stripped = line.strip()
    if not 0 < len(stripped) <= _HEADING_MAX:
        return False
    if _HEADING_EN.match(stripped):
        return True
    match = _HEADING_ZH.match(stripped)
    if match is None:
        return False
    rest = match["rest"]
    no_punctuation = not any(unicodedata.category(c).startswith("P") for c in stripped)
    return not rest or not rest[0].isalnum() or (no_punctuation and len(stripped) <= 20)


def outline(text: str, language: str) -> list[SceneText]:
    """The scenes of a chapter, in order. Every character of text but whitespace and break lines
    ends up in exactly one segment."""
    lines = text.split("\n")
    wrapped = _is_hard_wrapped(lines)
    blocks = _blocks(lines)
    paragraphs_per_block = [len(_paragraphs(b.lines, wrapped, language)) for b in blocks if b.lines]
    single = sum(1 for n in paragraphs_per_block if n == 1)
    spaced = len(paragraphs_per_block) >= 3 and single >= 0.8 * len(paragraphs_per_block)
    scene_gap = 2 if spaced else 1

    scenes: list[list[Paragraph]] = [[]]
    for block in blocks:
        if block.heading is not None:
            scenes.append([_paragraph(block.heading, heading=True)])
            continue
        breaks = block.scene_break or block.blank_before >= scene_gap
        if breaks and any(not p.heading for p in scenes[-1]):
            scenes.append([])
        for text_of_paragraph in _paragraphs(block.lines, wrapped, language):
            scenes[-1].append(_paragraph(text_of_paragraph))
    return [SceneText(tuple(s)) for s in scenes if s]


@dataclass
class _Block:
    """Consecutive non-blank lines; or a heading line; or a break line."""

    lines: list[str]
    blank_before: int = 0
    heading: str | None = None
    scene_break: bool = False


def _blocks(lines: list[str]) -> list[_Block]:
    blocks: list[_Block] = []
    blank = 0
    current: _Block | None = None
    pending_break = False
    for line in lines:
        if not line.strip():
            blank += 1
            current = None
            continue
        if is_break_line(line):
            pending_break = True
            current = None
            blank = 0
            continue
        if is_heading(line):
            blocks.append(_Block([], blank, heading=line.strip()))
            current = None
            blank = 0
            pending_break = False
            continue
        if current is None:
            current = _Block([], blank, scene_break=pending_break)
            blocks.append(current)
            blank = 0
            pending_break = False
        current.lines.append(line)
    return blocks


def _is_hard_wrapped(lines: list[str]) -> bool:
    lengths = sorted(len(line.rstrip()) for line in lines if line.strip())
    if len(lengths) < 4:
        return False
    width = lengths[int(0.9 * (len(lengths) - 1))]
    if not _WRAP_MIN_WIDTH <= width <= _WRAP_MAX_WIDTH:
        return False
    near = sum(1 for n in lengths if width - _WRAP_SLACK <= n <= width)
    # a wrapped line mostly stops mid-sentence; a line that is a paragraph ends one
    ended = sum(1 for line in lines if line.strip() and line.rstrip()[-1] in PARAGRAPH_END)
    return near >= _WRAP_SHARE * len(lengths) and ended <= len(lengths) / 2


def _paragraphs(lines: list[str], wrapped: bool, language: str) -> list[str]:
    if not wrapped:
        return [line.strip() for line in lines if line.strip()]
    glue = "" if language == "zh" else " "
    out: list[str] = []
    for line in lines:
        indented = line[:1].isspace()
        if out and not indented:
            out[-1] = out[-1] + glue + line.strip()
        else:
            out.append(line.strip())
    return out


def _paragraph(text: str, heading: bool = False) -> Paragraph:
    segments = (Segment(text, False),) if heading else tuple(segments_of(text))
    return Paragraph(text, segments, heading)


def segments_of(paragraph: str) -> list[Segment]:
    """'林远笑道：“娘，我知道了。”' → [narrative '林远笑道：', speech '娘，我知道了。']."""
    found: list[Segment] = []
    carry = ""  # punctuation with no segment before it yet: it opens the next one
    narrative = ""
    i = 0
    while i < len(paragraph):
        char = paragraph[i]
        if char not in _QUOTE_PAIRS:
            narrative += char
            i += 1
            continue
        close = _find_close(paragraph, i, char, _QUOTE_PAIRS[char])
        end = len(paragraph) if close < 0 else close + 1
        inner = paragraph[i + 1: close if close >= 0 else len(paragraph)]
        if not _reads_as_speech(inner, narrative):
            narrative += paragraph[i:end]
            i = end
            continue
        while end < len(paragraph) and paragraph[end] in _AFTER_CLOSE:
            inner += paragraph[end]
            end += 1
        carry = _add(found, carry + narrative, speech=False)
        carry = _add(found, carry + inner, speech=True)
        narrative = ""
        i = end
    carry = _add(found, carry + narrative, speech=False)
    if carry:
        found.append(Segment(carry, False))
    return found


def _find_close(text: str, start: int, opening: str, closing: str) -> int:
    if opening == closing:
        return text.find(closing, start + 1)
    depth = 0
    for k in range(start, len(text)):
        if text[k] == opening:
            depth += 1
        elif text[k] == closing:
            depth -= 1
            if depth == 0:
                return k
    return -1


def _reads_as_speech(inner: str, before: str) -> bool:
    content = inner.strip()
    if not content:
        return False
    lead = before.rstrip()
    return not lead or lead[-1] in _SPEECH_LEAD or content[-1] in _SPEECH_END


def _add(found: list[Segment], text: str, speech: bool) -> str:
    """Append a segment. A run of only punctuation (a dash, a silent “……”) joins the segment before;
    with none before, it is returned to open the next one."""
    text = text.strip()
    if not text:
        return ""
    if not _has_words(text):
        if not found:
            return text
        found[-1] = Segment(found[-1].text + text, found[-1].speech)
        return ""
    found.append(Segment(text, speech))
    return ""


def _has_words(text: str) -> bool:
    return any(c.isalnum() for c in normalize(text))
