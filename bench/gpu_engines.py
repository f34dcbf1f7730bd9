"""Speed and memory of the GPU engines (flux, flux2, cogvideox, svd, hunyuanvideo15, wan, ltx2), without weights.

Builds the full-size architectures with random weights on the GPU (fanren.testing's
"fanren-random:<hub id>" models: a denoising step costs the same whatever the weights are) and
renders a keyframe or a clip through the very engine code a build runs. For each engine, speed
option and vram mode it prints one JSON line:

    load_s        building the pipeline (random init on the GPU; not a disk read)
    first_s       the first render (includes torch.compile when compile is on)
    total_s       a later render, end to end (text encoders, denoising, VAE decode, PNG/MP4 writing)
    s_per_step    median time of one denoising step (CUDA-synchronised at each step)
    est_s         total_s with the model's default step count instead of --steps
    peak_gb       the render's peak allocated GPU memory (torch.cuda.max_memory_allocated)

then, with --soak N, the allocated memory after each of N more renders (growth must be zero), and
the allocated memory after unload() (the memory the next engine gets back).

Step caching decides per step whether to skip the transformer from how much the first block's
output changed; random weights change differently from trained ones, so cached runs here show the
cost of the machinery, not the skip rate real weights get.

    python bench/gpu_engines.py                                   # all engines, eager, full mode
    python bench/gpu_engines.py --engines flux,cogvideox --speed eager,compile,cache --steps 4
    python bench/gpu_engines.py --engines flux --speed cudnn,fuse,compile+cudnn+fuse,compile+fp8
    python bench/gpu_engines.py --engines cogvideox --vram full,model-offload --soak 10
    python bench/gpu_engines.py --engines hunyuanvideo15 --vram full,model-offload --steps 2 --soak 2
    python bench/gpu_engines.py --engines flux2,flux2-t2i --vram full,model-offload --soak 10
    python bench/gpu_engines.py --engines ltx2-distilled,ltx2,wan --steps 2   # 9:16 clips of 121 frames
    python bench/gpu_engines.py --tiny                            # tiny models on the CPU: checks the script
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fanren import testing
from fanren.engines.base import Engine, Request
from fanren.engines.diffusion import (
    RANDOM_PREFIX,
    SDPA_KERNELS,
    DiffusionEngine,
    cuda_available,
    diffusers_version,
)
from fanren.engines.diffusion.weights import (
    HUNYUANVIDEO15_480P_I2V,
    HUNYUANVIDEO15_480P_I2V_STEP_DISTILLED,
    HUNYUANVIDEO15_720P_I2V,
)
from fanren.engines.image.flux import FluxEngine
from fanren.engines.image.flux2 import Flux2Engine
from fanren.engines.video.cogvideox import CogVideoXEngine
from fanren.engines.video.hunyuanvideo15 import HunyuanVideo15Engine
from fanren.engines.video.ltx2 import LTX2Engine
from fanren.engines.video.svd import SVDEngine
from fanren.engines.video.wan import WanEngine

GIB = 1024**3


@dataclass(frozen=True)
class Case:
    """One engine rendering one node kind, with the model's default step count for estimates."""

    engine_class: type[DiffusionEngine]
    options: dict[str, Any]
    tiny_options: dict[str, Any]
    kind: str               # keyframe | clip
    size: tuple[int, int]
    tiny_size: tuple[int, int]
    characters: int         # character sheets fed to a keyframe (Kontext or FLUX.2 references when > 0)
    default_steps: int


FLUX_DEV, FLUX_SCHNELL = RANDOM_PREFIX + testing.FLUX_DEV, RANDOM_PREFIX + testing.FLUX_SCHNELL
CASES = {
    "flux": Case(FluxEngine, {"model": FLUX_DEV, "consistency": "none"},
                 {"model": "fanren-tiny:flux", "consistency": "none"},
                 kind="keyframe", size=(1024, 1024), tiny_size=(64, 64), characters=0, default_steps=28),
    "schnell": Case(FluxEngine, {"model": FLUX_SCHNELL, "consistency": "none"},
                    {"model": "fanren-tiny:flux", "consistency": "none"},
                    kind="keyframe", size=(1024, 1024), tiny_size=(64, 64), characters=0, default_steps=4),
    "kontext": Case(FluxEngine, {"model": FLUX_DEV, "consistency": "kontext"},
                    {"model": "fanren-tiny:flux", "consistency": "kontext"},
                    kind="keyframe", size=(1024, 1024), tiny_size=(64, 64), characters=1, default_steps=28),
    # FLUX.2 [klein] 4B at 9:16: a keyframe with two characters' sheets as references, and without.
    "flux2": Case(Flux2Engine, {"model": RANDOM_PREFIX + testing.FLUX2_KLEIN_4B}, {"model": "fanren-tiny:flux2"},
                  kind="keyframe", size=(720, 1280), tiny_size=(64, 96), characters=2, default_steps=4),
    "flux2-t2i": Case(Flux2Engine, {"model": RANDOM_PREFIX + testing.FLUX2_KLEIN_4B},
                      {"model": "fanren-tiny:flux2"},
                      kind="keyframe", size=(720, 1280), tiny_size=(64, 96), characters=0, default_steps=4),
    "cogvideox": Case(CogVideoXEngine, {"model": RANDOM_PREFIX + testing.COGVIDEOX_5B_I2V},
                      {"model": "fanren-tiny:cogvideox"},
                      kind="clip", size=(720, 480), tiny_size=(96, 64), characters=0, default_steps=50),
    "cogvideox1.5": Case(CogVideoXEngine, {"model": RANDOM_PREFIX + testing.COGVIDEOX15_5B_I2V},
                         {"model": "fanren-tiny:cogvideox1.5"},
                         kind="clip", size=(1360, 768), tiny_size=(96, 64), characters=0, default_steps=50),
    "svd": Case(SVDEngine, {"model": RANDOM_PREFIX + testing.SVD_XT}, {"model": "fanren-tiny:svd"},
                kind="clip", size=(1024, 576), tiny_size=(96, 64), characters=0, default_steps=25),
    # 9:16, the size a vertical drama's keyframes have (121 frames, 5 s at 24 fps)
    "hunyuanvideo15": Case(HunyuanVideo15Engine, {"model": RANDOM_PREFIX + HUNYUANVIDEO15_480P_I2V},
                           {"model": "fanren-tiny:hunyuanvideo15"},
                           kind="clip", size=(480, 832), tiny_size=(64, 96), characters=0, default_steps=50),
    "hunyuanvideo15-720p": Case(HunyuanVideo15Engine, {"model": RANDOM_PREFIX + HUNYUANVIDEO15_720P_I2V},
                                {"model": "fanren-tiny:hunyuanvideo15"},
                                kind="clip", size=(720, 1248), tiny_size=(64, 96), characters=0,
                                default_steps=50),
    "hunyuanvideo15-distilled": Case(HunyuanVideo15Engine,
                                     {"model": RANDOM_PREFIX + HUNYUANVIDEO15_480P_I2V_STEP_DISTILLED},
                                     {"model": "fanren-tiny:hunyuanvideo15", "guidance": 1.0},
                                     kind="clip", size=(480, 832), tiny_size=(64, 96), characters=0,
                                     default_steps=8),
    # The 9:16 native sizes: the vertical drama the final profile could not render before.
    "wan": Case(WanEngine, {"model": RANDOM_PREFIX + testing.WAN22_TI2V_5B}, {"model": "fanren-tiny:wan"},
                kind="clip", size=(704, 1280), tiny_size=(64, 96), characters=0, default_steps=50),
    "ltx2": Case(LTX2Engine, {"model": RANDOM_PREFIX + testing.LTX2}, {"model": "fanren-tiny:ltx2"},
                 kind="clip", size=(704, 1280), tiny_size=(64, 96), characters=0, default_steps=30),
    # The distilled schedule has its own 8 steps: --steps does not apply.
    "ltx2-distilled": Case(LTX2Engine, {"model": RANDOM_PREFIX + testing.LTX2, "distilled": True},
                           {"model": "fanren-tiny:ltx2", "distilled": True},
                           kind="clip", size=(704, 1280), tiny_size=(64, 96), characters=0, default_steps=8),
}

# A --speed value joins these with "+" (compile+cudnn+fuse); each adds engine options.
SPEEDS: dict[str, dict[str, Any]] = {
    "eager": {},
    "compile": {"compile": True},
    "cache": {"cache": "first-block"},
    "taylorseer": {"cache": "taylorseer"},
    "cudnn": {"attention": "cudnn"},
    "flash": {"attention": "flash"},
    "efficient": {"attention": "efficient"},
    "flash-attn": {"attention": "flash-attn"},
    "flash-attn3": {"attention": "flash-attn3"},
    "sage": {"attention": "sage"},
    "fuse": {"fuse_qkv": True},
    "fp8": {"quantize": "fp8"},
}


def speed_options(speed: str) -> dict[str, Any] | None:
    """The engine options of a --speed value such as "compile+cudnn", or None if a part is unknown."""
    options: dict[str, Any] = {}
    for part in speed.split("+"):
        if part not in SPEEDS:
            return None
        options.update(SPEEDS[part])
    return options


def offers(engine_class: type[DiffusionEngine], options: dict[str, Any]) -> bool:
    """Whether the engine has every option (svd has no compile, cache, fuse_qkv or quantize)."""
    if not set(options) <= engine_class.options_known:
        return False
    return "attention" not in options or engine_class.attention_dispatcher \
        or options["attention"] in SDPA_KERNELS

VRAM_MODES = ("full", "model-offload", "group-offload", "sequential-offload")


def emit(record: dict[str, Any]) -> None:
    print(json.dumps(record, ensure_ascii=False), flush=True)


class Clock:
    """Step timestamps from the engine's progress callback, synchronised with the GPU."""

    def __init__(self, cuda: bool) -> None:
        self.cuda = cuda
        self.stamps: list[float] = []

    def __call__(self, fraction: float, message: str) -> None:
        self.sync()
        self.stamps.append(time.perf_counter())

    def sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()

    def step_seconds(self) -> float | None:
        gaps = [b - a for a, b in zip(self.stamps, self.stamps[1:], strict=False)]
        return statistics.median(gaps) if gaps else None


def sheet_inputs(folder: Path, count: int, size: tuple[int, int]) -> dict[str, dict[str, Path]]:
    from PIL import Image

    inputs = {}
    for i in range(count):
        path = folder / f"sheet-{i}.png"
        Image.effect_noise(size, 64 + 16 * i).convert("RGB").save(path)
        inputs[f"character:c{i}"] = {"image.png": path}
    return inputs


def make_request(case: Case, size: tuple[int, int], folder: Path, seed: int,
                 progress: Callable[[float, str], None]) -> Request:
    out = Path(tempfile.mkdtemp(dir=folder))
    if case.kind == "keyframe":
        characters = [{"id": f"c{i}", "name": f"Character {i}", "description": ""}
                      for i in range(case.characters)]
        params: dict[str, Any] = {"prompt": "a swordswoman at a misty mountain gate, ink wash painting",
                                  "seed": seed, "size": list(size), "characters": characters}
        inputs = sheet_inputs(folder, case.characters, size)
    else:
        keyframe = folder / "keyframe.png"
        if not keyframe.exists():
            from PIL import Image

            Image.effect_noise(size, 80).convert("RGB").save(keyframe)
        params = {"prompt": "she walks up the stone steps", "seed": seed, "size": list(size), "shot_id": "s1"}
        inputs = {"keyframe:s1": {"image.png": keyframe}}
    return Request(node_id=f"{case.kind}:bench", kind=case.kind, params=params, inputs=inputs, out_dir=out,
                   progress=progress)


def memory() -> dict[str, float | None]:
    if not cuda_available():
        return {"allocated_gb": None, "peak_gb": None, "reserved_gb": None}
    import torch

    return {"allocated_gb": round(torch.cuda.memory_allocated() / GIB, 2),
            "peak_gb": round(torch.cuda.max_memory_allocated() / GIB, 2),
            "reserved_gb": round(torch.cuda.memory_reserved() / GIB, 2)}


def reset_peak() -> None:
    if cuda_available():
        import torch

        torch.cuda.reset_peak_memory_stats()


def render(engine: Engine, case: Case, size: tuple[int, int], folder: Path, seed: int) -> tuple[float, Clock]:
    clock = Clock(cuda_available())
    request = make_request(case, size, folder, seed, clock)
    clock.sync()
    start = time.perf_counter()
    outputs = engine.run(request)
    clock.sync()
    elapsed = time.perf_counter() - start
    for path in outputs.values():
        path.unlink()
    return elapsed, clock


def bench_case(name: str, case: Case, speed: str, vram: str, args: argparse.Namespace, folder: Path) -> None:
    options = dict(case.tiny_options if args.tiny else case.options)
    options.update(speed_options(speed) or {})
    options["vram"] = vram
    if not options.get("distilled"):
        options["steps"] = args.steps
    if case.characters and "kontext_steps" in case.engine_class.options_known:
        options["kontext_steps"] = args.steps
    if args.frames and case.kind == "clip":
        options["frames"] = args.frames
    size = args.size or (case.tiny_size if args.tiny else case.size)
    record: dict[str, Any] = {"engine": name, "speed": speed, "vram": vram, "size": list(size),
                              "steps": options.get("steps", case.default_steps), "model": options["model"]}
    engine: DiffusionEngine | None = None
    try:
        engine = case.engine_class(options)
        record["frames"] = getattr(engine, "frames", None)
        reset_peak()
        start = time.perf_counter()
        engine.load()
        record["load_s"] = round(time.perf_counter() - start, 2)
        assert engine.placement is not None
        record.update({"vram_mode": engine.placement.mode, "device": engine.device})
        first, _ = render(engine, case, size, folder, seed=1)
        reset_peak()
        total, clock = render(engine, case, size, folder, seed=2)
        step = clock.step_seconds()
        record.update({"first_s": round(first, 2), "total_s": round(total, 2),
                       "s_per_step": None if step is None else round(step, 4),
                       "peak_gb": memory()["peak_gb"]})
        if step is not None:
            record.update({"est_s": round(total + (case.default_steps - record["steps"]) * step, 1),
                           "est_steps": case.default_steps})
        emit(record)
        if args.soak:
            allocated = []
            for seed in range(args.soak):
                render(engine, case, size, folder, seed=100 + seed)
                allocated.append(memory()["allocated_gb"])
            first_gb, last_gb = allocated[0], allocated[-1]
            growth = None if first_gb is None or last_gb is None else round(last_gb - first_gb, 3)
            emit({"engine": name, "speed": speed, "vram": vram, "soak": args.soak,
                  "allocated_gb_after_each": allocated, "growth_gb": growth, "loads": engine.loads})
    except Exception as exc:  # noqa: BLE001 - one failing combination must not hide the others' numbers
        lines = str(exc).strip().splitlines()
        record["error"] = f"{type(exc).__name__}: {lines[0][:300] if lines else ''}"
        emit(record)
    finally:
        if engine is not None:
            engine.unload()
            emit({"engine": name, "speed": speed, "vram": vram, "event": "unloaded", **memory()})


def find_ffmpeg() -> str | None:
    """ffmpeg on PATH, or the binary of the imageio-ffmpeg wheel linked into PATH as `ffmpeg`."""
    if shutil.which("ffmpeg"):
        return shutil.which("ffmpeg")
    try:
        import imageio_ffmpeg  # type: ignore[import-not-found]
    except ImportError:
        return None
    folder = Path(tempfile.mkdtemp(prefix="fanren-ffmpeg-"))
    (folder / "ffmpeg").symlink_to(imageio_ffmpeg.get_ffmpeg_exe())
    os.environ["PATH"] = f"{folder}{os.pathsep}{os.environ.get('PATH', '')}"
    return str(folder / "ffmpeg")


def sdpa_default_kernel() -> str | None:
    """The kernel PyTorch picks by itself for FLUX.1's attention shape (bf16, 24 heads of 128,
    4608 tokens): `attention = "cudnn"` can only gain where this is not already cuDNN."""
    import torch

    if not torch.cuda.is_available():
        return None
    query = torch.randn(1, 24, 4608, 128, device="cuda", dtype=torch.bfloat16)
    choice: int = torch._fused_sdp_choice(query, query, query)
    return str(torch.nn.attention.SDPBackend(choice).name)


def parse_size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    return int(width), int(height)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engines", default="flux,kontext,cogvideox,cogvideox1.5,svd",
                        help=f"comma-separated, from {', '.join(CASES)}")
    parser.add_argument("--speed", default="eager",
                        help=f"comma-separated, each one of {', '.join(SPEEDS)} or several joined by + "
                             f"(compile+cudnn+fuse)")
    parser.add_argument("--vram", default="full", help=f"comma-separated, from {', '.join(VRAM_MODES)}")
    parser.add_argument("--steps", type=int, default=4,
                        help="denoising steps per render (est_s scales to the model's default)")
    parser.add_argument("--frames", type=int, default=None, help="frames per clip (default: the model's)")
    parser.add_argument("--size", type=parse_size, default=None, help="WxH for every case (default: each's)")
    parser.add_argument("--soak", type=int, default=0, help="then render N more times and report memory")
    parser.add_argument("--tiny", action="store_true", help="tiny models on whatever device there is")
    args = parser.parse_args()

    names = [n.strip() for n in args.engines.split(",") if n.strip()]
    speeds = [s.strip() for s in args.speed.split(",") if s.strip()]
    modes = [m.strip() for m in args.vram.split(",") if m.strip()]
    unknown = [n for n in names if n not in CASES] + [s for s in speeds if speed_options(s) is None] \
        + [m for m in modes if m not in VRAM_MODES]
    if unknown:
        parser.error(f"unknown: {', '.join(unknown)}")

    import torch

    cuda = torch.cuda.is_available()
    if not cuda and not args.tiny:
        parser.error("no CUDA device: full-size models need a GPU (use --tiny to check the script on a CPU)")
    ffmpeg = find_ffmpeg()
    emit({"event": "setup", "python": platform.python_version(), "torch": torch.__version__,
          "diffusers": diffusers_version(), "gpu": torch.cuda.get_device_name() if cuda else None,
          "gpu_total_gb": round(torch.cuda.get_device_properties(0).total_memory / GIB, 1) if cuda else None,
          "sdpa_default": sdpa_default_kernel() if cuda else None, "ffmpeg": ffmpeg, "tiny": args.tiny})
    if ffmpeg is None and any(CASES[n].kind == "clip" for n in names):
        # A clip ends in an MP4 encode: without ffmpeg it would fail after minutes of denoising.
        skipped = [n for n in names if CASES[n].kind == "clip"]
        names = [n for n in names if CASES[n].kind != "clip"]
        emit({"event": "skipped", "engines": skipped,
              "why": "no ffmpeg: put it on PATH or install the imageio-ffmpeg wheel"})
    with tempfile.TemporaryDirectory(prefix="fanren-bench-") as scratch:
        for name in names:
            case = CASES[name]
            for speed in speeds:
                if not offers(case.engine_class, speed_options(speed) or {}):
                    emit({"engine": name, "speed": speed, "event": "skipped",
                          "why": f"{case.engine_class.name} has no such option"})
                    continue
                for mode in modes:
                    bench_case(name, case, speed, mode, args, Path(scratch))


if __name__ == "__main__":
    main()
