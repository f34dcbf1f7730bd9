"""`openai`: any OpenAI-compatible speech endpoint (`POST {base_url}/audio/speech`), WAV out.

Works with OpenAI itself and with the servers that copy its API (openedai-speech, Kokoro-FastAPI,
vLLM-Omni, …). The API key comes from an environment variable named in the profile
(`api_key_env`, default OPENAI_API_KEY), read when a sentence is spoken: it is never an option,
so it cannot reach a key, drama.lock, a log or a message.

Profile: `voice = { engine = "openai", base_url = "https://api.openai.com/v1", model = "gpt-4o-mini-tts" }`
Voice:   `openai = "coral"` or `openai = { voice = "coral", instructions = "Speak like a storyteller." }`
"""

from __future__ import annotations

import json
import os
import struct
import sys
from array import array
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from ...errors import EngineError, OptionError
from ...http import PermanentError, TransientError, mask, post, request_secrets, with_retries
from . import SpeechEngine
from .http import (
    PAUSE_SECONDS,
    Audio,
    RetryPolicy,
    check_audio_type,
    check_option_names,
    check_speech,
    check_url,
    silence,
    spoken_characters,
)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_MODEL = "gpt-4o-mini-tts"
DEFAULT_VOICE = "alloy"
OPENAI_RATE = 24000  # what OpenAI's WAV replies use; other servers tell their rate in the header


class OpenAISpeechEngine(SpeechEngine):
    name = "openai"
    version = "1"

    OPTIONS: ClassVar[frozenset[str]] = frozenset({"base_url", "model", "api_key_env", *RetryPolicy.KEYS})

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        if "api_key" in self.options:
            # Never echo the value: it is a secret that was put in the wrong place.
            raise OptionError(self.name, "api_key", "no api_key option (a key is a secret: drama.toml is "
                              "committed)", hint="put the key in an environment variable and name that "
                              "variable with api_key_env (default OPENAI_API_KEY)")
        check_option_names(self.options, self.OPTIONS, self.name)
        self.base_url = check_url(self.options.get("base_url", DEFAULT_BASE_URL), "base_url", self.name)
        self.model = str(self.options.get("model", DEFAULT_MODEL))
        self.api_key_env = str(self.options.get("api_key_env", "OPENAI_API_KEY"))
        self.policy = RetryPolicy.from_options(self.options, timeout=60.0, engine=self.name)
        self._rate = OPENAI_RATE

    def identity(self) -> dict[str, Any]:
        # The base URL is in: providers reuse model names (openedai-speech serves "tts-1" with Piper).
        # Timeouts, retries and the key's variable name change no bytes.
        return {"name": self.name, "version": self.version,
                "options": {"base_url": self.base_url, "model": self.model, "response_format": "wav"}}

    def speak(self, text: str, voice: dict[str, Any], language: str, out_wav: Path,
              sources: dict[str, Path]) -> None:
        request = self.speech_request(text, voice)
        if not spoken_characters(text):
            # The pause takes the rate of the replies so far: sentences of a line must share one.
            silence(PAUSE_SECONDS, self._rate).write(out_wav)
            return
        body = json.dumps(request, ensure_ascii=False).encode("utf-8")
        url = f"{self.base_url}/audio/speech"

        def attempt() -> Audio:
            reply = post(url, body, self._headers(), self.policy.timeout)
            check_audio_type(reply)
            audio = decode_wav(reply.body, reply.headers.get("content-type", ""))
            check_speech(audio, text, float(request["speed"]))
            return audio

        try:
            audio = with_retries(attempt, self.policy.retries, self.policy.backoff)
        except (TransientError, PermanentError) as error:
            raise EngineError(self._failure(error, text, request["voice"])) from None
        self._rate = audio.rate
        audio.write(out_wav)

    def speech_request(self, text: str, voice: Mapping[str, Any]) -> dict[str, Any]:
        """The JSON body for one sentence."""
        entry = voice.get(self.name)
        settings: dict[str, Any] = {"voice": entry} if isinstance(entry, str) else dict(entry or {})
        unknown = sorted(set(settings) - {"voice", "instructions"})
        if unknown:
            raise EngineError(f"the voice's openai table has unknown key(s) {', '.join(unknown)} "
                              "(known: voice, instructions)")
        request: dict[str, Any] = {"model": self.model, "input": text,
                                   "voice": str(settings.get("voice", DEFAULT_VOICE)),
                                   "speed": float(voice.get("speed", 1.0)), "response_format": "wav"}
        if settings.get("instructions"):
            request["instructions"] = str(settings["instructions"])
        return request

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "audio/wav"}
        key = os.environ.get(self.api_key_env, "")
        if key:  # local servers take none
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _failure(self, error: Exception, text: str, voice_name: str) -> str:
        message = (f"the speech server at {self.base_url} gave no usable audio for {_quote(text)} "
                   f"(model {self.model!r}, voice {voice_name!r}): {error}")
        status = getattr(error, "status", None)
        if status in (401, 403):
            message += f"; check the API key in the environment variable {self.api_key_env}"
        elif status == 404:
            message += "; check base_url (it usually ends in /v1) and the model name"
        elif isinstance(error, TransientError) and error.kind == "timeout":
            message += (f"; a slow server may need a longer timeout in the profile's voice options "
                        f"(now {self.policy.timeout:g} s)")
        # post() masked the key in what the server said; the text of the line is ours, but the
        # same helper makes sure no path carries the key on.
        return mask(message, [os.environ.get(self.api_key_env, ""), *request_secrets(self.base_url, {})])


def _quote(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")


# ── WAV in any common shape → mono 16-bit ───────────────────────────────────

WAVE_FORMAT_PCM = 1
WAVE_FORMAT_IEEE_FLOAT = 3
WAVE_FORMAT_EXTENSIBLE = 0xFFFE
STREAMING_SIZES = (0, 0xFFFFFFFF)  # what servers write in RIFF/data sizes before they know the length


def decode_wav(data: bytes, content_type: str = "") -> Audio:
    """A RIFF WAV reply as mono 16-bit PCM at its own rate.

    Takes PCM of 8/16/24/32 bits or 32/64-bit float, any channel count (averaged to mono), and the
    sizes a streaming server writes before it knows the length (0 or 0xFFFFFFFF: the data runs to
    the end of the reply). An empty or truncated reply is a TransientError, anything that is not
    WAV a PermanentError.
    """
    if not data:
        raise TransientError("the server sent no audio")
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise PermanentError(f"the reply is not a WAV file (Content-Type {content_type or 'none'!r}, "
                             f"starts with {data[:8]!r}); does the server support response_format 'wav'?")
    fmt: tuple[int, int, int, int] | None = None
    position = 12
    while position + 8 <= len(data):
        chunk_id, size = data[position:position + 4], struct.unpack_from("<I", data, position + 4)[0]
        start = position + 8
        if chunk_id != b"data" and start + size > len(data):
            raise TransientError(f"the WAV reply is cut off in its {chunk_id.decode('latin-1')!r} chunk "
                                 f"({len(data)} bytes)")
        if chunk_id == b"fmt ":
            fmt = _read_fmt(data[start:start + size])
        elif chunk_id == b"data":
            if fmt is None:
                raise PermanentError("the WAV reply has its data before its format chunk")
            end = len(data) if size in STREAMING_SIZES else start + size
            if end > len(data):
                raise TransientError(f"the WAV reply is cut off ({len(data) - start} of {size} data bytes)")
            return _to_mono16(data[start:end], *fmt)
        position = start + size + (size & 1)  # chunks are padded to an even length
    raise TransientError("the WAV reply has no audio data")


def _read_fmt(chunk: bytes) -> tuple[int, int, int, int]:
    """(format tag, channels, rate, bits per sample), with WAVE_FORMAT_EXTENSIBLE resolved."""
    if len(chunk) < 16:
        raise PermanentError("the WAV reply has a short format chunk")
    tag, channels, rate, _, _, bits = struct.unpack_from("<HHIIHH", chunk)
    if tag == WAVE_FORMAT_EXTENSIBLE and len(chunk) >= 26:
        tag = struct.unpack_from("<H", chunk, 24)[0]  # first two bytes of the sub-format GUID
    if tag not in (WAVE_FORMAT_PCM, WAVE_FORMAT_IEEE_FLOAT) or channels < 1 or rate < 1:
        raise PermanentError(f"the WAV reply is in an unsupported format (tag {tag}, {channels} channel(s), "
                             f"{rate} Hz); ask for plain PCM")
    if (tag, bits) not in {(1, 8), (1, 16), (1, 24), (1, 32), (3, 32), (3, 64)}:
        raise PermanentError(f"the WAV reply has an unsupported sample size ({bits} bits)")
    return tag, channels, rate, bits


def _to_mono16(frames: bytes, tag: int, channels: int, rate: int, bits: int) -> Audio:
    frame_size = channels * bits // 8
    if len(frames) % frame_size:
        raise TransientError(f"the WAV reply ends mid-sample ({len(frames)} data bytes, "
                             f"{frame_size} bytes per frame)")
    if (tag, bits, channels) == (WAVE_FORMAT_PCM, 16, 1):
        return Audio(rate, frames)
    samples = _samples(frames, tag, bits)
    if channels > 1:
        samples = [sum(samples[i:i + channels]) / channels for i in range(0, len(samples), channels)]
    out = array("h", (max(-32768, min(32767, round(s))) for s in samples))
    if sys.byteorder == "big":
        out.byteswap()
    return Audio(rate, out.tobytes())


def _samples(frames: bytes, tag: int, bits: int) -> list[float]:
    """Every sample scaled to the 16-bit range."""
    if tag == WAVE_FORMAT_IEEE_FLOAT:
        values = struct.unpack(f"<{len(frames) // (bits // 8)}{'f' if bits == 32 else 'd'}", frames)
        return [v * 32767.0 for v in values]
    if bits == 8:
        return [(b - 128) * 256.0 for b in frames]  # 8-bit WAV is unsigned
    if bits == 16:
        return [float(v) for v in struct.unpack(f"<{len(frames) // 2}h", frames)]
    if bits == 24:
        return [int.from_bytes(frames[i:i + 3], "little", signed=True) / 256.0
                for i in range(0, len(frames), 3)]
    return [v / 65536.0 for v in struct.unpack(f"<{len(frames) // 4}i", frames)]
