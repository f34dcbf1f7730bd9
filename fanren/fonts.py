"""Finding a font that draws Chinese: never ship tofu boxes."""

from __future__ import annotations

import functools
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .errors import EngineError

# Family names in order of preference; the first that fontconfig resolves to a CJK file wins.
CJK_FAMILIES = ["Noto Sans CJK SC", "Noto Sans SC", "Source Han Sans SC", "WenQuanYi Zen Hei"]
CJK_HINT = "install a CJK font: `apt-get install fonts-noto-cjk` (or fonts-wqy-zenhei)"


@dataclass(frozen=True)
class Font:
    family: str   # the name libass / fontconfig know it by (for ASS styles)
    file: Path    # the file Pillow opens
    index: int    # face index inside a .ttc collection


@functools.cache
def cjk_font() -> Font:
    """A font with Chinese glyphs, found through fontconfig; EngineError naming the package if none."""
    fc_match = shutil.which("fc-match")
    if fc_match is None:
        raise EngineError(f"fc-match (fontconfig) was not found; {CJK_HINT}")
    for family in CJK_FAMILIES:
        proc = subprocess.run(
            [fc_match, "-f", "%{family[0]}\t%{file}\t%{index}\t%{lang}", f"{family}:lang=zh-cn"],
            capture_output=True, text=True,
        )
        if proc.returncode != 0 or not proc.stdout:
            continue
        name, file, index, langs = (proc.stdout.split("\t") + ["", "", "", ""])[:4]
        if "zh-cn" in langs.split("|") and Path(file).is_file():
            return Font(family=name, file=Path(file), index=int(index or 0))
    raise EngineError(f"no font with Chinese glyphs was found; {CJK_HINT}")
