"""What the diffusers picture engines (flux, flux2) share: a node's kind picks the picture, one
checked PNG comes out, and a keyframe's cast is read from the character nodes it depends on."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import EngineError
from ..base import Request
from ..diffusion import DiffusionEngine, check_size

if TYPE_CHECKING:
    from PIL import Image


class PictureEngine(DiffusionEngine):
    """A diffusers engine that draws character sheets and keyframes.

    Subclasses draw each in `_character` and `_keyframe` at the asked size; `_render` checks the
    size and writes the node's image.png.
    """

    family = "image"
    kinds = frozenset({"character", "keyframe"})

    def _render(self, request: Request) -> dict[str, Path]:
        width, height = check_size(self.name, request.params["size"])
        self.load()
        if request.kind == "character":
            image = self._character(request, width, height)
        elif request.kind == "keyframe":
            image = self._keyframe(request, width, height)
        else:
            raise EngineError(f"{self.name} renders characters and keyframes, not {request.kind!r} nodes")
        if image.size != (width, height):
            raise EngineError(f"{self.name} made a {image.width}×{image.height} picture, "
                              f"{width}×{height} was asked")
        out = request.out_dir / "image.png"
        image.save(out, format="PNG")
        return {"image.png": out}

    def _character(self, request: Request, width: int, height: int) -> Image.Image:
        raise NotImplementedError

    def _keyframe(self, request: Request, width: int, height: int) -> Image.Image:
        raise NotImplementedError


def shot_characters(request: Request) -> list[tuple[str, Path]]:
    """(name, character sheet) of each character in the shot, in the order the node lists them."""
    listed = {str(c["id"]): str(c.get("name") or c["id"]) for c in request.params.get("characters", [])}
    cast = []
    for node, files in request.inputs_of_kind("character"):
        character_id = node.split(":", 1)[1]
        cast.append((listed.get(character_id, character_id), files["image.png"]))
    return cast


def open_rgb(path: Path) -> Image.Image:
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB")


def join_names(names: list[str]) -> str:
    """"Ann", "Ann and Bo", "Ann, Bo and Cy"."""
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + " and " + names[-1]
