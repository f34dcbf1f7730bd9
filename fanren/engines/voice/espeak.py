"""`espeak`: the embedded voice engine. espeak-ng speaks Mandarin and English with no weights.

Robotic, but instant and deterministic: enough to time a draft cut and hear who says what.
"""

from __future__ import annotations

import functools
import re
import subprocess
import wave
from pathlib import Path
from typing import Any

from ...errors import EngineError
from ...media import require
from . import SpeechEngine

# Debian's plain "cmn" voice reads Hanzi with English phonemes; cmn-latn-pinyin speaks Mandarin.
DEFAULT_VOICES = {"zh": "cmn-latn-pinyin", "en": "en-us"}

# espeak-ng's default rate. Mandarin is not given a slower base: at 175 wpm cmn-latn-pinyin already
# speaks ~3.9 syllables/s (measured on a 25-syllable line), below natural Mandarin's 4-5; 160 drags.
BASE_WPM = 175
WPM_RANGE = (80, 450)  # what espeak-ng accepts for -s

VOICE_LIST_HINT = "see the installed voices with `espeak-ng --voices` (or `espeak-ng --voices=zh`)"


@functools.cache
def espeak_ng() -> str:
    return require("espeak-ng", "espeak-ng")


@functools.cache
def espeak_version() -> str:
    """'1.51' from 'eSpeak NG text-to-speech: 1.51  Data at: …' (the data path is not part of it)."""
    proc = subprocess.run([espeak_ng(), "--version"], check=False, capture_output=True, text=True)
    match = re.search(r"text-to-speech:\s*(\S+)", proc.stdout)
    if proc.returncode != 0 or match is None:
        raise EngineError(f"cannot read the espeak-ng version (`espeak-ng --version` said: "
                          f"{(proc.stdout + proc.stderr).strip()[:200]!r})")
    return match.group(1)


@functools.cache
def known_voices() -> frozenset[str]:
    """Every name `-v` accepts for a voice (language codes, voice names, voice files), lower-cased."""
    return frozenset(names_in_listing("--voices"))


@functools.cache
def known_variants() -> frozenset[str]:
    """Every name accepted after '+' in `-v voice+variant`, lower-cased."""
    return frozenset(names_in_listing("--voices=variant"))


def names_in_listing(option: str) -> set[str]:
    """Names from a `espeak-ng --voices` table: Pty Language Age/Gender VoiceName File (Other Languages)."""
    proc = subprocess.run([espeak_ng(), option], check=False, capture_output=True, text=True)
    if proc.returncode != 0:
        raise EngineError(f"`espeak-ng {option}` failed: {proc.stderr.strip()[-300:]}")
    names: set[str] = set()
    for row in proc.stdout.splitlines()[1:]:
        columns = row.split()
        if len(columns) < 5:
            continue
        language, voice, file = columns[1], columns[3], columns[4]
        names.update({language, voice, file, file.rsplit("/", 1)[-1]})
        names.update(re.findall(r"\(([^\s()]+) \d+\)", row))  # "(zh-cmn 5)(zh 5)"
    return {name.lower() for name in names}


def check_voice(name: str) -> None:
    # espeak-ng does not refuse every unknown name: "no-such-voice" speaks Norwegian ("no") and an
    # unknown "+variant" is dropped silently. So names are checked against its own listing.
    base, _, variant = name.partition("+")
    if base.lower() not in known_voices() or (variant and variant.lower() not in known_variants()):
        raise EngineError(f"espeak-ng has no voice named {name!r}; {VOICE_LIST_HINT}"
                          + (" and the variants with `espeak-ng --voices=variant`" if variant else ""))


def voice_name(voice: dict[str, Any], language: str) -> str:
    name = voice.get("espeak")
    if isinstance(name, str) and name:
        return name
    if language not in DEFAULT_VOICES:
        raise EngineError(f"espeak has no default voice for language {language!r}; "
                          f"set `espeak = \"<voice>\"` in the voice's table ({VOICE_LIST_HINT})")
    return DEFAULT_VOICES[language]


def words_per_minute(voice: dict[str, Any]) -> int:
    low, high = WPM_RANGE
    return min(high, max(low, round(BASE_WPM * float(voice.get("speed", 1.0)))))


class EspeakEngine(SpeechEngine):
    name = "espeak"
    options_known = frozenset[str]()  # takes no options
    version = "1"

    def identity(self) -> dict[str, Any]:
        # Another espeak-ng release pronounces differently: other bytes, so another key.
        return {**super().identity(), "espeak_ng": espeak_version()}

    def speak(self, text: str, voice: dict[str, Any], language: str, out_wav: Path,
              sources: dict[str, Path]) -> None:
        name = voice_name(voice, language)
        check_voice(name)
        # -b 1: the text is UTF-8 whatever the locale. -z: no trailing sentence pause, so a cue
        # ends where the speech ends (the line adds its own gap between sentences).
        # `--` keeps a sentence that starts with '-' from being read as an option.
        command = [espeak_ng(), "-b", "1", "-z", "-v", name, "-s", str(words_per_minute(voice)),
                   "-w", str(out_wav), "--", text]
        proc = subprocess.run(command, check=False, capture_output=True, text=True)
        if "voice does not exist" in proc.stderr:
            raise EngineError(f"espeak-ng has no voice named {name!r}; {VOICE_LIST_HINT}")
        if proc.returncode != 0:
            raise EngineError(f"espeak-ng failed (exit {proc.returncode}) speaking {text!r} with voice "
                              f"{name!r}: {proc.stderr.strip()[-300:]}")
        check_wav(out_wav, text)


def check_wav(path: Path, text: str) -> None:
    """A mono 16-bit PCM WAV with at least one sample, or EngineError."""
    try:
        with wave.open(str(path), "rb") as w:
            frames, channels, width = w.getnframes(), w.getnchannels(), w.getsampwidth()
    except (OSError, EOFError, wave.Error) as error:
        raise EngineError(f"espeak-ng wrote no readable WAV for {text!r}: {error}") from error
    if frames == 0 or channels != 1 or width != 2:
        raise EngineError(f"espeak-ng wrote an unusable WAV for {text!r} "
                          f"({frames} frames, {channels} channels, {8 * width}-bit)")
