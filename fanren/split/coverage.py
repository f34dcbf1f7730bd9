"""The no-text-lost guarantee: what the shots speak, in order, is the chapter's text.

Narration and line texts of all shots, concatenated in episode order, must equal the source text
once whitespace and quotation marks are ignored (a line's text is spoken without its quotes; the
voice engines and subtitles never need them). Scene-break lines made only of symbols (`***`,
`◇◇◇`) are layout, not text, and are ignored too: they become scene breaks.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from ..errors import EngineError

QUOTES = frozenset("\"'“”‘’「」『』„‟‚‛«»‹›〝〞〟﹁﹂﹃﹄＂＇")

# A line of three or more of these (and spaces) is a scene break, not text.
_BREAK_SYMBOLS = "*＊#＃=＝~～_＿-－—–·•●○◆◇■□★☆※"
BREAK_LINE = re.compile(rf"^[\s{re.escape(_BREAK_SYMBOLS)}]*$")


def is_break_line(line: str) -> bool:
    stripped = "".join(line.split())
    return len(stripped) >= 3 and BREAK_LINE.match(line) is not None


# `\s` matches what str.isspace() does; a regex, not a join of characters, so a whole book is
# normalized without a string object per character
_NOT_COMPARED = re.compile(rf"[\s{re.escape(''.join(sorted(QUOTES)))}]+")


def normalize(text: str) -> str:
    """The text as the guarantee compares it: no whitespace, no quotation marks."""
    return _NOT_COMPARED.sub("", text)


def spoken_length(text: str) -> int:
    """How many characters of `text` count towards a shot's length: letters, digits and Hanzi.

    Punctuation is free, so a cut never leaves a lone '。' for a shot of its own.
    """
    return sum(1 for c in text if c.isalnum())


def source_text(chapter: str) -> str:
    """The chapter without its scene-break lines, normalized."""
    return normalize("\n".join(line for line in chapter.split("\n") if not is_break_line(line)))


@dataclass(frozen=True)
class Difference:
    """One place where the shots' text departs from the chapter's (both normalized)."""

    kind: str          # "missing" | "added" | "changed"
    source: str        # the chapter's text there ("" when added)
    spoken: str        # the shots' text there ("" when missing)
    offset: int        # character offset into the normalized chapter

    def show(self) -> str:
        if self.kind == "missing":
            return f"missing at character {self.offset}: {_clip(self.source)!r}"
        if self.kind == "added":
            return f"added at character {self.offset}: {_clip(self.spoken)!r} is not in the chapter"
        return f"changed at character {self.offset}: the chapter has {_clip(self.source)!r}, " \
               f"the shots have {_clip(self.spoken)!r}"


class TextLost(EngineError):
    """The shots do not speak exactly the chapter's text."""

    def __init__(self, differences: list[Difference], what: str = "the split", source: str = "the chapter") -> None:
        self.differences = differences
        shown = "\n".join("  " + d.show() for d in differences[:5])
        more = f"\n  … and {len(differences) - 5} more" if len(differences) > 5 else ""
        super().__init__(f"{what} does not keep {source}'s text (whitespace and quotation marks "
                         f"aside):\n{shown}{more}")

    def show(self) -> str:
        return f"error: {self}"


def differences(source: str, spoken: str, window: int = 4000) -> list[Difference]:
    """Where normalized `spoken` departs from normalized `source`; [] when they are equal.

    Only the part between the longest common prefix and suffix is diffed (at most `window`
    characters of each), so a whole novel compares in linear time.
    """
    if source == spoken:
        return []
    start = 0
    limit = min(len(source), len(spoken))
    while start < limit and source[start] == spoken[start]:
        start += 1
    end = 0
    while end < limit - start and source[-1 - end] == spoken[-1 - end]:
        end += 1
    a = source[start:len(source) - end][:window]
    b = spoken[start:len(spoken) - end][:window]
    found: list[Difference] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        kind = {"delete": "missing", "insert": "added", "replace": "changed"}[tag]
        found.append(Difference(kind, a[i1:i2], b[j1:j2], start + i1))
    return found


def check_no_text_lost(chapter: str, spoken: Iterable[str], what: str = "the split",
                       source: str = "the chapter") -> None:
    """Raise TextLost unless the `spoken` texts, in order, are exactly the chapter's text."""
    found = differences(source_text(chapter), normalize("".join(spoken)))
    if found:
        raise TextLost(found, what, source)


def _clip(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
