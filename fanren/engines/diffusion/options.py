"""Engine option values: choices, numbers, flags, text, and the step-cache option.

A bad value raises OptionError (exit 2) when the engine is constructed, before anything loads;
unknown option names are refused by Engine itself (`options_known`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...errors import OptionError
from .runtime import diffusers_module

DTYPES = ("bfloat16", "float16", "float32")

COMMON_OPTIONS = frozenset({"model", "revision", "dtype", "device", "vram", "download"})


def choice(engine: str, options: Mapping[str, Any], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = options.get(name, default)
    if value not in allowed:
        raise OptionError(engine, name, f"one of {', '.join(map(repr, allowed))}", repr(value))
    return str(value)


def number(engine: str, options: Mapping[str, Any], name: str, default: float, *, low: float,
           high: float) -> float:
    value = options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise OptionError(engine, name, f"a number in [{low}, {high}]", repr(value))
    return float(value)


def whole(engine: str, options: Mapping[str, Any], name: str, default: int, *, low: int, high: int) -> int:
    value = options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise OptionError(engine, name, f"an integer in [{low}, {high}]", repr(value))
    return value


def flag(engine: str, options: Mapping[str, Any], name: str, default: bool) -> bool:
    value = options.get(name, default)
    if not isinstance(value, bool):
        raise OptionError(engine, name, "true or false", repr(value))
    return value


def text(engine: str, options: Mapping[str, Any], name: str) -> str | None:
    value = options.get(name)
    if value is not None and (not isinstance(value, str) or not value):
        raise OptionError(engine, name, "a string", repr(value))
    return value


CACHE_DEFAULTS: dict[str, dict[str, float]] = {
    # FirstBlockCache skips the rest of the transformer while the first block's residual barely
    # changes; TaylorSeer predicts skipped steps' features from earlier ones.
    "first-block": {"threshold": 0.08},
    "taylorseer": {"cache_interval": 5, "disable_cache_before_step": 3, "max_order": 1},
}


def step_cache(engine: str, value: Any) -> dict[str, Any] | None:
    """The `cache` option in canonical form.

    null, "first-block", "taylorseer", or a table: { kind = "first-block", threshold = 0.1 }.
    """
    if value is None or value is False or value == "none":
        return None
    table = {"kind": value} if isinstance(value, str) else value
    if not isinstance(table, Mapping) or table.get("kind") not in CACHE_DEFAULTS:
        raise OptionError(engine, "cache", f"\"none\", one of {', '.join(map(repr, CACHE_DEFAULTS))} or a "
                          f"table with kind = one of them", repr(value))
    kind = str(table["kind"])
    settings = dict(CACHE_DEFAULTS[kind])
    for name, setting in table.items():
        if name == "kind":
            continue
        if name not in settings or isinstance(setting, bool) or not isinstance(setting, (int, float)):
            raise OptionError(engine, "cache", f"a table of kind {kind!r} with {', '.join(settings)} "
                              f"(numbers)", f"{name} = {setting!r}")
        settings[name] = setting
    return {"kind": kind, **settings}


def enable_step_cache(transformer: Any, cache: dict[str, Any] | None) -> None:
    if cache is None:
        return
    hooks = diffusers_module().hooks
    settings = {k: v for k, v in cache.items() if k != "kind"}
    if cache["kind"] == "first-block":
        transformer.enable_cache(hooks.FirstBlockCacheConfig(threshold=float(settings["threshold"])))
    else:
        transformer.enable_cache(hooks.TaylorSeerCacheConfig(
            cache_interval=int(settings["cache_interval"]),
            disable_cache_before_step=int(settings["disable_cache_before_step"]),
            max_order=int(settings["max_order"])))
