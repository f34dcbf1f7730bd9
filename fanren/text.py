"""Splitting text into sentences: one subtitle cue (and one synthesis call) per sentence."""

from __future__ import annotations

import re

# A sentence ends at 。！？；… (and runs of them) or at . ! ? ; followed by a space or the end,
# with any closing quotes or brackets kept on the sentence they close.
_END = re.compile(r"""(
    [。！？；!?;…]+[」』”’"')）]*      # CJK terminators (also ! ? ; written full- or half-width)
  | \.(?:\.\.)?[”’"')]*(?=\s|$)       # a full stop (or an ellipsis) before a space or the end
)""", re.VERBOSE)


_ABBREVIATIONS = ("Mr.", "Mrs.", "Ms.", "Dr.", "St.", "Prof.", "Mt.", "e.g.", "i.e.", "vs.")


def sentences(text: str) -> list[str]:
    """'他来了。你好！' → ['他来了。', '你好！']. Whitespace-only pieces are dropped."""
    out: list[str] = []
    start = 0
    for match in _END.finditer(text):
        if text[: match.end()].endswith(_ABBREVIATIONS):
            continue
        piece = text[start:match.end()].strip()
        if piece:
            out.append(piece)
        start = match.end()
    tail = text[start:].strip()
    if tail:
        out.append(tail)
    return out


# ── text from the user, on its way out ───────────────────────────────────────

# C0 controls but tab and newline, DEL, C1 controls; the bidi embeddings, overrides and isolates
# (U+202A–U+202E, U+2066–U+2069), which reorder the text around them in a terminal, a subtitle
# renderer or a browser; and U+2028/U+2029, line breaks that SRT and terminals do not know.
_CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def clean_text(text: str) -> str:
    """`text` without control characters or bidi overrides (see _CONTROLS); tab and newline stay.

    Every text of a drama passes through here once, when drama.toml is read, so nothing that
    leaves fanren (subtitles, the storyboard, prompts, cards, speech) carries a BEL, an ESC
    sequence or a right-to-left override.
    """
    return _CONTROLS.sub("", text)


def escape_controls(text: str) -> str:
    """`text` for a terminal or a log: the characters clean_text removes, written as \\xNN or
    \\uNNNN so that the reader sees where they were (error messages show what the user wrote)."""
    def visible(match: re.Match[str]) -> str:
        code = ord(match.group())
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"

    return _CONTROLS.sub(visible, text)
