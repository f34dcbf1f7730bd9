"""What a viewer of an episode notices, measured on the files a build wrote.

Subtitle timing against the speech heard (onsets found by ffmpeg's silencedetect in the
episode's own audio), the subtitles' text, loudness (ffmpeg's ebur128), and the level of a
pure tone (the test music) in any stretch of the audio. Shared by tests/test_viewer.py and
bench/voice_bench.py, which runs it on the example drama.
"""

from __future__ import annotations

import array
import math
import re
import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path

SRT_BLOCK = re.compile(r"(\d+)\n(\d\d):(\d\d):(\d\d),(\d{3}) --> (\d\d):(\d\d):(\d\d),(\d{3})\n((?:.+\n?)+)")
# silencedetect: quieter than this is silence. espeak-ng's quietest consonants measure about -45 dBFS
# at the episode's loudness, AAC-decoded digital silence below -90.
SILENCE_DB = -50
# a speech burst starts after at least this much silence (sentences are 0.12 s apart)
SILENCE_SECONDS = 0.1


@dataclass(frozen=True)
class SrtCue:
    start: float
    end: float
    rows: list[str]

    @property
    def text(self) -> str:
        return "".join(self.rows) if not self.rows[0].isascii() else " ".join(self.rows)


def parse_srt(text: str) -> list[SrtCue]:
    cues = []
    for block in SRT_BLOCK.finditer(text):
        h1, m1, s1, ms1, h2, m2, s2, ms2 = (int(g) for g in block.groups()[1:9])
        cues.append(SrtCue(h1 * 3600 + m1 * 60 + s1 + ms1 / 1000, h2 * 3600 + m2 * 60 + s2 + ms2 / 1000,
                           block.group(10).strip("\n").split("\n")))
    return cues


def ffmpeg_log(*args: str) -> str:
    return subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", *args], capture_output=True, text=True,
                          check=True).stderr


# ── speech ───────────────────────────────────────────────────────────────────


def speech_bursts(media: Path, noise_db: float = SILENCE_DB,
                  min_silence: float = SILENCE_SECONDS) -> list[tuple[float, float]]:
    """(start, end) of every stretch of sound between silences, in seconds, from silencedetect."""
    log = ffmpeg_log("-i", str(media), "-map", "0:a", "-af",
                     f"silencedetect=noise={noise_db}dB:d={min_silence}", "-f", "null", "-")
    duration = audio_seconds(media)
    bursts: list[tuple[float, float]] = []
    sound_from: float | None = 0.0
    for kind, at in re.findall(r"silence_(start|end): (-?[\d.]+)", log):
        if kind == "start":
            if sound_from is not None and float(at) > sound_from:
                bursts.append((sound_from, float(at)))
            sound_from = None
        else:
            sound_from = float(at)
    if sound_from is not None and duration - sound_from > 0.01:  # at the end it reports a last silence_end
        bursts.append((sound_from, duration))
    return bursts


def audio_seconds(media: Path) -> float:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries",
                          "stream=duration", "-of", "csv=p=0", str(media)],
                         capture_output=True, text=True, check=True).stdout
    return float(out.strip())


def cue_offsets(cues: list[SrtCue], bursts: list[tuple[float, float]]) -> list[float]:
    """For each cue, seconds from its start to the nearest start of speech (positive: speech later)."""
    onsets = [start for start, _ in bursts]
    return [min((onset - cue.start for onset in onsets), key=abs) for cue in cues]


def in_order(sentences: list[str], cues: list[SrtCue]) -> list[str]:
    """The sentences not found in the cues' text in the given order (whitespace ignored)."""
    shown = "".join("".join(cue.rows) for cue in cues)
    shown = "".join(shown.split())
    missing: list[str] = []
    at = 0
    for sentence in sentences:
        wanted = "".join(sentence.split())
        found = shown.find(wanted, at)
        if found < 0:
            missing.append(sentence)
        else:
            at = found + len(wanted)
    return missing


# ── loudness ─────────────────────────────────────────────────────────────────


def loudness(media: Path) -> tuple[float, float]:
    """Integrated loudness (LUFS) and true peak (dBTP) from ffmpeg's ebur128 with peak=true."""
    log = ffmpeg_log("-i", str(media), "-map", "0:a", "-af", "ebur128=peak=true:framelog=verbose",
                     "-f", "null", "-")
    summary = log[log.rindex("Summary:"):]
    integrated = re.search(r"I:\s+(-?[\d.]+) LUFS", summary)
    peak = re.search(r"Peak:\s+(-?(?:[\d.]+|inf)) dBFS", summary)
    assert integrated is not None and peak is not None, summary
    return float(integrated.group(1)), float(peak.group(1))


# ── tones ────────────────────────────────────────────────────────────────────

TONE_RATE = 2000  # samples a second kept for tone measurements: the test music is below 100 Hz


def mono_samples(media: Path, rate: int = TONE_RATE) -> array.array[float]:
    """The audio mixed to mono at `rate`, as floats in [-1, 1]."""
    raw = subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", str(media), "-map", "0:a",
                          "-ac", "1", "-ar", str(rate), "-f", "f32le", "-"],
                         capture_output=True, check=True).stdout
    return array.array("f", raw)


def tone_db(samples: array.array[float], frequency: float, start: float, end: float,
            rate: int = TONE_RATE) -> float:
    """Level (dBFS of its amplitude) of the sine at `frequency` between start and end seconds.

    One bin of a Hann-windowed DFT: speech, whose energy lies above its pitch (100 Hz and up for
    espeak-ng), barely reaches a tone at 40 or 55 Hz in it (measured: below -60 dBFS).
    """
    window = samples[round(start * rate):round(end * rate)]
    n = len(window)
    if n < 2:
        raise ValueError(f"no samples between {start} and {end} s")
    real = imag = 0.0
    step = 2 * math.pi * frequency / rate
    for i, value in enumerate(window):
        weighted = value * (0.5 - 0.5 * math.cos(2 * math.pi * i / (n - 1)))
        real += weighted * math.cos(step * i)
        imag -= weighted * math.sin(step * i)
    amplitude = 2 * math.hypot(real, imag) / (n / 2)  # a Hann window sums to n/2
    return 20 * math.log10(max(amplitude, 1e-9))


# ── one episode ──────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class Viewing:
    """What a viewer of one built episode gets, measured."""

    cues: list[SrtCue]
    offsets: list[float]        # per cue: speech onset minus cue start, seconds
    integrated: float           # LUFS
    true_peak: float            # dBTP
    missing: list[str]          # sentences not in the SRT in order

    @property
    def offset_median(self) -> float:
        return statistics.median(abs(o) for o in self.offsets)

    @property
    def offset_worst(self) -> float:
        return max(abs(o) for o in self.offsets)

    @property
    def shortest_cue(self) -> float:
        return round(min(cue.end - cue.start for cue in self.cues), 3)  # the SRT counts in ms

    @property
    def most_rows(self) -> int:
        return max(len(cue.rows) for cue in self.cues)

    def summary(self) -> dict[str, float | int]:
        return {"cues": len(self.cues), "offset_median_s": round(self.offset_median, 3),
                "offset_worst_s": round(self.offset_worst, 3), "shortest_cue_s": round(self.shortest_cue, 3),
                "most_rows": self.most_rows, "integrated_lufs": self.integrated,
                "true_peak_dbtp": self.true_peak, "missing_sentences": len(self.missing)}


def view(out: Path, sentences: list[str]) -> Viewing:
    """Measure out/<profile>/ of a built drama (no music in it: the onsets come from silence)."""
    episode = out / "episode.mp4"
    cues = parse_srt((out / "episode.srt").read_text(encoding="utf-8"))
    integrated, true_peak = loudness(episode)
    return Viewing(cues=cues, offsets=cue_offsets(cues, speech_bursts(episode)), integrated=integrated,
                   true_peak=true_peak, missing=in_order(sentences, cues))


def spoken_sentences(drama: Path) -> list[str]:
    """Every sentence of the drama's narration and lines, in the order they are spoken."""
    from fanren.project import load_project
    from fanren.text import sentences

    project = load_project(drama)
    texts = [text for _, shot in project.shots()
             for text in ([shot.narration] if shot.narration.strip() else []) + [line.text for line in shot.lines]]
    return [sentence for text in texts for sentence in sentences(text)]
