"""`fanren doctor`: is this machine ready to render? Each check says how to fix what is missing."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    optional: bool = False


def _version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return out.strip().splitlines()[0] if out.strip() else ""


def _tool(name: str, package: str, version_args: list[str]) -> Check:
    path = shutil.which(name)
    if path is None:
        return Check(name, False, "not found", f"apt-get install {package}")
    return Check(name, True, _version([path, *version_args])[:70] or path)


def checks() -> list[Check]:
    from .engines import available_engines
    from .errors import EngineError
    from .fonts import CJK_HINT, cjk_font

    out = [
        _tool("ffmpeg", "ffmpeg", ["-version"]),
        _tool("ffprobe", "ffmpeg", ["-version"]),
        _tool("espeak-ng", "espeak-ng", ["--version"]),
    ]
    if shutil.which("espeak-ng"):
        voices = subprocess.run(["espeak-ng", "--voices=cmn"], capture_output=True, text=True).stdout
        has = "cmn-latn-pinyin" in voices.lower()
        out.append(Check("mandarin", has, "espeak-ng voice cmn-latn-pinyin" + ("" if has else " missing"),
                         "apt-get install espeak-ng-data"))
    try:
        font = cjk_font()
        out.append(Check("cjk font", True, f"{font.family} ({font.file})"))
    except EngineError:
        out.append(Check("cjk font", False, "no font with Chinese glyphs", CJK_HINT))
    out.append(_gpu())
    out += _weights()
    out.append(Check("engines", True, ", ".join(sorted(available_engines()))))
    return out


def _gpu() -> Check:
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return Check("gpu", False, "torch is not installed (needed only for the final profile)",
                     "pip install torch (the build for your CUDA version)", optional=True)
    import torch

    if not torch.cuda.is_available():
        return Check("gpu", False, f"torch {torch.__version__}, no CUDA device (draft works; final needs "
                     "a GPU)", optional=True)
    free, total = torch.cuda.mem_get_info()
    name = torch.cuda.get_device_name(0)
    return Check("gpu", True, f"{name}, {free / 2**30:.1f} of {total / 2**30:.1f} GiB free", optional=True)


# The final profile's default weights; `huggingface-cli download <id>` fetches each.
FINAL_WEIGHTS = ("black-forest-labs/FLUX.1-dev", "black-forest-labs/FLUX.1-Kontext-dev", "THUDM/CogVideoX-5b-I2V")


def _weights() -> list[Check]:
    from .engines.diffusion import model_ref

    out = []
    for hub_id in FINAL_WEIGHTS:
        folder = model_ref(hub_id, "model").local_folder()
        out.append(Check("weights", folder is not None,
                         f"{hub_id}: " + (str(folder) if folder else "not in the Hugging Face cache"),
                         f"huggingface-cli download {hub_id}   (needed only for the final profile)",
                         optional=True))
    return out
