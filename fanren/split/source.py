"""Reading a chapter: bytes → text (UTF-8, else GB18030), and which language it is written in."""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import UsageError
from ..text import clean_text

_BOMS = (
    (b"\xef\xbb\xbf", "utf-8"),
    (b"\xff\xfe", "utf-16-le"),
    (b"\xfe\xff", "utf-16-be"),
)

# GB18030 is a superset of GBK and GB2312, the encodings Chinese novel sites and old e-book
# collections ship .txt files in; a file that is not valid UTF-8 is almost always one of them.
_FALLBACK = "gb18030"

_HANZI = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_LATIN = re.compile(r"[A-Za-z]")


def decode_chapter(raw: bytes, name: str = "the chapter") -> str:
    """The text of a chapter file: UTF-8 (with or without BOM), UTF-16 with BOM, else GB18030.

    Line ends become '\\n'; control characters and bidi overrides are dropped. Raises UsageError
    when no encoding fits or the text is empty.
    """
    text = None
    for bom, encoding in _BOMS:
        if raw.startswith(bom):
            text = _decode(raw[len(bom):], encoding, name)
            break
    if text is None:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text = _decode(raw, _FALLBACK, name)
    # control characters and bidi overrides go here, as they do from every text of a drama.toml
    text = clean_text(text.replace("\r\n", "\n").replace("\r", "\n"))
    if not text.strip():
        raise UsageError(f"{name} is empty: there is no text to split")
    return text


def _decode(raw: bytes, encoding: str, name: str) -> str:
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{name} is neither UTF-8 nor GB18030/GBK text (undecodable bytes at offset {exc.start}); "
            "convert it to UTF-8 first, e.g. `iconv -f BIG5 -t UTF-8 in.txt > out.txt`") from None


def read_chapter(path: Path) -> str:
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no such file (expected a chapter of a novel as a .txt file)")
    return decode_chapter(path.read_bytes(), str(path))


def detect_language(text: str) -> str:
    """'zh' when Hanzi carry the text, else 'en'. One Hanzi counts as much as four Latin letters."""
    hanzi = sum(1 for _ in _HANZI.finditer(text))  # counted, not listed: a book has a million letters
    latin = sum(1 for _ in _LATIN.finditer(text))
    return "zh" if hanzi * 4 >= latin else "en"
