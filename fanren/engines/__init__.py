"""Engines: found by name in the `fanren.engines` entry-point group, so a third party can add one.

The built-in engines are listed here too, so resolving them costs no scan of installed packages.
"""

from __future__ import annotations

import importlib

from ..errors import UsageError
from .base import Engine, Request, Resources, VideoEngine

__all__ = ["Engine", "Request", "Resources", "VideoEngine", "available_engines", "engine_class"]

BUILTIN: dict[str, str] = {
    "card": "fanren.engines.image.card:CardEngine",
    "kenburns": "fanren.engines.video.kenburns:KenBurnsEngine",
    "espeak": "fanren.engines.voice.espeak:EspeakEngine",
    "cosyvoice": "fanren.engines.voice.cosyvoice:CosyVoiceEngine",
    "openai": "fanren.engines.voice.openai:OpenAISpeechEngine",
    "flux": "fanren.engines.image.flux:FluxEngine",
    "cogvideox": "fanren.engines.video.cogvideox:CogVideoXEngine",
    "svd": "fanren.engines.video.svd:SVDEngine",
    "comfyui": "fanren.engines.comfyui:ComfyUIImageEngine",  # and ComfyUIVideoEngine: see Engine.variant
    "mux": "fanren.engines.mux:MuxEngine",
    "storyboard": "fanren.engines.storyboard:StoryboardEngine",
    "export": "fanren.engines.export:ExportEngine",
    "consistency": "fanren.engines.consistency:ConsistencyEngine",
}


def _load(target: str) -> type[Engine]:
    module, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, Engine)):
        raise UsageError(f"engine entry point {target} is not a fanren Engine class")
    return cls


def _entry_points() -> dict[str, str]:
    from importlib.metadata import entry_points  # scans installed packages: only when needed

    return {ep.name: ep.value for ep in entry_points(group="fanren.engines")}


def available_engines() -> dict[str, str]:
    """Every engine name this installation knows, with where it comes from."""
    return {**_entry_points(), **BUILTIN}


def engine_class(name: str) -> type[Engine]:
    target = BUILTIN.get(name)
    if target is None:
        target = _entry_points().get(name)
    if target is None:
        known = sorted(available_engines())
        raise UsageError(f"no engine named {name!r} is installed (known engines: {', '.join(known)})")
    return _load(target)
