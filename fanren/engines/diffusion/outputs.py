"""What a clip engine reads and writes: its keyframe in, its frames out as a repeatable H.264 MP4."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import EngineError
from ...media import run_ffmpeg
from ..base import Request

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

# x264 output depends on its thread count, so it is fixed rather than taken from the machine.
X264 = ["-c:v", "libx264", "-preset", "medium", "-crf", "16", "-pix_fmt", "yuv420p", "-threads", "2"]
BITEXACT = ["-map_metadata", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact"]


def check_size(engine: str, size: Any, multiple: int = 16) -> tuple[int, int]:
    width, height = (int(v) for v in size)
    if width <= 0 or height <= 0 or width % multiple or height % multiple:
        raise EngineError(f"{engine} renders sizes that are multiples of {multiple} pixels, "
                          f"asked for {width}×{height}")
    return width, height


def keyframe_image(request: Request, size: tuple[int, int]) -> Image.Image:
    """The clip's keyframe as RGB at `size` (it is rendered at that size; resized only if it is not)."""
    from PIL import Image

    keyframes = request.inputs_of_kind("keyframe")
    if not keyframes or "image.png" not in keyframes[0][1]:
        raise EngineError(f"{request.node_id}: a clip needs its keyframe's image.png as input")
    with Image.open(keyframes[0][1]["image.png"]) as image:
        keyframe = image.convert("RGB")
    if keyframe.size != size:
        keyframe = keyframe.resize(size, Image.Resampling.LANCZOS)
    return keyframe


def clip_frames(engine: str, frames: np.ndarray, count: int, size: tuple[int, int]) -> np.ndarray:
    """Pipeline frames (float in [0, 1], frames × height × width × 3) → uint8 RGB, checked against the ask."""
    import numpy as np

    width, height = size
    if frames.shape[:3] != (count, height, width):
        raise EngineError(f"{engine} made {frames.shape[0]} frames of {frames.shape[2]}×{frames.shape[1]}, "
                          f"{count} of {width}×{height} were asked")
    pixels: np.ndarray = (np.clip(frames, 0.0, 1.0) * 255.0).round().astype(np.uint8)
    return pixels


def write_clip(frames: np.ndarray, fps: int, out: Path) -> Path:
    """Encode uint8 RGB frames (frames × height × width × 3) as an H.264 MP4, byte for byte repeatable."""
    count, height, width, _ = frames.shape
    raw = out.with_suffix(".rgb")
    raw.write_bytes(frames.tobytes())
    try:
        run_ffmpeg(["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{width}x{height}", "-framerate", str(fps),
                    "-i", str(raw), "-frames:v", str(count), *X264, "-an", *BITEXACT,
                    "-movflags", "+faststart", str(out)], f"encoding {out.name}")
    finally:
        raw.unlink(missing_ok=True)
    return out
