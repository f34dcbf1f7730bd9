"""What the tests of the diffusers clip engines share (test_engine_{cogvideox,svd,wan,ltx2,hunyuanvideo15}.py).

A keyframe picture, one clip request run in a fresh folder, the missing-weights error, a 9:16 drama
built in two folders. Imported like conftest's helpers (tests/ is on sys.path).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import SMALL_DRAMA, fanren, write_drama
from PIL import Image

from fanren.engines.base import Engine, Request
from fanren.errors import EngineError

_runs = itertools.count()


def keyframe_png(folder: Path, size: tuple[int, int], background: tuple[int, int, int],
                 box: tuple[int, int, int, int], box_color: tuple[int, int, int]) -> Path:
    """folder/image.png: a flat `background` with one `box` on it, something for motion to move."""
    path = folder / "image.png"
    image = Image.new("RGB", size, background)
    image.paste(box_color, box)
    image.save(path)
    return path


def render_clip(engine: Engine, tmp: Path, keyframe: Path, params: dict[str, Any],
                progress: Callable[[float, str], None] | None = None) -> Path:
    """engine.run() on the clip of shot s1 (seed 3 unless `params` says otherwise) in a fresh folder under tmp."""
    out = tmp / f"run-{next(_runs)}"
    out.mkdir()
    request = Request(node_id="clip:s1", kind="clip", params={"shot_id": "s1", "seed": 3, **params},
                      inputs={"keyframe:s1": {"image.png": keyframe}}, out_dir=out,
                      **({"progress": progress} if progress else {}))
    return engine.run(request)["clip.mp4"]


def missing_weights_error(render: Callable[[], Path], tmp: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """The EngineError's message when `render` needs weights this machine lacks (offline, an empty hub cache)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp / "hub"))
    with pytest.raises(EngineError) as caught:
        render()
    return str(caught.value)


def vertical_drama_text(profile: str) -> str:
    """The small drama at 9:16, with `profile` appended (a [profiles.…] table)."""
    return SMALL_DRAMA.replace('aspect = "16:9"', 'aspect = "9:16"') + profile


def build_twice_to_the_same_lock(tmp: Path, text: str, profile: str) -> Path:
    """Build the drama `text` in two folders (two caches); both succeed and their drama.lock is the same
    file: every key and every output digest identical (same key, same bytes). Returns the first folder."""
    first, second = write_drama(tmp / "a", text), write_drama(tmp / "b", text)
    for drama in (first, second):
        result = fanren("build", drama, "--profile", profile, timeout=600)
        assert result.code == 0, result.stderr
    lock = (first / "drama.lock").read_text(encoding="utf-8")
    assert (second / "drama.lock").read_text(encoding="utf-8") == lock
    return first
