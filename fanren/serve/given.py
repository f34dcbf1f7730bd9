"""`given`: an image engine whose keyframe is the client's own picture (the seed's image-to-video API).

The picture is cropped to cover the frame the video engine wants, never letterboxed. Its digest,
not its path, is the engine's identity: the same picture sent twice, by any key, is one cache entry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..engines import Engine, Request
from ..errors import EngineError


class GivenImageEngine(Engine):
    family = "image"
    name = "given"
    version = "1"
    kinds = frozenset({"character", "keyframe"})

    def __init__(self, picture: Path, digest: str) -> None:
        super().__init__({"digest": digest})
        self.picture = Path(picture)

    def identity(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "options": {"digest": self.options["digest"]}}

    def run(self, request: Request) -> dict[str, Path]:
        from PIL import Image, ImageOps

        width, height = (int(v) for v in request.params["size"])
        try:
            with Image.open(self.picture) as picture:
                frame = ImageOps.fit(picture.convert("RGB"), (width, height), Image.Resampling.LANCZOS)
        except OSError as exc:
            raise EngineError(f"the uploaded image cannot be read: {exc}") from None
        out = request.out_dir / "image.png"
        frame.save(out, format="PNG", compress_level=6)
        return {"image.png": out}
