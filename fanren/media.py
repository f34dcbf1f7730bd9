"""ffmpeg and ffprobe as subprocesses: running them with useful errors, and reading what they made.

fanren calls the binaries directly with plain argument lists (no Python ffmpeg wrapper: the filter
graphs are short enough to read like ffmpeg's own documentation, see fanren/engines/mux.py). Every
call ends in `run_ffmpeg`, which turns a failure into an EngineError carrying the tail of ffmpeg's log.
"""

from __future__ import annotations

import json
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


def run_ffmpeg(args: list[str], what: str, loglevel: str = "error") -> str:
    """Run `ffmpeg <args>` and return its log; on failure raise EngineError naming `what` with
    ffmpeg's last lines. Some filters (loudnorm's measurement) print what we need at `info`."""
    ffmpeg = require("ffmpeg", "ffmpeg")
    flags = ["-hide_banner", "-nostdin", "-loglevel", loglevel, "-y"]
    proc = subprocess.run([ffmpeg, *flags, *args], capture_output=True, text=True)
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
