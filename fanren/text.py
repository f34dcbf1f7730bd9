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
