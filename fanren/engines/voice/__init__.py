"""Voice engines. Each implements `speak()` for one sentence; the line node is built here.

Synthesising sentence by sentence gives each subtitle cue the exact start of its speech (no
alignment guesswork): cues.json records where every sentence starts and ends in speech.wav.
"""

from __future__ import annotations

import json
import wave
from pathlib import Path
from typing import Any

from ..base import Engine, Request

SENTENCE_GAP = 0.12  # seconds of silence between sentences of one line


class SpeechEngine(Engine):
    family = "voice"
    kinds = frozenset({"line"})

    @staticmethod
    def source_files(voice: Any) -> list[str]:
        """Drama-relative files this engine reads for a voice entry (hashed into the line's key)."""
        return []

    def speak(self, text: str, voice: dict[str, Any], language: str, out_wav: Path,
              sources: dict[str, Path]) -> None:
        """Write one sentence as a mono 16-bit PCM WAV to out_wav."""
        raise NotImplementedError

    def run(self, request: Request) -> dict[str, Path]:
        params = request.params
        pieces: list[Path] = []
        sentences: list[str] = list(params["sentences"]) or [params["text"]]
        for i, sentence in enumerate(sentences):
            piece = request.out_dir / f"sentence-{i:03d}.wav"
            self.speak(sentence, dict(params["voice"]), params["language"], piece, dict(request.sources))
            pieces.append(piece)
            request.progress((i + 1) / len(sentences), sentence)
        speech = request.out_dir / "speech.wav"
        cues = join_wavs(pieces, sentences, speech, SENTENCE_GAP)
        for piece in pieces:
            piece.unlink()
        cues_file = request.out_dir / "cues.json"
        cues_file.write_text(json.dumps(cues, ensure_ascii=False, indent=1), encoding="utf-8")
        return {"speech.wav": speech, "cues.json": cues_file}


def join_wavs(pieces: list[Path], texts: list[str], out: Path, gap: float) -> list[dict[str, Any]]:
    """Concatenate mono PCM WAVs (same rate and width) with `gap` seconds of silence between them.

    Returns one cue per piece: {text, start, end} in seconds into `out`.
    """
    cues: list[dict[str, Any]] = []
    params = None
    frames: list[bytes] = []
    position = 0  # in samples
    for i, (piece, text) in enumerate(zip(pieces, texts, strict=True)):
        with wave.open(str(piece), "rb") as w:
            if params is None:
                params = w.getparams()
            elif (w.getframerate(), w.getsampwidth(), w.getnchannels()) != (
                    params.framerate, params.sampwidth, params.nchannels):
                raise ValueError(f"{piece.name}: sample format differs from the first sentence")
            data = w.readframes(w.getnframes())
        assert params is not None
        if i > 0:
            silence = int(gap * params.framerate)
            frames.append(b"\x00" * silence * params.sampwidth * params.nchannels)
            position += silence
        n = len(data) // (params.sampwidth * params.nchannels)
        cues.append({"text": text, "start": round(position / params.framerate, 4),
                     "end": round((position + n) / params.framerate, 4)})
        frames.append(data)
        position += n
    assert params is not None
    with wave.open(str(out), "wb") as w:
        w.setnchannels(params.nchannels)
        w.setsampwidth(params.sampwidth)
        w.setframerate(params.framerate)
        w.writeframes(b"".join(frames))
    return cues
