"""ffmpeg and ffprobe as subprocesses: running them with useful errors, and reading what they made.

fanren calls the binaries directly with plain argument lists (no Python ffmpeg wrapper: the filter
graphs are short enough to read like ffmpeg's own documentation, see fanren/engines/mux.py). Every
call ends in `run_ffmpeg`, which pins the CPU features the encoders may use (so a key gives the
same bytes on every run and every machine of one platform) and turns a failure into an EngineError
carrying the tail of ffmpeg's log.
"""

from __future__ import annotations

import functools
import json
import platform
import shutil
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import EngineError


def require(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise EngineError(f"{tool} was not found on PATH (install the Debian package {package!r})")
    return path


# ffmpeg and x264 choose their SIMD code by the CPU they run on, and the bytes they write differ
# between those paths. Worse, x264's AVX-512 functions read uninitialised memory: on a Xeon with
# AVX-512 (ffmpeg 5.1, x264 core 164) one 320x180 shot with burned subtitles encoded to two to
# four different streams over ten runs, depending on what malloc handed back (MALLOC_PERTURB_
# changes the bytes; with x264 held to AVX2, or to no assembly at all, every run is identical).
# So every encode runs on one pinned feature set, x86-64-v3 (AVX2, FMA, BMI2: every x86 CPU
# since 2013), and engines that encode put `encoder_platform()` in their identity: a machine
# that cannot run the set encodes natively under keys of its own instead of sharing other bytes.
X86_64_V3_CPUINFO = {"sse2", "ssse3", "sse4_1", "sse4_2", "avx", "avx2", "fma", "bmi1", "bmi2", "abm"}
X86_64_V3_X264 = "MMX2,SSE,SSE2,SSE2Fast,LZCNT,SSE3,SSSE3,SSE4.1,SSE4.2,AVX,FMA3,BMI1,BMI2,AVX2"
X86_64_V3_FFMPEG = "mmx+mmxext+sse+sse2+sse3+ssse3+sse4.1+sse4.2+avx+avx2+fma3+bmi1+bmi2+cmov"


@functools.cache
def encoder_platform() -> str:
    """The CPU feature set every ffmpeg and x264 run is held to: "x86-64-v3", or, on a machine
    without it, "native-<os>-<arch>" (its own SIMD choices, so its own keys)."""
    flags: list[str] = []
    try:  # the first CPU's flags: on a 128-core machine the whole file is hundreds of kB
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            flags = next((line.split(":", 1)[1].split() for line in cpuinfo if line.startswith("flags")), [])
    except OSError:
        pass
    if platform.machine() in ("x86_64", "AMD64") and X86_64_V3_CPUINFO <= set(flags):
        return "x86-64-v3"
    return f"native-{platform.system().lower()}-{platform.machine().lower()}"


def pinned_cpu(args: list[str]) -> list[str]:
    """`args` with ffmpeg's and x264's CPU features held to encoder_platform()'s set."""
    if encoder_platform() != "x86-64-v3":
        return list(args)
    pinned = ["-cpuflags", X86_64_V3_FFMPEG, *args]
    if "libx264" not in args:
        return pinned
    if "-x264-params" in pinned:
        at = pinned.index("-x264-params") + 1
        pinned[at] = f"{pinned[at]}:asm={X86_64_V3_X264}"
    else:
        at = pinned.index("libx264") + 1
        pinned[at:at] = ["-x264-params", f"asm={X86_64_V3_X264}"]
    return pinned


def run_ffmpeg(args: list[str], what: str, loglevel: str = "error") -> str:
    """Run `ffmpeg <args>` and return its log; on failure raise EngineError naming `what` with
    ffmpeg's last lines. Some filters (loudnorm's measurement) print what we need at `info`.
    Every run has its CPU features pinned (see encoder_platform)."""
    ffmpeg = require("ffmpeg", "ffmpeg")
    flags = ["-hide_banner", "-nostdin", "-loglevel", loglevel, "-y"]
    proc = subprocess.run([ffmpeg, *flags, *pinned_cpu(args)], capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-12:])
        raise EngineError(f"ffmpeg failed while {what} (exit {proc.returncode}):\n{tail}")
    return proc.stderr


@dataclass(frozen=True)
class Probe:
    duration: float
    video: dict[str, Any] | None
    audio: dict[str, Any] | None

    @property
    def size(self) -> tuple[int, int] | None:
        if self.video is None:
            return None
        return int(self.video["width"]), int(self.video["height"])

    @property
    def frames(self) -> int | None:
        if self.video is None or "nb_frames" not in self.video:
            return None
        return int(self.video["nb_frames"])

    @property
    def fps(self) -> float | None:
        if self.video is None:
            return None
        num, _, den = str(self.video.get("r_frame_rate", "0/1")).partition("/")
        return float(num) / float(den or 1) if float(den or 1) else None


def probe(path: Path) -> Probe:
    """Streams and duration of a media file; EngineError if ffprobe cannot read it."""
    ffprobe = require("ffprobe", "ffmpeg")
    proc = subprocess.run(
        [ffprobe, "-v", "error", "-show_format", "-show_streams", "-of", "json", str(path)],
        capture_output=True, text=True,
    )
    if proc.returncode != 0:
        raise EngineError(f"ffprobe cannot read {path.name}: {proc.stderr.strip()[-300:]}")
    info = json.loads(proc.stdout or "{}")
    streams = info.get("streams", [])
    video = next((s for s in streams if s.get("codec_type") == "video"), None)
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    duration = float(info.get("format", {}).get("duration", 0) or 0)
    return Probe(duration=duration, video=video, audio=audio)


def wav_duration(path: Path) -> float:
    """Duration of a PCM WAV read from its bytes (no subprocess)."""
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / float(w.getframerate())
