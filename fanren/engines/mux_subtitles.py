"""Subtitle cues of a shot and of the episode, and their SRT and ASS files: timing, wrapping,
styling, escaping.

Pure text: no ffmpeg here. Times are kept in whole centiseconds (ASS's resolution) so that the
SRT and the ASS of one episode say exactly the same thing.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MIN_CUE = 70          # centiseconds: a cue shorter than 0.7 s cannot be read
ROW = 42.0            # width of one subtitle row, in Latin characters
WIDE = ROW / 16       # a CJK character: 16 of them fill a row
BREAK_AFTER = set("，、。！？；：…—,.;:!?-/")
NO_ROW_START = set("，、。！？；：…—,.;:!?」』”’)）》〉】")  # never begin a row with these
NO_ROW_END = set("「『“‘(（《〈【")                      # never end a row with these


@dataclass(frozen=True)
class Cue:
    start: int          # centiseconds from the start of the episode (or of the shot)
    end: int
    rows: tuple[str, ...]  # the sentence wrapped to one or two rows
    who: str


# ── timing ───────────────────────────────────────────────────────────────────


def shot_cues(timing: Mapping[str, Any]) -> list[Cue]:
    """One cue per sentence of one shot, in centiseconds from the shot's start, each ≥ 0.7 s if it can.

    A sentence followed by the same speaker's next one less than 0.7 s after it starts shares that
    one's cue (both texts, from the first's start): a subtitle gone before it is read helps nobody,
    and one cue with two short sentences is what a subtitler would write. A short cue is extended
    up to 0.7 s but never past the start of the next cue or the end of the shot: two overlapping
    cues would stack two rows of different lines on screen, and a cue that outlived its shot could
    not be burned into that shot's picture (nor should text hang over a cut). The mux engine spaces
    lines and ends shots so that neither limit cuts a cue short; a timing from elsewhere may.
    """
    spoken: list[tuple[int, int, str, str]] = []
    for cue in timing["cues"]:
        text = " ".join(str(cue["text"]).split())
        if not text:
            continue
        start, end = round(float(cue["start"]) * 100), round(float(cue["end"]) * 100)
        who = str(cue.get("who", ""))
        if spoken and spoken[-1][3] == who and start - spoken[-1][0] < MIN_CUE:
            first_start, _, first_text, _ = spoken.pop()
            start, text = first_start, join_sentences(first_text, text)
        spoken.append((start, end, text, who))
    shot_end = round(float(timing["duration"]) * 100)

    cues: list[Cue] = []
    for i, (start, end, text, who) in enumerate(spoken):
        limit = spoken[i + 1][0] if i + 1 < len(spoken) else shot_end
        pieces = split_long(text)
        end = min(max(end, start + MIN_CUE * len(pieces)), max(limit, start + 1))
        # a sentence too long for two rows is several cues, in order, each shown for its share
        # of the sentence's speech (by width): what is read keeps pace with what is said
        widths = [width(piece) for piece in pieces]
        total, done = sum(widths), 0.0
        for piece, piece_width in zip(pieces, widths, strict=True):
            piece_start = start + round((end - start) * done / total)
            done += piece_width
            piece_end = start + round((end - start) * done / total)
            cues.append(Cue(start=piece_start, end=max(piece_end, piece_start + 1), rows=tuple(wrap(piece)),
                            who=who))
    return cues


def join_sentences(first: str, second: str) -> str:
    """Two sentences as one text: a space between them unless both sides are CJK."""
    return first + second if is_wide(first[-1]) and is_wide(second[0]) else f"{first} {second}"


def episode_cues(timings: list[Mapping[str, Any]]) -> list[Cue]:
    """Every shot's cues (see shot_cues), shifted by the durations of the shots before it.

    These are exactly the cues burned into the shots, so the SRT and ASS beside the episode say
    what its picture shows (to within the centisecond the shot's start is rounded to).
    """
    cues: list[Cue] = []
    offset = 0.0
    for timing in timings:
        shot_start = round(offset * 100)
        offset += float(timing["duration"])
        shot_end = round(offset * 100)
        cues += [Cue(start=shot_start + cue.start,
                     end=max(min(shot_start + cue.end, shot_end), shot_start + cue.start + 1),
                     rows=cue.rows, who=cue.who)
                 for cue in shot_cues(timing)]
    return cues


# ── wrapping ─────────────────────────────────────────────────────────────────


def width(text: str) -> float:
    """Width in Latin characters: a CJK (wide) character counts as ROW/16."""
    return sum(WIDE if is_wide(c) else 1.0 for c in text)


def row_width(row: str) -> float:
    """Width of a row with its closing punctuation hanging past the end, as CJK typesetting allows."""
    return width(row.rstrip("".join(NO_ROW_START)))


def is_wide(char: str) -> bool:
    return unicodedata.east_asian_width(char) in ("W", "F")


def wrap(text: str) -> list[str]:
    """One row if it fits, else two rows, broken where a reader expects it.

    Prefer a break where both rows fit, then after punctuation or at a space, then between two
    CJK characters, then anywhere; among equals, the most even split. A sentence too long for
    two rows still gets two (the ASS shrinks its font), never three.
    """
    if row_width(text) <= ROW or len(text) < 2:
        return [text]
    best: tuple[tuple[float, int, float], list[str]] | None = None
    for i in range(1, len(text)):
        rows, kind = _break_at(text, i)
        if not rows[0] or not rows[1]:
            continue
        w1, w2 = row_width(rows[0]), row_width(rows[1])
        score = (max(0.0, max(w1, w2) - ROW), kind, abs(w1 - w2))
        if best is None or score < best[0]:
            best = (score, rows)
    return best[1] if best else [text]


def fits(text: str) -> bool:
    """Whether `text` wraps to at most two rows that each fit a row."""
    return all(row_width(row) <= ROW for row in wrap(text))


def split_long(text: str) -> list[str]:
    """A sentence too long for one cue (two rows) as several pieces that each fit one, no text lost.

    The pieces are about equally long; each ends where a reader expects a pause if one is near
    the end (after punctuation, at a space), else between two CJK characters, else anywhere.
    """
    if fits(text):
        return [text]
    count = math.ceil(width(text) / (2 * ROW * 0.9))
    budget = min(2 * ROW, width(text) / count * 1.1)  # widths of even pieces, with some slack
    pieces: list[str] = []
    rest = text
    while not fits(rest):
        limit, used = 0, 0.0
        while limit < len(rest) and used + width(rest[limit]) <= budget:
            used += width(rest[limit])
            limit += 1
        cut = _best_cut(rest, max(limit, 1))
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    if rest:
        pieces.append(rest)
    return pieces


def _best_cut(text: str, limit: int) -> int:
    """Where to end the first piece of `text`, at most `limit` characters in: the last good break
    in the second half of that stretch whose piece fits two rows, else the last break that fits."""
    for best_kind in (0, 1, 2):
        for i in range(limit, max(limit // 2, 1) - 1, -1):
            if i >= len(text):
                continue
            _, kind = _break_at(text, i)
            if kind <= best_kind and fits(text[:i].rstrip()):
                return i
    for i in range(limit, 0, -1):
        if fits(text[:i]):
            return i
    return 1


def _break_at(text: str, i: int) -> tuple[list[str], int]:
    """The two rows made by breaking before text[i], and how good a break it is (0 best)."""
    before, after = text[i - 1], text[i]
    if after == " ":
        return [text[:i].rstrip(), text[i:].lstrip()], 0
    if before == " ":
        return [text[:i].rstrip(), text[i:]], 0
    if after in NO_ROW_START or before in NO_ROW_END:
        return [text[:i], text[i:]], 3
    if before in BREAK_AFTER:
        return [text[:i], text[i:]], 0
    if is_wide(before) or is_wide(after):
        return [text[:i], text[i:]], 1
    return [text[:i], text[i:]], 2  # inside a Latin word


# ── SRT ──────────────────────────────────────────────────────────────────────


def srt_time(cs: int) -> str:
    return f"{cs // 360000:02d}:{cs // 6000 % 60:02d}:{cs // 100 % 60:02d},{cs % 100 * 10:03d}"


def write_srt(cues: list[Cue], out: Path) -> None:
    """The cues as SRT; a drama in which nobody speaks gets an SRT of one empty line: no cues, and
    not an empty file (which the cache takes for an engine that wrote nothing)."""
    blocks = [f"{n}\n{srt_time(cue.start)} --> {srt_time(cue.end)}\n" + "\n".join(cue.rows) + "\n"
              for n, cue in enumerate(cues, start=1)]
    out.write_text("\n".join(blocks) or "\n", encoding="utf-8")


# ── ASS ──────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class AssStyle:
    """Sizes in script pixels (PlayRes = the frame), chosen from the frame's shorter side so the
    same drama reads the same on 16:9 and 9:16."""

    font: str
    size: int
    outline: float
    margin_side: int
    margin_bottom: int
    row_width: int      # pixels a row must fit in


def ass_style(frame: tuple[int, int], font: str, language: str) -> AssStyle:
    """The subtitle style for a frame.

    A full row is 16 CJK characters (16 em) in Chinese and about 42 Latin characters (≈ 21 em
    in Noto Sans) in English; the font is as large as lets a full row fit the shorter side.
    """
    w, h = frame
    short = min(w, h)
    margin_side = round(short * 0.04)
    size = int((short - 2 * margin_side) / (16 if language == "zh" else 21))
    # vertical-video apps lay their captions and buttons over the bottom sixth of a 9:16 frame
    bottom = round(h * (0.06 if w > h else 0.16 if h > w else 0.08))
    return AssStyle(font=font, size=size, outline=round(size * 0.075, 1), margin_side=margin_side,
                    margin_bottom=bottom, row_width=w - 2 * margin_side)


def ass_time(cs: int) -> str:
    return f"{cs // 360000:d}:{cs // 6000 % 60:02d}:{cs // 100 % 60:02d}.{cs % 100:02d}"


def ass_escape(text: str) -> str:
    """Text shown literally: braces open override blocks and \\N, \\n, \\h are line breaks/spaces."""
    return (text.replace("\\", "\\\u2060")  # a word joiner after "\" stops "\N" from breaking the row
            .replace("{", "\\{").replace("}", "\\}"))


def rendered_em(text: str) -> float:
    """Estimated rendered width in em: CJK 1, a space 0.25, other characters 0.55 (generous)."""
    return sum(1.0 if is_wide(c) else 0.25 if c == " " else 0.55 for c in text)


def write_ass(cues: list[Cue], out: Path, frame: tuple[int, int], font: str, language: str) -> None:
    style = ass_style(frame, font, language)
    w, h = frame
    head = [
        "[Script Info]",
        "ScriptType: v4.00+",
        f"PlayResX: {w}",
        f"PlayResY: {h}",
        "WrapStyle: 2",  # rows are broken by us; libass must not add a third
        "ScaledBorderAndShadow: yes",
        "YCbCr Matrix: TV.709",
        "",
        "[V4+ Styles]",
        ("Format: Name, Fontname, Fontsize, PrimaryColour, SecondaryColour, OutlineColour, BackColour, "
        "Bold, Italic, Underline, StrikeOut, ScaleX, ScaleY, Spacing, Angle, BorderStyle, Outline, "
        "Shadow, Alignment, MarginL, MarginR, MarginV, Encoding"),
        (f"Style: Default,{style.font.replace(',', ' ')},{style.size},&H00FFFFFF,&H000000FF,&H00000000,"
        f"&H80000000,0,0,0,0,100,100,0,0,1,{style.outline:g},0,2,{style.margin_side},"
        f"{style.margin_side},{style.margin_bottom},1"),
        "",
        "[Events]",
        "Format: Layer, Start, End, Style, Name, MarginL, MarginR, MarginV, Effect, Text",
    ]
    events = []
    for cue in cues:
        text = "\\N".join(ass_escape(row) for row in cue.rows)
        widest = max(rendered_em(row) for row in cue.rows) * style.size
        if widest > style.row_width:  # too long for the frame: shrink this cue, never wrap again
            text = f"{{\\fs{int(style.size * style.row_width / widest)}}}" + text
        who = cue.who.replace(",", " ")
        events.append(f"Dialogue: 0,{ass_time(cue.start)},{ass_time(cue.end)},Default,{who},0,0,0,,{text}")
    out.write_text("\n".join([*head, *events]) + "\n", encoding="utf-8")
