"""The openai voice engine against a real HTTP server that speaks OpenAI's /v1/audio/speech."""

from __future__ import annotations

import json
import struct
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest
from speech_servers import FAULTS, OpenAISpeechServer, WavShape, closed_port_url

from fanren.engines.base import Request
from fanren.engines.voice import SENTENCE_GAP
from fanren.engines.voice.openai import OpenAISpeechEngine
from fanren.errors import EngineError, OptionError

KEY = "sk-test-0123456789abcdefSECRET"
KEY_ENV = "FANREN_TEST_SPEECH_KEY"
FAST = {"timeout": 0.5, "retries": 3, "backoff": 0.001}


@pytest.fixture
def server() -> Iterator[OpenAISpeechServer]:
    with OpenAISpeechServer(api_key=KEY) as s:
        yield s


@pytest.fixture
def keyed(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, KEY)
    return KEY


def engine(base_url: str, **options: object) -> OpenAISpeechEngine:
    return OpenAISpeechEngine({"base_url": base_url, "model": "tts-1", "api_key_env": KEY_ENV,
                               **FAST, **options})


def read_wav(path: Path) -> tuple[int, int, int, bytes]:
    with wave.open(str(path), "rb") as w:
        return w.getframerate(), w.getsampwidth(), w.getnchannels(), w.readframes(w.getnframes())


def test_posts_the_openai_json_with_the_key_from_the_environment(
        server: OpenAISpeechServer, keyed: str, tmp_path: Path) -> None:
    out = tmp_path / "s.wav"
    engine(server.base_url).speak("He came at last.", {"openai": "nova", "speed": 1.0}, "en", out, {})

    [sent] = server.received
    assert (sent.method, sent.path) == ("POST", "/v1/audio/speech")
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.headers["content-type"] == "application/json"
    assert sent.json == {"model": "tts-1", "input": "He came at last.", "voice": "nova", "speed": 1.0,
                         "response_format": "wav"}


def test_a_streaming_header_becomes_a_proper_wav(
        server: OpenAISpeechServer, keyed: str, tmp_path: Path) -> None:
    out = tmp_path / "s.wav"
    engine(server.base_url).speak("你好。", {"openai": "alloy"}, "zh", out, {})
    data = out.read_bytes()
    expected = server.pcm_for("你好。")
    # A plain 44-byte header whose sizes are the real ones, so every reader agrees on the length.
    assert struct.unpack_from("<I", data, 4)[0] == len(data) - 8
    assert data[36:40] == b"data" and struct.unpack_from("<I", data, 40)[0] == len(expected)
    rate, width, channels, frames = read_wav(out)
    assert (rate, width, channels) == (24000, 2, 1)
    assert frames == expected
    assert len(frames) / 2 / rate == pytest.approx(3 * 0.08, abs=1 / 24000)


@pytest.mark.parametrize("shape", [
    WavShape(channels=2),
    WavShape(bits=8),
    WavShape(bits=24, streaming_header=False),
    WavShape(bits=32),
    WavShape(bits=32, float=True),
    WavShape(bits=64, float=True, channels=2),
    WavShape(bits=16, channels=2, extensible=True, extra_chunk=True, streaming_header=False),
], ids=["stereo16", "u8", "s24", "s32", "f32", "f64-stereo", "extensible-with-chunks"])
def test_any_common_wav_shape_becomes_mono_16_bit(keyed: str, tmp_path: Path, shape: WavShape) -> None:
    with OpenAISpeechServer(sample_rate=22050, api_key=KEY, shape=shape) as server:
        out = tmp_path / "s.wav"
        engine(server.base_url).speak("Shape test.", {"openai": "alloy"}, "en", out, {})
        voice = struct.unpack(f"<{len(server.pcm_for('Shape test.')) // 2}h", server.pcm_for("Shape test."))
    expected = [s / shape.channels for s in voice]  # the server's extra channels are silent
    rate, width, channels, frames = read_wav(out)
    assert (rate, width, channels) == (22050, 2, 1)
    got = struct.unpack(f"<{len(frames) // 2}h", frames)
    assert len(got) == len(expected)
    # 8-bit keeps the top byte of each sample; the others round to within one step.
    tolerance = 256 if shape.bits == 8 else 1
    assert max(abs(a - b) for a, b in zip(got, expected, strict=True)) <= tolerance


def test_voice_table_sends_instructions_and_speed_is_sent(
        server: OpenAISpeechServer, keyed: str, tmp_path: Path) -> None:
    voice = {"openai": {"voice": "coral", "instructions": "Speak like a storyteller."}, "speed": 1.5}
    out = tmp_path / "s.wav"
    engine(server.base_url, model="gpt-4o-mini-tts").speak("Once upon a time.", voice, "en", out, {})
    assert server.received[0].json == {
        "model": "gpt-4o-mini-tts", "input": "Once upon a time.", "voice": "coral", "speed": 1.5,
        "response_format": "wav", "instructions": "Speak like a storyteller."}
    assert read_wav(out)[3] == server.pcm_for("Once upon a time.", speed=1.5)


def test_without_a_key_in_the_environment_no_authorization_is_sent(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    with OpenAISpeechServer() as local:  # a local server that needs no key
        engine(local.base_url).speak("Local.", {}, "en", tmp_path / "s.wav", {})
        assert "authorization" not in local.received[0].headers
        assert local.received[0].json["voice"] == "alloy"


def test_run_speaks_each_sentence_and_times_its_cue(
        server: OpenAISpeechServer, keyed: str, tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    sentences = ["Who is there?", "Only me."]
    request = Request(node_id="line:s1:0", kind="line", out_dir=out_dir, inputs={},
                      params={"text": " ".join(sentences), "sentences": sentences, "speaker": "narrator",
                              "voice": {"openai": "onyx", "speed": 1.0}, "language": "en"})
    outputs = engine(server.base_url).run(request)

    assert [r.json["input"] for r in server.received] == sentences
    first, second = (len(server.pcm_for(s)) // 2 for s in sentences)
    gap = int(SENTENCE_GAP * 24000)
    assert json.loads(outputs["cues.json"].read_text(encoding="utf-8")) == [
        {"text": "Who is there?", "start": 0.0, "end": round(first / 24000, 4)},
        {"text": "Only me.", "start": round((first + gap) / 24000, 4),
         "end": round((first + gap + second) / 24000, 4)},
    ]
    assert read_wav(outputs["speech.wav"])[:3] == (24000, 2, 1)
    assert sorted(p.name for p in out_dir.iterdir()) == ["cues.json", "speech.wav"]


# ── the key stays secret ─────────────────────────────────────────────────────


def test_identity_and_options_hold_no_key(keyed: str) -> None:
    e = engine("http://127.0.0.1:8000/v1/")
    assert e.identity() == {"name": "openai", "version": "1",
                            "options": {"base_url": "http://127.0.0.1:8000/v1", "model": "tts-1",
                                        "response_format": "wav"}}
    assert KEY not in json.dumps(e.identity()) + repr(e.options) + repr(vars(e))


def test_a_refused_key_fails_at_once_without_echoing_it(
        server: OpenAISpeechServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    wrong = "sk-wrong-key-that-must-not-leak"
    monkeypatch.setenv(KEY_ENV, wrong)
    with pytest.raises(EngineError) as error:
        engine(server.base_url).speak("Let me in.", {"openai": "alloy"}, "en", tmp_path / "s.wav", {})
    message = str(error.value)
    assert len(server.received) == 1  # a 401 is not retried
    assert wrong not in message and KEY not in message
    assert message.startswith(f"the speech server at {server.base_url} gave no usable audio for 'Let me in.' "
                              "(model 'tts-1', voice 'alloy'): HTTP 401 Unauthorized: ")
    assert "Incorrect API key provided: ***." in message
    assert message.endswith(f"; check the API key in the environment variable {KEY_ENV}")


def test_an_api_key_option_is_refused_without_repeating_it() -> None:
    with pytest.raises(OptionError) as error:
        OpenAISpeechEngine({"api_key": KEY})
    shown = error.value.problem("drama.toml", "profiles.final.voice").show()
    assert shown == ("drama.toml: profiles.final.voice.api_key: expected no api_key option (a key is a secret: "
                     "drama.toml is committed) (put the key in an environment variable and name that variable "
                     "with api_key_env (default OPENAI_API_KEY))")
    assert KEY not in shown


# ── failures ────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("fault", FAULTS)
def test_each_transient_failure_is_retried_until_the_audio_is_good(
        server: OpenAISpeechServer, keyed: str, tmp_path: Path, fault: str) -> None:
    server.fail_next(fault)
    out = tmp_path / "r.wav"
    engine(server.base_url, timeout=0.3).speak("Try again.", {"openai": "alloy"}, "en", out, {})
    assert len(server.received) == 2
    assert read_wav(out)[3] == server.pcm_for("Try again.")


def test_a_server_that_is_not_running_fails_naming_it_and_the_line(keyed: str, tmp_path: Path) -> None:
    base_url = closed_port_url() + "/v1"
    with pytest.raises(EngineError) as error:
        engine(base_url, retries=1).speak("Anyone?", {"openai": "alloy"}, "en", tmp_path / "s.wav", {})
    assert str(error.value) == (f"the speech server at {base_url} gave no usable audio for 'Anyone?' "
                                "(model 'tts-1', voice 'alloy'): connection refused (is the server running?) "
                                "(2 attempts)")


def test_a_server_that_keeps_failing_gives_up_after_the_retries(
        server: OpenAISpeechServer, keyed: str, tmp_path: Path) -> None:
    server.fail_next("500", "odd", "empty")
    with pytest.raises(EngineError) as error:
        engine(server.base_url, retries=2).speak("No luck.", {"openai": "alloy"}, "en",
                                                 tmp_path / "s.wav", {})
    assert len(server.received) == 3
    assert str(error.value).endswith("the server sent no audio (3 attempts)")
    assert KEY not in str(error.value)


def test_a_reply_that_is_not_wav_is_not_retried(keyed: str, tmp_path: Path) -> None:
    with OpenAISpeechServer(api_key=KEY, answer_mp3=True) as server:
        with pytest.raises(EngineError) as error:
            engine(server.base_url).speak("MP3 please not.", {"openai": "alloy"}, "en",
                                          tmp_path / "s.wav", {})
        assert len(server.received) == 1
    assert ("the reply is not a WAV file (Content-Type 'audio/mpeg', "
            "starts with b'ID3\\x04") in str(error.value)
    assert "does the server support response_format 'wav'?" in str(error.value)


def test_a_wrong_base_url_hints_at_v1(server: OpenAISpeechServer, keyed: str, tmp_path: Path) -> None:
    with pytest.raises(EngineError) as error:
        engine(server.url).speak("Where?", {"openai": "alloy"}, "en", tmp_path / "s.wav", {})
    assert server.received[0].path == "/audio/speech"
    assert str(error.value).endswith("; check base_url (it usually ends in /v1) and the model name")


@pytest.mark.timeout(60)
def test_a_trickling_server_fails_naming_the_server_and_the_timeout(
        server: OpenAISpeechServer, keyed: str, tmp_path: Path) -> None:
    server.fail_next("trickle", "trickle")
    with pytest.raises(EngineError) as error:
        engine(server.base_url, timeout=1, retries=1).speak("Slowly.", {"openai": "alloy"}, "en",
                                                            tmp_path / "s.wav", {})
    assert str(error.value) == (f"the speech server at {server.base_url} gave no usable audio for 'Slowly.' "
                                "(model 'tts-1', voice 'alloy'): no answer within 1 s (2 attempts); a slow server "
                                "may need a longer timeout in the profile's voice options (now 1 s)")
    assert not (tmp_path / "s.wav").exists()


def test_a_wav_of_random_bytes_is_not_taken_for_speech(
        server: OpenAISpeechServer, keyed: str, tmp_path: Path) -> None:
    server.fail_next("noise", "noise")
    with pytest.raises(EngineError) as error:
        engine(server.base_url, retries=1).speak("Static.", {"openai": "alloy"}, "en", tmp_path / "s.wav", {})
    assert "the audio is noise, not speech (RMS 0.58 of full scale" in str(error.value)
    assert str(error.value).endswith("the reply holds random bytes (2 attempts)")


def test_a_wav_shorter_than_its_content_length_is_not_taken_for_speech(
        server: OpenAISpeechServer, keyed: str, tmp_path: Path) -> None:
    server.fail_next("truncated", "truncated")
    with pytest.raises(EngineError) as error:
        engine(server.base_url, retries=1).speak("Cut short.", {"openai": "alloy"}, "en", tmp_path / "s.wav", {})
    assert "the reply broke off after " in str(error.value) and "(2 attempts)" in str(error.value)


def test_a_page_answered_with_200_is_not_audio_and_not_retried(
        server: OpenAISpeechServer, keyed: str, tmp_path: Path) -> None:
    server.fail_next("html")
    with pytest.raises(EngineError) as error:
        engine(server.base_url).speak("Hello.", {"openai": "alloy"}, "en", tmp_path / "s.wav", {})
    assert len(server.received) == 1
    assert "): the server answered text/html, not audio: <html><body><h1>Welcome to nginx!" in str(error.value)


def test_a_password_in_the_base_url_is_masked_too(keyed: str, tmp_path: Path) -> None:
    base_url = closed_port_url().replace("http://", "http://me:url-pass-1234@") + "/v1"
    with pytest.raises(EngineError) as error:
        engine(base_url, retries=0).speak("Anyone?", {"openai": "alloy"}, "en", tmp_path / "s.wav", {})
    assert "url-pass-1234" not in str(error.value)
    assert str(error.value).startswith("the speech server at http://me:***@127.0.0.1:")
