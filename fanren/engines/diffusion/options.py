"""Engine options: unknown names, choices, numbers, flags, and the step-cache option.

Bad values raise UsageError (exit 2) when the engine is constructed, before anything loads.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...errors import UsageError
from .runtime import diffusers_module

DTYPES = ("bfloat16", "float16", "float32")

COMMON_OPTIONS = frozenset({"model", "revision", "dtype", "device", "vram", "download"})


def check_options(engine: str, options: Mapping[str, Any], known: set[str]) -> None:
    """Unknown option names are typos: say so before anything runs (exit 2)."""
    import difflib

    for name in sorted(options):
        if name not in known:
            match = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
            hint = f"did you mean {match[0]!r}?" if match else f"known: {', '.join(sorted(known))}"
            raise UsageError(f"engine {engine} has no option {name!r} ({hint})")


def choice(engine: str, options: Mapping[str, Any], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = options.get(name, default)
    if value not in allowed:
        raise UsageError(f"engine {engine}: option {name} must be one of {', '.join(map(repr, allowed))}, "
                         f"got {value!r}")
    return str(value)


def number(engine: str, options: Mapping[str, Any], name: str, default: float, *, low: float,
           high: float) -> float:
    value = options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise UsageError(f"engine {engine}: option {name} must be a number in [{low}, {high}], got {value!r}")
    return float(value)


def whole(engine: str, options: Mapping[str, Any], name: str, default: int, *, low: int, high: int) -> int:
    value = options.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise UsageError(f"engine {engine}: option {name} must be an integer in [{low}, {high}], "
                         f"got {value!r}")
    return value


def flag(engine: str, options: Mapping[str, Any], name: str, default: bool) -> bool:
    value = options.get(name, default)
    if not isinstance(value, bool):
        raise UsageError(f"engine {engine}: option {name} must be true or false, got {value!r}")
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
    if isinstance(value, str):
        value = {"kind": value}
    if not isinstance(value, Mapping) or value.get("kind") not in CACHE_DEFAULTS:
        raise UsageError(f"engine {engine}: option cache must be null, one of "
                         f"{', '.join(map(repr, CACHE_DEFAULTS))} or a table with kind = one of them, "
                         f"got {value!r}")
    kind = str(value["kind"])
    settings = dict(CACHE_DEFAULTS[kind])
    for name, setting in value.items():
        if name == "kind":
            continue
        if name not in settings or isinstance(setting, bool) or not isinstance(setting, (int, float)):
            raise UsageError(f"engine {engine}: cache {kind!r} takes {', '.join(settings)} (numbers), "
                             f"got {name} = {setting!r}")
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
