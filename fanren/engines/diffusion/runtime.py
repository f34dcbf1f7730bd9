"""Running a diffusers pipeline: importing it lazily, quietly, on a fixed CPU thread count, seeded.

Nothing here imports torch or diffusers at module import.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..base import Request

if TYPE_CHECKING:
    import torch


def diffusers_module() -> Any:
    """diffusers, typed loosely: its constructors carry no annotations for a strict type checker."""
    import diffusers

    return diffusers


def torch_dtype(name: str) -> torch.dtype:
    import torch

    return {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}[name]


def eval_mode(pipeline: Any) -> None:
    """Every torch module of `pipeline` in eval mode (no dropout): from_pretrained does this for the
    components it loads, but not for ones built or swapped in by hand."""
    import torch

    for component in pipeline.components.values():
        if isinstance(component, torch.nn.Module):
            component.eval()


def generator(seed: int) -> torch.Generator:
    """A seeded CPU generator: the same noise on every device, so a key means the same picture."""
    import torch

    return torch.Generator("cpu").manual_seed(int(seed) % 2**63)


def step_progress(request: Request, steps: int) -> Callable[..., dict[str, Any]]:
    """A callback_on_step_end that reports the denoising step of the running node."""

    def on_step_end(pipeline: Any, step: int, timestep: Any, tensors: dict[str, Any]) -> dict[str, Any]:
        request.progress(min(1.0, (step + 1) / steps), f"step {step + 1}/{steps}")
        return tensors

    return on_step_end


@contextmanager
def quiet() -> Iterator[None]:
    """No tqdm bars and no chatter from diffusers or transformers: fanren shows its own progress.

    Their warnings (CLIP truncating a long prompt to 77 tokens, deprecated argument names) say
    nothing a user of fanren can act on; errors still come through as exceptions.
    """
    import warnings

    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    restore = []
    for library in (diffusers_logging, transformers_logging):
        restore.append((library, library.get_verbosity(), library.is_progress_bar_enabled()))
        library.set_verbosity_error()
        library.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            yield
    finally:
        for library, verbosity, bars in restore:
            library.set_verbosity(verbosity)
            if bars:
                library.enable_progress_bar()


def cpu_thread_count(tiny: bool) -> int:
    """How many intra-op threads torch uses for a render on the CPU: fixed, never whatever the
    rendering thread happens to have.

    Tiny models run on one thread. They are thousands of kernels of microseconds each, so torch's
    thread pool costs more than it saves (a tiny FLUX.1 keyframe took 1.1 s with 2 threads on a
    busy 2-core machine, 0.07 s with one), and one thread gives the same float sums on every machine
    whatever its core count: the smoke profile's keys mean the same bytes everywhere. Real models on
    a CPU use every core this process may run on; their bytes then hold for machines with as many.
    """
    if tiny:
        return 1
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run torch on `count` intra-op threads in the calling thread (None: leave it as it is).

    torch's CPU float sums depend on how many threads split them, and with OpenMP the count is per
    thread: torch.set_num_threads changes the calling thread's count and the process default, and a
    thread takes that default the first time it asks torch for its count (overwriting a count set
    on it before). So a count set in one thread does not hold in another, and which count a worker
    thread renders with would depend on what ran before, where. The scheduler renders on worker
    threads, several engines at once: the count is set here, in the thread that renders, right
    before it renders (after asking for it once, so it sticks), and put back after.
    """
    if count is None:
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, short enough for an error of ours."""
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__
