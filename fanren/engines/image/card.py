"""`card`: the embedded image engine. A storyboard card drawn with Pillow, no weights, no GPU.

A keyframe card shows what the shot is meant to be (scene, shot, setting, characters, action,
camera) at exactly the frame size the video engine wants, with small portraits of the shot's
character outputs so that editing a character visibly changes its keyframes. A character card is a
character sheet: the reference image (or a drawn silhouette), the name and the description.

Every length is a fraction of the frame (fonts of its short side), so one layout serves 16:9, 9:16
and 1:1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ...errors import EngineError
from ...fonts import cjk_font
from ..base import Engine, Request


class CardEngine(Engine):
    family = "image"
    name = "card"
    options_known = frozenset[str]()  # takes no options
    version = "1"
    kinds = frozenset({"character", "keyframe"})

    def identity(self) -> dict[str, Any]:
        # The glyphs are part of the picture: another font gives other bytes.
        font = cjk_font()
        return {**super().identity(), "font": f"{font.family} ({font.file.name}#{font.index})"}

    def run(self, request: Request) -> dict[str, Path]:
        # Pillow loads only when a card is drawn: a no-op build never imports it.
        from .card_drawing import character_card, keyframe_card

        width, height = (int(v) for v in request.params["size"])
        if request.kind == "keyframe":
            card = keyframe_card(request, (width, height))
        elif request.kind == "character":
            card = character_card(request, (width, height))
        else:
            raise EngineError(f"the card engine draws characters and keyframes, not {request.kind!r} nodes")
        out = request.out_dir / "image.png"
        card.save(out, format="PNG", optimize=False, compress_level=6)
        return {"image.png": out}
