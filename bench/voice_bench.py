#!/usr/bin/env python3
"""Voice engines' time per line, and what a viewer gets from the example drama.

    .venv/bin/python bench/voice_bench.py                      # everything below
    .venv/bin/python bench/voice_bench.py --engines espeak     # one engine, no example build
    .venv/bin/python bench/voice_bench.py --engines --example  # only the example's measures

Prints one JSON object per line:

- `voice`: seconds per line of a line node (`engine.run`: every sentence synthesised, joined into
  speech.wav with its cues), 20 lines of 1 to 3 sentences per language, after one warm-up line.
  espeak-ng is the real engine on this machine's CPU. cosyvoice and openai speak to the local
  protocol servers of tests/speech_servers.py, whose fake voice is a sine computed once per
  sentence and then served from memory: their numbers are the client's overhead (HTTP round trip,
  PCM/WAV handling, joining), not the time of a model, which a real server adds on top.
- `viewer`: examples/xianxia copied to a temp folder and built with the draft profile, then
  measured as tests/test_viewer.py measures its drama (tests/viewer.py): each cue start against
  the speech onset silence detection finds in the episode's audio, the shortest cue, the most rows,
  loudness and true peak (ebur128), and sentences missing from the SRT.
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))  # the protocol servers and the viewer's measures live there

import speech_servers
from speech_servers import CosyVoiceServer, OpenAISpeechServer
from viewer import spoken_sentences, view

from fanren.engines import Engine, Request, engine_class
from fanren.text import sentences

LINES = {
    "zh": [
        "山门在雾中。", "长老拦住了她。你为何而来？", "他点了点头，转身走进大殿。",
        "三十年前熄灭的那一盏灯，今夜自己亮了。", "守灯弟子认得灯下的名字。", "死人的灯……",
        "雪里坐着一个人，白衣破碎，满身是霜。", "好。我们走。", "剑冢里的断剑，一柄接一柄，从雪里站了起来。",
        "同一时刻，命灯殿中，那盏灯猛地一暗。", "你是谁？", "我等了三十年。今夜终于有人来了。",
        "她来不及多想，扑过去攥住那枚青铜钉。", "风停了。", "钟声从山下传来，一声，又一声。",
        "你不该来这里。回去吧。", "灯火照着她的脸。她没有哭。", "师父说过，命灯灭了，人就死了。",
        "可他还活着。", "天亮了。山门外的雾，慢慢散开。",
    ],
    "en": [
        "The gate stood in the mist.", "The elder blocked her way. Why are you here?",
        "He nodded and walked into the hall.", "The lamp that went out thirty years ago lit itself tonight.",
        "She knew the name under the lamp.", "A dead man's lamp.",
        "A man sat in the snow, his white robe torn, frost all over him.", "Fine. Let's go.",
        "One after another, the broken swords rose out of the snow.",
        "At that moment, in the hall of lamps, one flame dimmed.", "Who are you?",
        "I have waited thirty years. Tonight someone finally came.",
        "Without thinking, she grabbed the bronze nail.", "The wind stopped.",
        "A bell rang below the mountain, once, and again.", "You should not be here. Go back.",
        "The lamplight lit her face. She did not cry.", "Master said a dead lamp means a dead man.",
        "But he is still alive.", "Dawn came. The mist outside the gate slowly cleared.",
    ],
}
VOICES = {"espeak": {}, "cosyvoice": {"zh": "中文女", "en": "英文女"}, "openai": {"zh": "coral", "en": "coral"}}
CLIENT_ONLY = ("client overhead only: a local protocol server (tests/speech_servers.py) serving "
               "precomputed audio, no model")


# The fake servers build their audio sample by sample in Python (a sine, then a WAV around it):
# computed once per text, so that what is timed is the client's side of the exchange.
speech_servers.encode_wav = functools.cache(speech_servers.encode_wav)


class CachedCosyVoiceServer(CosyVoiceServer):
    """The CosyVoice protocol server with its fake audio computed once per text."""

    def __init__(self, sample_rate: int) -> None:
        super().__init__(sample_rate=sample_rate)
        self.audio: dict[str, bytes] = {}

    def pcm_for(self, text: str) -> bytes:
        if text not in self.audio:
            self.audio[text] = super().pcm_for(text)
        return self.audio[text]


class CachedOpenAISpeechServer(OpenAISpeechServer):
    """The OpenAI speech protocol server with its fake audio computed once per text and speed."""

    def __init__(self) -> None:
        super().__init__()
        self.audio: dict[tuple[str, float], bytes] = {}

    def pcm_for(self, text: str, speed: float = 1.0) -> bytes:
        if (text, speed) not in self.audio:
            self.audio[text, speed] = super().pcm_for(text, speed)
        return self.audio[text, speed]


@contextmanager
def engine_for(name: str) -> Iterator[Engine]:
    """The engine, pointed at a local protocol server when it speaks to one."""
    if name == "espeak":
        yield engine_class("espeak")()
    elif name == "cosyvoice":
        with CachedCosyVoiceServer(sample_rate=22050) as server:
            yield engine_class("cosyvoice")({"url": server.url, "mode": "sft", "sample_rate": 22050})
    elif name == "openai":
        with CachedOpenAISpeechServer() as server:
            yield engine_class("openai")({"base_url": server.base_url, "model": "tts-1"})
    else:
        raise SystemExit(f"unknown engine {name!r}: espeak, cosyvoice or openai")


def line_request(text: str, language: str, engine: str, out_dir: Path, n: int) -> Request:
    voice: dict[str, Any] = {"speed": 1.0}
    if VOICES[engine]:
        voice[engine] = VOICES[engine][language]
    folder = out_dir / f"line-{n:03d}"
    folder.mkdir()
    return Request(node_id=f"line:bench:{n}", kind="line", out_dir=folder, inputs={},
                   params={"text": text, "sentences": sentences(text), "speaker": "narrator",
                           "voice": voice, "language": language})


def wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / w.getframerate()


def bench_voice(name: str, language: str) -> dict[str, Any]:
    lines = LINES[language]
    with engine_for(name) as engine, tempfile.TemporaryDirectory() as tmp:
        engine.load()
        # a first pass warms what a long build has warm: caches, connections, the servers' fake audio
        for folder in ("warm", "timed"):
            (Path(tmp) / folder).mkdir()
            times: list[float] = []
            audio: list[float] = []
            for n, text in enumerate(lines):
                request = line_request(text, language, name, Path(tmp) / folder, n)
                start = time.perf_counter()
                outputs = engine.run(request)
                times.append(time.perf_counter() - start)
                audio.append(wav_seconds(outputs["speech.wav"]))
        engine.unload()
    count = sum(len(sentences(text)) for text in lines)
    result: dict[str, Any] = {
        "bench": "voice", "engine": name, "language": language, "lines": len(lines), "sentences": count,
        "seconds_per_line": round(statistics.mean(times), 4),
        "seconds_per_line_median": round(statistics.median(times), 4),
        "seconds_per_sentence": round(sum(times) / count, 4),
        "audio_seconds_per_line": round(statistics.mean(audio), 3),
        "real_time_factor": round(sum(times) / sum(audio), 4),
    }
    if name != "espeak":
        result["note"] = CLIENT_ONLY
    return result


def bench_example(drama: Path) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / drama.name
        shutil.copytree(drama, copy, ignore=shutil.ignore_patterns(".fanren-cache", "out", "drama.lock"))
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "fanren", "build", str(copy)], check=False,
                              capture_output=True, text=True)
        seconds = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"building {drama} failed:\n{proc.stderr[-2000:]}")
        viewing = view(copy / "out" / "draft", spoken_sentences(copy))
    return {"bench": "viewer", "drama": str(drama.relative_to(REPO)), "profile": "draft",
            "build_seconds": round(seconds, 1), **viewing.summary(),
            "offsets_ms": [round(o * 1000) for o in viewing.offsets]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engines", nargs="*", default=["espeak", "cosyvoice", "openai"])
    parser.add_argument("--languages", nargs="*", default=["zh", "en"])
    parser.add_argument("--example", action="store_true",
                        help="measure the example drama (on by default when --engines is not given)")
    parser.add_argument("--drama", type=Path, default=REPO / "examples" / "xianxia")
    args = parser.parse_args()
    for engine in args.engines:
        for language in args.languages:
            print(json.dumps(bench_voice(engine, language), ensure_ascii=False), flush=True)
    if args.example or "--engines" not in sys.argv:
        print(json.dumps(bench_example(args.drama.resolve()), ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
