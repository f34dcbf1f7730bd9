"""The espeak engine: real espeak-ng, real WAV bytes, cues checked against the audio."""

from __future__ import annotations

import json
import re
import wave
from pathlib import Path
from typing import Any

import pytest

from fanren.engines.base import Request
from fanren.engines.voice import SENTENCE_GAP
from fanren.engines.voice.espeak import EspeakEngine, check_wav, espeak_ng
from fanren.errors import EngineError
from fanren.media import wav_duration

ZH_SENTENCES = ["韩立走进山洞。", "他看见一只发光的小绿瓶！"]


def line_request(out_dir: Path, sentences: list[str], language: str = "zh",
                 voice: dict[str, Any] | None = None) -> Request:
    out_dir.mkdir(parents=True, exist_ok=True)
    params = {"text": "".join(sentences), "sentences": sentences, "speaker": "narrator",
              "voice": voice if voice is not None else {"speed": 1.0}, "language": language}
    return Request(node_id="line:s1-2:0", kind="line", params=params, inputs={}, out_dir=out_dir)


def speak(request: Request) -> tuple[Path, list[dict[str, Any]]]:
    outputs = EspeakEngine().run(request)
    assert set(outputs) == {"speech.wav", "cues.json"}
    assert sorted(p.name for p in request.out_dir.iterdir()) == ["cues.json", "speech.wav"]
    return outputs["speech.wav"], json.loads(outputs["cues.json"].read_text(encoding="utf-8"))


def test_a_chinese_line_of_two_sentences(tmp_path: Path) -> None:
    wav, cues = speak(line_request(tmp_path, ZH_SENTENCES))
    duration = wav_duration(wav)
    assert duration > 0.5
    with wave.open(str(wav), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth()) == (1, 2)
    assert [cue["text"] for cue in cues] == ZH_SENTENCES
    assert cues[0]["start"] == 0
    assert cues[0]["start"] < cues[0]["end"] < cues[1]["start"] < cues[1]["end"]
    assert cues[1]["start"] - cues[0]["end"] == pytest.approx(SENTENCE_GAP, abs=0.001)
    assert cues[-1]["end"] == pytest.approx(duration, abs=0.01)


def test_mandarin_is_spoken_by_the_pinyin_voice_not_read_as_english(tmp_path: Path) -> None:
    default, _ = speak(line_request(tmp_path / "default", ["韩立"]))
    pinyin, _ = speak(line_request(tmp_path / "pinyin", ["韩立"], voice={"espeak": "cmn-latn-pinyin"}))
    english_reading, _ = speak(line_request(tmp_path / "cmn", ["韩立"], voice={"espeak": "cmn"}))
    assert default.read_bytes() == pinyin.read_bytes()
    assert default.read_bytes() != english_reading.read_bytes()


def test_speed_shortens_the_speech(tmp_path: Path) -> None:
    normal, _ = speak(line_request(tmp_path / "normal", ZH_SENTENCES, voice={"speed": 1.0}))
    fast, _ = speak(line_request(tmp_path / "fast", ZH_SENTENCES, voice={"speed": 1.5}))
    assert wav_duration(fast) < 0.85 * wav_duration(normal)


def test_an_english_line(tmp_path: Path) -> None:
    sentences = ["Han Li walks into the cave.", "A small green bottle glows in the dark."]
    wav, cues = speak(line_request(tmp_path / "default", sentences, language="en"))
    assert wav_duration(wav) > 1.0
    assert [cue["text"] for cue in cues] == sentences
    assert cues[-1]["end"] == pytest.approx(wav_duration(wav), abs=0.01)
    named, _ = speak(line_request(tmp_path / "named", sentences, language="en", voice={"espeak": "en-us"}))
    assert named.read_bytes() == wav.read_bytes()


def test_a_sentence_starting_with_a_dash_is_spoken_not_parsed(tmp_path: Path) -> None:
    wav, cues = speak(line_request(tmp_path, ["-v is not a voice here."], language="en"))
    assert cues[0]["text"] == "-v is not a voice here."
    assert wav_duration(wav) > 0.8


def test_same_request_gives_identical_bytes(tmp_path: Path) -> None:
    first_wav, first_cues = speak(line_request(tmp_path / "a", ZH_SENTENCES))
    second_wav, second_cues = speak(line_request(tmp_path / "b", ZH_SENTENCES))
    assert first_wav.read_bytes() == second_wav.read_bytes()
    assert first_cues == second_cues
    assert (tmp_path / "a" / "cues.json").read_bytes() == (tmp_path / "b" / "cues.json").read_bytes()


# "no-such-voice" would speak Norwegian and "+nosuch" would be dropped if espeak-ng had its way.
@pytest.mark.parametrize("name", ["nosuch", "no-such-voice", "en-us+nosuch"])
def test_an_unknown_voice_names_the_way_to_list_voices(tmp_path: Path, name: str) -> None:
    request = line_request(tmp_path, ZH_SENTENCES, voice={"espeak": name})
    with pytest.raises(EngineError, match=rf"no voice named '{re.escape(name)}'.*espeak-ng --voices"):
        EspeakEngine().run(request)
    assert not (tmp_path / "speech.wav").exists()


@pytest.mark.parametrize("name", ["zh", "sit/cmn-Latn-pinyin", "cmn-latn-pinyin+f3"])
def test_every_way_espeak_ng_names_a_voice_is_accepted(tmp_path: Path, name: str) -> None:
    wav, _ = speak(line_request(tmp_path, ["你好。"], voice={"espeak": name}))
    assert wav_duration(wav) > 0.2


def test_a_language_without_a_default_voice(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="no default voice for language 'fr'"):
        EspeakEngine().run(line_request(tmp_path, ["Bonjour."], language="fr"))


def test_identity_holds_the_espeak_ng_version() -> None:
    identity = EspeakEngine().identity()
    assert identity["name"] == "espeak"
    assert re.fullmatch(r"\d+\.\d+[\w.+~-]*", identity["espeak_ng"])


def test_a_missing_espeak_ng_names_the_debian_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    espeak_ng.cache_clear()
    try:
        with pytest.raises(EngineError, match="install the Debian package 'espeak-ng'"):
            EspeakEngine().run(line_request(tmp_path / "out", ZH_SENTENCES))
    finally:
        espeak_ng.cache_clear()


def test_an_empty_or_broken_wav_is_an_engine_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.wav"
    with wave.open(str(empty), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(22050)
        w.writeframes(b"")
    with pytest.raises(EngineError, match="0 frames"):
        check_wav(empty, "韩立")
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF not really a wave file")
    with pytest.raises(EngineError, match="no readable WAV"):
        check_wav(broken, "韩立")
    with pytest.raises(EngineError, match="no readable WAV"):
        check_wav(tmp_path / "missing.wav", "韩立")
