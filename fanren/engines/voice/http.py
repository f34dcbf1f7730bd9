"""What the speech-server clients share: profile options for timeouts and retries, multipart forms,
and the checks on the audio a server sends back.

The requests themselves go through fanren.http (one httpx client for all of fanren, with a
whole-reply deadline, retries and secret masking). Failures come out as its two exceptions:
`TransientError` (worth another attempt: refused connection, timeout, 5xx, a stream cut off, audio
that fails the checks below) and `PermanentError` (asking again cannot help: 4xx, a reply of the
wrong kind).

What is checked in the audio, before it is written and cached as speech (`check_speech`):
- the reply says it is audio: `audio/*`, `application/octet-stream` or no Content-Type (CosyVoice's
  server sends none); JSON, HTML or text answered with 200 is a PermanentError;
- its length: not empty, whole 16-bit samples (CosyVoice), a complete WAV (OpenAI), and at least
  MIN_SECONDS_PER_CHARACTER per spoken character (a cut or empty stream);
- that it can be sound at all: not digital silence, not far off centre (text or other bytes read as
  samples), and not loud white noise (random bytes: near full-scale level with no correlation
  between neighbouring samples, where speech at 16 kHz or more has a lag-one correlation well over
  0.5). These catch garbage, not a voice that says the wrong thing.
"""

from __future__ import annotations

import hashlib
import itertools
import sys
import urllib.parse
import wave
from array import array
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ...errors import OptionError, unknown_option
from ...http import PermanentError, Reply, TransientError, excerpt

# A reply shorter than this per spoken character is a cut stream, not speech: the fastest voices
# at speed 4 still take ~0.03 s per Latin letter and ~0.05 s per CJK character.
MIN_SECONDS_PER_CHARACTER = 0.015


@dataclass(frozen=True)
class RetryPolicy:
    """How long one attempt may take and how often to try: profile options that change no bytes.

    Bad options raise OptionError: the compiler reports it at profiles.<name>.voice.<option> in drama.toml.
    """

    timeout: float
    retries: int
    backoff: float  # seconds before the first retry; doubled for each one after

    KEYS = ("timeout", "retries", "backoff")

    @classmethod
    def from_options(cls, options: Mapping[str, object], timeout: float, engine: str) -> RetryPolicy:
        def number(key: str, default: float) -> float:
            value = options.get(key, default)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise OptionError(engine, key, "a number >= 0", repr(value))
            return float(value)

        retries = number("retries", 3)
        if retries != int(retries):
            raise OptionError(engine, "retries", "a whole number", f"{retries:g}")
        seconds = number("timeout", timeout)
        if seconds == 0:
            raise OptionError(engine, "timeout", "more than 0 seconds", "0")
        return cls(timeout=seconds, retries=int(retries), backoff=number("backoff", 1.0))


def check_url(url: object, option: str, engine: str) -> str:
    """`url` without a trailing slash, or OptionError if it is not an http(s) URL."""
    parts = urllib.parse.urlsplit(str(url))
    if not isinstance(url, str) or parts.scheme not in ("http", "https") or not parts.hostname:
        raise OptionError(engine, option, "an http:// or https:// URL", repr(url))
    return url.rstrip("/")


def check_option_names(options: Mapping[str, object], known: frozenset[str], engine: str) -> None:
    """OptionError naming the first unknown option, with the closest known one and all of them."""
    for name in sorted(set(options) - known):
        raise unknown_option(engine, name, known)


@dataclass(frozen=True)
class FilePart:
    filename: str
    content: bytes
    content_type: str = "application/octet-stream"


def encode_multipart(fields: Mapping[str, str], files: Mapping[str, FilePart]) -> tuple[bytes, str]:
    """A multipart/form-data body and its Content-Type header.

    The boundary is derived from the content, so the same form always gives the same bytes.
    """
    parts: list[tuple[bytes, bytes]] = []
    for name, value in fields.items():
        head = f'Content-Disposition: form-data; name="{_quote(name)}"\r\n'
        parts.append((head.encode("utf-8"), value.encode("utf-8")))
    for name, part in files.items():
        head = (f'Content-Disposition: form-data; name="{_quote(name)}"; '
                f'filename="{_quote(part.filename)}"\r\n'
                f"Content-Type: {part.content_type}\r\n")
        parts.append((head.encode("utf-8"), part.content))
    digest = hashlib.sha256(b"\0".join(h + c for h, c in parts)).hexdigest()[:32]
    boundary = f"fanren-{digest}".encode("ascii")
    while any(boundary in h or boundary in c for h, c in parts):
        boundary += b"x"
    body = b"".join(b"--" + boundary + b"\r\n" + head + b"\r\n" + content + b"\r\n"
                    for head, content in parts)
    body += b"--" + boundary + b"--\r\n"
    return body, f"multipart/form-data; boundary={boundary.decode('ascii')}"


def _quote(name: str) -> str:
    # Browsers percent-encode these three in a form-data name or filename; so does python-multipart.
    return name.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


# ── the audio that comes back ────────────────────────────────────────────────


@dataclass(frozen=True)
class Audio:
    """Mono 16-bit little-endian PCM at `rate` samples per second."""

    rate: int
    pcm: bytes

    @property
    def seconds(self) -> float:
        return len(self.pcm) / 2 / self.rate

    def write(self, path: Path) -> None:
        with wave.open(str(path), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(self.rate)
            out.writeframes(self.pcm)


def silence(seconds: float, rate: int) -> Audio:
    return Audio(rate, b"\x00\x00" * round(seconds * rate))


# Content types a speech server labels its audio with. CosyVoice's FastAPI server sends none at all.
AUDIO_TYPES = ("audio/", "application/octet-stream")
FULL_SCALE = 32768.0
# Random bytes read as 16-bit samples are white noise at ~0.58 of full scale (uniform RMS) with a
# lag-one correlation of ~0; speech sits far below that level and above 0.5 correlation.
NOISE_LEVEL = 0.3
NOISE_CORRELATION = 0.2
# A mean this close to the RMS is a signal that is mostly offset: text or other bytes read as
# samples (ASCII letters are all positive samples around 0.6 of full scale). Speech is centred.
OFFSET_RATIO = 0.7
SOUND_SAMPLES = 1 << 19  # enough to judge: ~22 s at 24 kHz; longer replies are judged on their start


def check_audio_type(reply: Reply) -> None:
    """PermanentError when the reply says it is not audio: a JSON error or an HTML page answered with 200."""
    kind = reply.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind and not kind.startswith(AUDIO_TYPES):
        raise PermanentError(f"the server answered {kind}, not audio: {excerpt(reply.body) or 'an empty body'}")


def check_speech(audio: Audio, text: str, speed: float) -> None:
    """TransientError when the audio cannot be `text` spoken: empty, too short (a cut stream), or not
    sound at all (silence, bytes that are not samples, random noise)."""
    if not audio.pcm:
        raise TransientError("the server sent no audio")
    characters = spoken_characters(text)
    minimum = characters * MIN_SECONDS_PER_CHARACTER / max(speed, 1.0)
    if audio.seconds < minimum:
        raise TransientError(f"only {audio.seconds:.3f} s of audio for {characters} spoken characters "
                             f"(at least {minimum:.2f} s expected; was the stream cut off?)")
    check_sound(audio)


def check_sound(audio: Audio) -> None:
    """TransientError when 16-bit samples cannot be speech (see the module's docstring)."""
    samples = array("h", audio.pcm[:SOUND_SAMPLES * 2])
    if sys.byteorder == "big":
        samples.byteswap()
    n = len(samples)
    if n < 2 or not any(samples):
        raise TransientError(f"the server sent {audio.seconds:.2f} s of silence")
    energy = sum(s * s for s in samples)
    rms = (energy / n) ** 0.5
    mean = sum(samples) / n
    if abs(mean) > OFFSET_RATIO * rms:
        raise TransientError(f"the audio is not sound: its samples sit off centre (mean {mean / FULL_SCALE:+.2f}, "
                             f"RMS {rms / FULL_SCALE:.2f} of full scale); the reply holds other bytes")
    correlation = sum(a * b for a, b in itertools.pairwise(samples)) / energy
    if rms > NOISE_LEVEL * FULL_SCALE and abs(correlation) < NOISE_CORRELATION:
        raise TransientError(f"the audio is noise, not speech (RMS {rms / FULL_SCALE:.2f} of full scale, "
                             f"neighbouring samples correlate {correlation:+.2f}); the reply holds random bytes")


def spoken_characters(text: str) -> int:
    """Letters, digits and CJK characters: what takes time to say."""
    return sum(1 for ch in text if ch.isalnum())


# A sentence of punctuation only ("……" split off a line) has nothing to say: it becomes this pause
# rather than a request whose reply would be empty or noise.
PAUSE_SECONDS = 0.3
