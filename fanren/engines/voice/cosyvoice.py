"""`cosyvoice`: a client for CosyVoice's FastAPI server (runtime/python/fastapi/server.py).

CosyVoice runs in its own environment, usually on a GPU machine; fanren never installs it. The
server takes a form (multipart here; FastAPI reads either kind) and streams raw 16-bit mono PCM
with no header at the model's rate, which it does not announce: 22050 Hz for CosyVoice-300M,
24000 Hz for CosyVoice2 and Fun-CosyVoice3. So `sample_rate` is a profile option, and the WAV
header is written here.

Profile: `voice = { engine = "cosyvoice", url = "http://127.0.0.1:50000", mode = "sft", sample_rate = 22050 }`
Voices:  `cosyvoice = "中文女"` (sft: one of the server model's speakers)
         `cosyvoice = { prompt_wav = "refs/li.wav", prompt_text = "what refs/li.wav says" }` (zero_shot)
         `cosyvoice = { prompt_wav = "refs/li.wav", instruct_text = "用四川话说这句话" }` (instruct2)
A voice table may name its own `mode`; otherwise the profile's applies.

The URL is not in the engine's identity (where the server runs changes no bytes); the mode, the
rate and the optional `model` label are. The prompt file reaches the key as a source digest.
"""

from __future__ import annotations

import wave
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from ...errors import EngineError, OptionError
from ...http import PermanentError, TransientError, mask, post, request_secrets, with_retries
from ...media import run_ffmpeg
from . import SpeechEngine
from .http import (
    PAUSE_SECONDS,
    Audio,
    FilePart,
    RetryPolicy,
    check_audio_type,
    check_option_names,
    check_speech,
    check_url,
    encode_multipart,
    silence,
    spoken_characters,
)

DEFAULT_URL = "http://127.0.0.1:50000"
ENDPOINTS = {
    "sft": "/inference_sft",
    "zero_shot": "/inference_zero_shot",
    "instruct2": "/inference_instruct2",
}
DEFAULT_SPEAKERS = {"zh": "中文女", "en": "英文女"}  # speakers of CosyVoice-300M-SFT
SFT_SPEAKERS = "中文女, 中文男, 英文女, 英文男, 日语男, 粤语女, 韩语女"
VOICE_KEYS = {"mode", "spk_id", "prompt_wav", "prompt_text", "instruct_text"}
# CosyVoice's load_wav refuses prompts below 16 kHz and its speech tokenizer those over 30 s;
# checked here so the user hears it before a round trip ends in an HTTP 500.
PROMPT_MIN_RATE = 16000
PROMPT_MAX_SECONDS = 30.0
# CosyVoice2 and 3 read the instruction up to this token; without it they speak the instruction.
END_OF_PROMPT = "<|endofprompt|>"


@dataclass(frozen=True)
class CosyVoiceVoice:
    """What one voice asks of the server."""

    mode: str
    spk_id: str = ""
    prompt_wav: str = ""     # drama-relative path
    prompt_text: str = ""
    instruct_text: str = ""


class CosyVoiceEngine(SpeechEngine):
    name = "cosyvoice"
    version = "1"

    OPTIONS: ClassVar[frozenset[str]] = frozenset({"url", "mode", "sample_rate", "model", *RetryPolicy.KEYS})

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        check_option_names(self.options, self.OPTIONS, self.name)
        self.url = check_url(self.options.get("url", DEFAULT_URL), "url", self.name)
        mode = self.options.get("mode", "sft")
        if mode not in ENDPOINTS:
            raise OptionError(self.name, "mode", f"one of {', '.join(ENDPOINTS)}", repr(mode))
        self.mode = str(mode)
        rate = self.options.get("sample_rate", 22050)
        if isinstance(rate, bool) or not isinstance(rate, int) or not 8000 <= rate <= 192000:
            raise OptionError(self.name, "sample_rate", "the model's rate in Hz (22050 for CosyVoice-300M, "
                              "24000 for CosyVoice2 and 3)", repr(rate))
        self.sample_rate: int = rate
        self.model = str(self.options.get("model", ""))
        self.policy = RetryPolicy.from_options(self.options, timeout=120.0, engine=self.name)

    def identity(self) -> dict[str, Any]:
        options: dict[str, Any] = {"mode": self.mode, "sample_rate": self.sample_rate}
        if self.model:
            options["model"] = self.model
        return {"name": self.name, "version": self.version, "options": options}

    @staticmethod
    def source_files(voice: Mapping[str, Any] | str | None) -> list[str]:
        """The drama-relative files a voice needs (its prompt WAV): hashed into the line's key and
        passed to speak() as `sources`, keyed by this same path.

        Takes the voice's `cosyvoice` entry ("中文女" or a table) or the whole voice table.
        """
        entry = voice.get("cosyvoice", voice) if isinstance(voice, Mapping) else voice
        if isinstance(entry, Mapping) and isinstance(entry.get("prompt_wav"), str):
            return [entry["prompt_wav"]]
        return []

    # ── one sentence ─────────────────────────────────────────────────────────

    def speak(self, text: str, voice: dict[str, Any], language: str, out_wav: Path,
              sources: dict[str, Path]) -> None:
        settings = self.voice_settings(voice, language)
        if not spoken_characters(text):
            silence(PAUSE_SECONDS, self.sample_rate).write(out_wav)
            return
        fields, files = self.form(settings, text, sources)
        body, content_type = encode_multipart(fields, files)
        url = self.url + ENDPOINTS[settings.mode]

        def attempt() -> Audio:
            # The server streams headerless 16-bit PCM: what can be checked is that it says it is
            # audio, ends on a whole sample, lasts long enough for the text and sounds like sound.
            # (A body shorter than its Content-Length, or a chunked stream cut off, fails in post().)
            reply = post(url, body, {"Content-Type": content_type}, self.policy.timeout)
            check_audio_type(reply)
            self._check_announced_rate(reply.headers)
            if len(reply.body) % 2:
                raise TransientError(f"the audio stream ends mid-sample ({len(reply.body)} bytes)")
            audio = Audio(self.sample_rate, reply.body)
            check_speech(audio, text, 1.0)
            return audio

        try:
            audio = with_retries(attempt, self.policy.retries, self.policy.backoff)
        except (TransientError, PermanentError) as error:
            raise EngineError(self._failure(error, text, settings)) from None
        speed = float(voice.get("speed", 1.0))
        if speed == 1.0:
            audio.write(out_wav)
        else:
            # The FastAPI server takes no speed; a pitch-keeping time stretch does it here.
            raw = out_wav.with_name(out_wav.stem + ".server.wav")
            audio.write(raw)
            change_tempo(raw, out_wav, speed)
            raw.unlink()

    def voice_settings(self, voice: Mapping[str, Any], language: str) -> CosyVoiceVoice:
        """The voice's `cosyvoice` entry, checked against the mode it runs in."""
        entry = voice.get(self.name)
        if entry is None:
            entry = {}
        elif isinstance(entry, str):
            entry = {"spk_id": entry}
        elif not isinstance(entry, Mapping):
            raise EngineError(f"a voice's cosyvoice entry must be a speaker name or a table, got {entry!r}")
        unknown = sorted(set(entry) - VOICE_KEYS)
        if unknown:
            raise EngineError(f"a voice's cosyvoice table has unknown key(s) {', '.join(unknown)} "
                              f"(known: {', '.join(sorted(VOICE_KEYS))})")
        mode = _check_mode(entry.get("mode", self.mode), "a voice's cosyvoice mode", EngineError)
        settings = CosyVoiceVoice(mode=mode, **{k: str(v) for k, v in entry.items() if k != "mode"})
        if mode == "sft":
            if not entry:
                speaker = DEFAULT_SPEAKERS.get(language, DEFAULT_SPEAKERS["zh"])
                return CosyVoiceVoice(mode="sft", spk_id=speaker)
            if not settings.spk_id:
                # A table with a prompt but no speaker was written for another mode: say so rather
                # than speak it with a stock voice.
                raise EngineError('CosyVoice mode sft needs a speaker name (cosyvoice = "中文女"); '
                                  'this voice has a table without spk_id: set mode = "zero_shot" or '
                                  "\"instruct2\" in the profile or in the voice's cosyvoice table")
            return settings
        needs = ("prompt_wav", "prompt_text") if mode == "zero_shot" else ("prompt_wav", "instruct_text")
        missing = [key for key in needs if not getattr(settings, key)]
        if missing:
            example = ('{ prompt_wav = "refs/voice.wav", prompt_text = "what the recording says" }'
                       if mode == "zero_shot" else
                       '{ prompt_wav = "refs/voice.wav", instruct_text = "用四川话说这句话" }')
            where = ("the voice" if entry else
                     "the voice, and this speaker's voice has no cosyvoice entry (a narrator or character "
                     "without a voice has none either; CosyVoice2 and 3 have no stock speakers)")
            raise EngineError(f"CosyVoice mode {mode} needs {' and '.join(missing)} in {where}: "
                              f"cosyvoice = {example}")
        return settings

    def form(self, settings: CosyVoiceVoice, text: str,
             sources: Mapping[str, Path]) -> tuple[dict[str, str], dict[str, FilePart]]:
        """The form fields and file of one request, named as the server's endpoint declares them."""
        if settings.mode == "sft":
            return {"tts_text": text, "spk_id": settings.spk_id}, {}
        recording = read_prompt(settings.prompt_wav, sources)
        prompt = {"prompt_wav": FilePart(Path(settings.prompt_wav).name, recording)}
        if settings.mode == "zero_shot":
            return {"tts_text": text, "prompt_text": settings.prompt_text}, prompt
        instruct = settings.instruct_text
        if END_OF_PROMPT not in instruct:
            instruct += END_OF_PROMPT
        return {"tts_text": text, "instruct_text": instruct}, prompt

    def _check_announced_rate(self, headers: Mapping[str, str]) -> None:
        # Older versions of server.py announced the model's rate in this header; newer ones don't.
        announced = headers.get("x-custom-header-samplerate")
        if announced and announced.strip().isdigit() and int(announced) != self.sample_rate:
            raise PermanentError(f"the server's model speaks at {int(announced)} Hz but the profile says "
                                 f"sample_rate = {self.sample_rate}; set sample_rate = {int(announced)}")

    def _failure(self, error: Exception, text: str, settings: CosyVoiceVoice) -> str:
        what = f"speaker {settings.spk_id!r}" if settings.mode == "sft" else f"prompt {settings.prompt_wav}"
        message = (f"the CosyVoice server at {self.url} gave no usable audio for {_quote(text)} "
                   f"({settings.mode}, {what}): {error}")
        status = getattr(error, "status", None)
        if "connection refused" in str(error):
            message += ("; start it in CosyVoice's own environment: python "
                        "runtime/python/fastapi/server.py --port 50000 --model_dir "
                        "pretrained_models/CosyVoice2-0.5B, or set url in the profile")
        elif status in (404, 405):
            message += (f"; is this CosyVoice's FastAPI server (runtime/python/fastapi/server.py)? "
                        f"It should answer {ENDPOINTS[settings.mode]}")
        elif isinstance(error, TransientError) and error.kind == "timeout":
            message += (f"; a slow server may need a longer timeout in the profile's voice options "
                        f"(now {self.policy.timeout:g} s)")
        elif settings.mode == "sft" and isinstance(error, TransientError):
            message += (f"; if it keeps failing, check that the server runs an SFT model that knows "
                        f"{settings.spk_id!r} (CosyVoice-300M-SFT: {SFT_SPEAKERS})")
        return mask(message, request_secrets(self.url, {}))  # a password in the URL


def _check_mode(mode: object, where: str, error: type[Exception]) -> str:
    if mode not in ENDPOINTS:
        raise error(f"{where} must be one of {', '.join(ENDPOINTS)}, not {mode!r}")
    return str(mode)


def _quote(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")


def read_prompt(path: str, sources: Mapping[str, Path]) -> bytes:
    """The prompt recording's bytes, checked against what CosyVoice accepts when it is a PCM WAV."""
    file = sources.get(path)
    if file is None:
        raise EngineError(f"the CosyVoice prompt {path} was not passed to the engine "
                          f"(sources: {', '.join(sorted(sources)) or 'none'})")
    data = Path(file).read_bytes()
    try:
        with wave.open(str(file), "rb") as recording:
            rate, frames = recording.getframerate(), recording.getnframes()
    except (wave.Error, EOFError):
        return data  # not a PCM WAV (FLAC, MP3, float WAV): the server's soundfile reads it
    if rate < PROMPT_MIN_RATE:
        raise EngineError(f"the CosyVoice prompt {path} is sampled at {rate} Hz; CosyVoice needs "
                          f"{PROMPT_MIN_RATE} Hz or more (re-record it, or convert with "
                          f"ffmpeg -i {path} -ar 16000 out.wav — upsampling adds no detail)")
    if frames / rate > PROMPT_MAX_SECONDS:
        raise EngineError(f"the CosyVoice prompt {path} lasts {frames / rate:.1f} s; CosyVoice takes at most "
                          f"{PROMPT_MAX_SECONDS:g} s (3 to 10 s of clean speech works best)")
    return data


def change_tempo(source: Path, out: Path, speed: float) -> None:
    """Time-stretch a mono 16-bit WAV by `speed` keeping its pitch, rate and format."""
    factors: list[float] = []
    remaining = speed
    while remaining < 0.5:  # atempo takes 0.5..100 per filter; chain for slower
        factors.append(0.5)
        remaining /= 0.5
    factors.append(remaining)
    chain = ",".join(f"atempo={factor:.6g}" for factor in factors)
    run_ffmpeg(["-i", str(source), "-af", chain, "-map_metadata", "-1", "-fflags", "+bitexact",
                "-flags:a", "+bitexact", "-c:a", "pcm_s16le", "-ac", "1", str(out)],
               f"changing the speed of {source.name} to {speed:g}")
