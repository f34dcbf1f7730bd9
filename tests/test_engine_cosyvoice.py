"""The cosyvoice engine against a real HTTP server that speaks CosyVoice's FastAPI protocol."""

from __future__ import annotations

import json
import random
import subprocess
import wave
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SMALL_DRAMA, fanren, write_drama
from speech_servers import FAULTS, CosyVoiceServer, closed_port_url, tone

from fanren.engines.base import Request
from fanren.engines.voice import SENTENCE_GAP
from fanren.engines.voice.cosyvoice import SFT_SPEAKERS, CosyVoiceEngine
from fanren.engines.voice.http import PAUSE_SECONDS, Audio, check_sound
from fanren.errors import EngineError, OptionError
from fanren.http import TransientError

FAST = {"timeout": 0.5, "retries": 3, "backoff": 0.001}  # keep failing cases well under a second


@pytest.fixture
def server() -> Iterator[CosyVoiceServer]:
    with CosyVoiceServer(sample_rate=22050) as s:
        yield s


@pytest.fixture
def server24k() -> Iterator[CosyVoiceServer]:
    with CosyVoiceServer(sample_rate=24000) as s:
        yield s


@pytest.fixture
def prompt(tmp_path: Path) -> Path:
    """A 1.5 s, 16 kHz recording as a user would keep in refs/."""
    path = tmp_path / "drama" / "refs" / "li.wav"
    path.parent.mkdir(parents=True)
    write_wav(path, tone("prompt", 16000, 1.5), 16000)
    return path


def write_wav(path: Path, pcm: bytes, rate: int) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm)


def read_wav(path: Path) -> tuple[int, int, int, bytes]:
    """(rate, sample width, channels, frames)."""
    with wave.open(str(path), "rb") as w:
        return w.getframerate(), w.getsampwidth(), w.getnchannels(), w.readframes(w.getnframes())


def engine(url: str, **options: object) -> CosyVoiceEngine:
    return CosyVoiceEngine({"url": url, **FAST, **options})


# ── the three modes: what is sent, what is written ──────────────────────────


def test_sft_posts_text_and_speaker_and_writes_the_stream_as_wav(
        server: CosyVoiceServer, tmp_path: Path) -> None:
    out = tmp_path / "s.wav"
    engine(server.url).speak("他终于来了。", {"cosyvoice": "中文男", "speed": 1.0}, "zh", out, {})

    [sent] = server.received
    assert (sent.method, sent.path) == ("POST", "/inference_sft")
    assert sent.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert sent.fields == {"tts_text": "他终于来了。", "spk_id": "中文男"}
    assert sent.files == {}
    rate, width, channels, frames = read_wav(out)
    assert (rate, width, channels) == (22050, 2, 1)
    assert frames == server.pcm_for("他终于来了。")
    assert len(frames) / 2 / rate == pytest.approx(6 * 0.08, abs=1 / 22050)


def test_sft_without_a_cosyvoice_name_uses_the_stock_speaker_of_the_language(
        server: CosyVoiceServer, tmp_path: Path) -> None:
    e = engine(server.url)
    e.speak("你好。", {"speed": 1.0}, "zh", tmp_path / "zh.wav", {})
    e.speak("Hello.", {"speed": 1.0}, "en", tmp_path / "en.wav", {})
    assert [r.fields["spk_id"] for r in server.received] == ["中文女", "英文女"]


def test_zero_shot_uploads_the_prompt_with_its_transcript(
        server24k: CosyVoiceServer, prompt: Path, tmp_path: Path) -> None:
    table = {"prompt_wav": "refs/li.wav", "prompt_text": "希望你以后能够做的比我还好呦。"}
    voice = {"cosyvoice": table, "speed": 1.0}
    out = tmp_path / "z.wav"
    engine(server24k.url, mode="zero_shot", sample_rate=24000).speak(
        "收到礼物。", voice, "zh", out, {"refs/li.wav": prompt})

    [sent] = server24k.received
    assert sent.path == "/inference_zero_shot"
    assert sent.fields == {"tts_text": "收到礼物。", "prompt_text": "希望你以后能够做的比我还好呦。"}
    assert sent.files == {"prompt_wav": ("li.wav", prompt.read_bytes())}
    rate, width, channels, frames = read_wav(out)
    assert (rate, width, channels) == (24000, 2, 1)
    assert frames == server24k.pcm_for("收到礼物。")


def test_instruct2_uploads_the_prompt_with_the_instruction_ended_as_cosyvoice2_reads_it(
        server24k: CosyVoiceServer, prompt: Path, tmp_path: Path) -> None:
    voice = {"cosyvoice": {"prompt_wav": "refs/li.wav", "instruct_text": "用四川话说这句话"}, "speed": 1.0}
    engine(server24k.url, mode="instruct2", sample_rate=24000).speak(
        "走吧。", voice, "zh", tmp_path / "i.wav", {"refs/li.wav": prompt})

    [sent] = server24k.received
    assert sent.path == "/inference_instruct2"
    assert sent.fields == {"tts_text": "走吧。", "instruct_text": "用四川话说这句话<|endofprompt|>"}
    assert sent.files == {"prompt_wav": ("li.wav", prompt.read_bytes())}


def test_an_instruction_that_already_ends_its_prompt_is_sent_as_written(
        server24k: CosyVoiceServer, prompt: Path, tmp_path: Path) -> None:
    instruct = "You are a helpful assistant. 请用广东话表达。<|endofprompt|>"
    voice = {"cosyvoice": {"mode": "instruct2", "prompt_wav": "refs/li.wav", "instruct_text": instruct}}
    out = tmp_path / "i.wav"
    engine(server24k.url, sample_rate=24000).speak("好。", voice, "zh", out, {"refs/li.wav": prompt})
    assert server24k.received[0].path == "/inference_instruct2"  # the voice's mode beats the profile's sft
    assert server24k.received[0].fields["instruct_text"] == instruct


def test_run_speaks_each_sentence_and_times_its_cue(server: CosyVoiceServer, tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    sentences = ["他来了。", "你好！"]
    request = Request(node_id="line:s1:0", kind="line", out_dir=out_dir, inputs={},
                      params={"text": "他来了。你好！", "sentences": sentences, "speaker": "li",
                              "voice": {"cosyvoice": "中文男", "speed": 1.0}, "language": "zh"})
    outputs = engine(server.url).run(request)

    assert set(outputs) == {"speech.wav", "cues.json"}
    assert sorted(p.name for p in out_dir.iterdir()) == ["cues.json", "speech.wav"]
    assert [r.fields["tts_text"] for r in server.received] == sentences
    first, second = (len(server.pcm_for(s)) // 2 for s in sentences)
    gap = int(SENTENCE_GAP * 22050)
    cues = json.loads(outputs["cues.json"].read_text(encoding="utf-8"))
    assert cues == [
        {"text": "他来了。", "start": 0.0, "end": round(first / 22050, 4)},
        {"text": "你好！", "start": round((first + gap) / 22050, 4),
         "end": round((first + gap + second) / 22050, 4)},
    ]
    rate, width, channels, frames = read_wav(outputs["speech.wav"])
    assert (rate, width, channels, len(frames) // 2) == (22050, 2, 1, first + gap + second)


def test_the_same_request_writes_the_same_bytes(server: CosyVoiceServer, tmp_path: Path) -> None:
    e = engine(server.url)
    for name in ("a.wav", "b.wav"):
        e.speak("一样的话。", {"cosyvoice": "中文女", "speed": 1.0}, "zh", tmp_path / name, {})
    assert (tmp_path / "a.wav").read_bytes() == (tmp_path / "b.wav").read_bytes()


def test_speed_stretches_the_speech_keeping_rate_and_format(server: CosyVoiceServer, tmp_path: Path) -> None:
    e = engine(server.url)
    for name in ("fast1.wav", "fast2.wav"):
        e.speak("这句话说得快一点。", {"cosyvoice": "中文女", "speed": 1.25}, "zh", tmp_path / name, {})
    rate, width, channels, frames = read_wav(tmp_path / "fast1.wav")
    assert (rate, width, channels) == (22050, 2, 1)
    normal = len(server.pcm_for("这句话说得快一点。")) / 2 / 22050
    assert len(frames) / 2 / rate == pytest.approx(normal / 1.25, abs=0.03)
    assert (tmp_path / "fast1.wav").read_bytes() == (tmp_path / "fast2.wav").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fast1.wav", "fast2.wav"]


def test_a_sentence_of_punctuation_only_is_a_pause_without_a_request(
        server: CosyVoiceServer, tmp_path: Path) -> None:
    out = tmp_path / "p.wav"
    engine(server.url).speak("……", {"cosyvoice": "中文女"}, "zh", out, {})
    assert server.received == []
    rate, width, channels, frames = read_wav(out)
    assert (rate, width, channels, len(frames) // 2) == (22050, 2, 1, round(PAUSE_SECONDS * 22050))
    assert set(frames) == {0}


# ── identity and the files a voice needs ────────────────────────────────────


def test_identity_holds_mode_and_rate_but_not_where_the_server_runs() -> None:
    a = CosyVoiceEngine({"url": "http://127.0.0.1:50000", "timeout": 5})
    b = CosyVoiceEngine({"url": "http://gpu-box:9000", "mode": "sft", "sample_rate": 22050, "retries": 9})
    assert a.identity() == b.identity() == {"name": "cosyvoice", "version": "1",
                                            "options": {"mode": "sft", "sample_rate": 22050}}
    v2 = CosyVoiceEngine({"mode": "zero_shot", "sample_rate": 24000, "model": "CosyVoice2-0.5B"})
    assert v2.identity() == {
        "name": "cosyvoice", "version": "1",
        "options": {"mode": "zero_shot", "sample_rate": 24000, "model": "CosyVoice2-0.5B"}}


def test_source_files_names_the_prompt_a_voice_needs() -> None:
    entry = {"prompt_wav": "refs/li.wav", "prompt_text": "x"}
    assert CosyVoiceEngine.source_files(entry) == ["refs/li.wav"]
    assert CosyVoiceEngine.source_files({"cosyvoice": entry, "speed": 1.0}) == ["refs/li.wav"]
    assert CosyVoiceEngine.source_files("中文女") == []
    assert CosyVoiceEngine.source_files(None) == []
    assert CosyVoiceEngine.source_files({"cosyvoice": "中文女", "speed": 1.0}) == []
    assert CosyVoiceEngine.source_files({"espeak": "cmn"}) == []


@pytest.mark.parametrize(("options", "message"), [
    ({"mode": "cross"}, "mode: expected one of sft, zero_shot, instruct2, got 'cross'"),
    ({"sample_rte": 24000}, ("sample_rte: expected an option of engine 'cosyvoice' (did you mean 'sample_rate'? "
                             "known options: backoff, mode, model, retries, sample_rate, timeout, url)")),
    ({"speed": 2}, ("speed: expected an option of engine 'cosyvoice' "
                    "(known options: backoff, mode, model, retries, sample_rate, timeout, url)")),
    ({"sample_rate": "24k"}, ("sample_rate: expected the model's rate in Hz (22050 for CosyVoice-300M, "
                              "24000 for CosyVoice2 and 3), got '24k'")),
    ({"url": "127.0.0.1:50000"}, "url: expected an http:// or https:// URL, got '127.0.0.1:50000'"),
    ({"retries": -1}, "retries: expected a number >= 0, got -1"),
    ({"retries": 1.5}, "retries: expected a whole number, got 1.5"),
])
def test_bad_profile_options_are_option_errors_the_compiler_places_in_drama_toml(
        options: dict[str, object], message: str) -> None:
    with pytest.raises(OptionError) as error:
        CosyVoiceEngine(options)
    assert error.value.problem("drama.toml", "profiles.final.voice").show() == \
        f"drama.toml: profiles.final.voice.{message}"


# ── voices that cannot work are refused before any request ──────────────────


def test_zero_shot_without_a_transcript_is_refused_before_asking(
        server: CosyVoiceServer, prompt: Path, tmp_path: Path) -> None:
    with pytest.raises(EngineError) as error:
        engine(server.url, mode="zero_shot").speak("你好。", {"cosyvoice": {"prompt_wav": "refs/li.wav"}},
                                                   "zh", tmp_path / "x.wav", {"refs/li.wav": prompt})
    assert str(error.value) == ("CosyVoice mode zero_shot needs prompt_text in the voice: cosyvoice = "
                                '{ prompt_wav = "refs/voice.wav", prompt_text = "what the recording says" }')
    assert server.received == []


def test_a_speaker_without_a_prompt_in_instruct2_mode_is_told_what_to_add(
        server: CosyVoiceServer, tmp_path: Path) -> None:
    with pytest.raises(EngineError) as error:
        engine(server.url, mode="instruct2").speak("你好。", {"speed": 1.0}, "zh", tmp_path / "x.wav", {})
    assert str(error.value).startswith("CosyVoice mode instruct2 needs prompt_wav and instruct_text in the voice, "
                                       "and this speaker's voice has no cosyvoice entry")
    assert server.received == []


def test_a_prompt_table_in_sft_mode_says_to_set_the_mode(server: CosyVoiceServer, tmp_path: Path) -> None:
    with pytest.raises(EngineError) as error:
        engine(server.url).speak("你好。", {"cosyvoice": {"prompt_wav": "refs/li.wav", "prompt_text": "x"}},
                                 "zh", tmp_path / "x.wav", {})
    assert 'set mode = "zero_shot" or "instruct2"' in str(error.value)
    assert server.received == []


def test_a_prompt_below_16_khz_is_refused_with_what_cosyvoice_needs(
        server: CosyVoiceServer, tmp_path: Path) -> None:
    low = tmp_path / "low.wav"
    write_wav(low, tone("low", 8000, 1.0), 8000)
    voice = {"cosyvoice": {"prompt_wav": "refs/low.wav", "prompt_text": "你好"}}
    with pytest.raises(EngineError) as error:
        engine(server.url, mode="zero_shot").speak("你好。", voice, "zh", tmp_path / "x.wav",
                                                   {"refs/low.wav": low})
    assert str(error.value).startswith("the CosyVoice prompt refs/low.wav is sampled at 8000 Hz; "
                                       "CosyVoice needs 16000 Hz or more")
    assert server.received == []


def test_a_prompt_missing_from_sources_is_named(server: CosyVoiceServer, tmp_path: Path) -> None:
    voice = {"cosyvoice": {"prompt_wav": "refs/li.wav", "prompt_text": "你好"}}
    with pytest.raises(EngineError) as error:
        engine(server.url, mode="zero_shot").speak("你好。", voice, "zh", tmp_path / "x.wav", {})
    assert str(error.value) == "the CosyVoice prompt refs/li.wav was not passed to the engine (sources: none)"


# ── failures: retried with backoff, then a message naming server and line ───


@pytest.mark.parametrize("fault", FAULTS)
def test_each_transient_failure_is_retried_until_the_audio_is_good(
        server: CosyVoiceServer, tmp_path: Path, fault: str) -> None:
    server.fail_next(fault)
    out = tmp_path / "r.wav"
    engine(server.url, timeout=0.3).speak("重试一次。", {"cosyvoice": "中文女"}, "zh", out, {})
    assert len(server.received) == 2
    assert read_wav(out)[3] == server.pcm_for("重试一次。")


def test_several_failures_in_a_row_then_success(server: CosyVoiceServer, tmp_path: Path) -> None:
    server.fail_next("500", "cut", "odd")
    out = tmp_path / "r.wav"
    engine(server.url).speak("第四次成功。", {"cosyvoice": "中文女"}, "zh", out, {})
    assert [r.fields["tts_text"] for r in server.received] == ["第四次成功。"] * 4
    assert read_wav(out)[3] == server.pcm_for("第四次成功。")


def test_a_server_that_is_not_running_fails_naming_it_and_the_line(tmp_path: Path) -> None:
    url = closed_port_url()
    with pytest.raises(EngineError) as error:
        engine(url, retries=2).speak("没人听。", {"cosyvoice": "中文女"}, "zh", tmp_path / "x.wav", {})
    message = str(error.value)
    assert message.startswith(f"the CosyVoice server at {url} gave no usable audio for '没人听。' "
                              "(sft, speaker '中文女'): connection refused (is the server running?) "
                              "(3 attempts); "
                              "start it in CosyVoice's own environment")
    assert not (tmp_path / "x.wav").exists()


def test_a_server_that_keeps_failing_gives_up_after_the_retries(
        server: CosyVoiceServer, tmp_path: Path) -> None:
    server.fail_next("500", "500", "500", "500", "500")
    with pytest.raises(EngineError) as error:
        engine(server.url, retries=2).speak("总是失败。", {"cosyvoice": "中文女"}, "zh",
                                            tmp_path / "x.wav", {})
    assert len(server.received) == 3
    message = str(error.value)
    assert f"the CosyVoice server at {server.url} gave no usable audio for '总是失败。'" in message
    assert "HTTP 500 Internal Server Error: Internal Server Error (3 attempts)" in message
    assert "CosyVoice-300M-SFT: 中文女" in message  # the hint for an unknown speaker


def test_a_hanging_server_times_out_each_attempt(server: CosyVoiceServer, tmp_path: Path) -> None:
    server.fail_next("hang", "hang")
    with pytest.raises(EngineError) as error:
        engine(server.url, timeout=0.2, retries=1).speak("等不到。", {"cosyvoice": "中文女"}, "zh",
                                                         tmp_path / "x.wav", {})
    assert "no answer within 0.2 s (2 attempts)" in str(error.value)


def test_a_truncated_stream_every_time_is_reported_as_cut_off(
        server: CosyVoiceServer, tmp_path: Path) -> None:
    server.fail_next("cut", "short")
    with pytest.raises(EngineError) as error:
        engine(server.url, retries=1).speak("断了的话。", {"cosyvoice": "中文女"}, "zh",
                                            tmp_path / "x.wav", {})
    assert "only 0.000 s of audio for 4 spoken characters" in str(error.value)


def test_a_wrong_endpoint_is_not_retried(server: CosyVoiceServer, tmp_path: Path) -> None:
    with pytest.raises(EngineError) as error:
        engine(server.url + "/api").speak("你好。", {"cosyvoice": "中文女"}, "zh", tmp_path / "x.wav", {})
    assert len(server.received) == 1
    assert "HTTP 404 Not Found" in str(error.value)
    assert ("is this CosyVoice's FastAPI server (runtime/python/fastapi/server.py)? "
            "It should answer /inference_sft") in str(error.value)


def test_a_server_announcing_another_rate_says_which_to_set(tmp_path: Path) -> None:
    with CosyVoiceServer(sample_rate=24000, announce_rate=24000) as server:
        with pytest.raises(EngineError) as error:
            engine(server.url).speak("你好。", {"cosyvoice": "中文女"}, "zh", tmp_path / "x.wav", {})
        assert len(server.received) == 1
    assert "the server's model speaks at 24000 Hz but the profile says sample_rate = 22050; " \
           "set sample_rate = 24000" in str(error.value)


@pytest.mark.timeout(60)
def test_a_trickling_server_fails_the_line_naming_the_server_and_the_timeout(
        server: CosyVoiceServer, tmp_path: Path) -> None:
    # Two bytes a second: every read arrives within the timeout, the whole reply would take minutes.
    server.fail_next("trickle", "trickle")
    with pytest.raises(EngineError) as error:
        engine(server.url, timeout=1, retries=1).speak("慢慢说。", {"cosyvoice": "中文女"}, "zh",
                                                       tmp_path / "x.wav", {})
    assert str(error.value).startswith(f"the CosyVoice server at {server.url} gave no usable audio for "
                                       "'慢慢说。' (sft, speaker '中文女'): no answer within 1 s (2 attempts)")
    assert not (tmp_path / "x.wav").exists()


@pytest.mark.timeout(120)
def test_a_trickling_server_fails_the_build_naming_the_server_and_the_timeout(
        server: CosyVoiceServer, tmp_path: Path) -> None:
    server.fail_next(*["trickle"] * 20)
    folder = write_drama(tmp_path / "d", SMALL_DRAMA + (
        "\n[profiles.server]\n"
        'video = { engine = "kenburns", seconds = 1.0 }\n'
        f'voice = {{ engine = "cosyvoice", url = "{server.url}", timeout = 1, retries = 0 }}\n'))
    result = fanren("build", folder, "--profile", "server")
    assert result.code == 1, result.stdout + result.stderr
    assert f"the CosyVoice server at {server.url} gave no usable audio for " in result.stderr
    assert "no answer within 1 s (1 attempt)" in result.stderr
    assert not list(folder.glob("out/server/episode.mp4"))


# ── what is not speech is not cached as speech ──────────────────────────────


def test_random_bytes_are_not_taken_for_speech(server: CosyVoiceServer, tmp_path: Path) -> None:
    server.fail_next("noise", "noise")
    with pytest.raises(EngineError) as error:
        engine(server.url, retries=1).speak("噪声。", {"cosyvoice": "中文女"}, "zh", tmp_path / "x.wav", {})
    assert "the audio is noise, not speech (RMS 0.58 of full scale, neighbouring samples correlate " \
           in str(error.value)
    assert str(error.value).endswith("the reply holds random bytes (2 attempts); if it keeps failing, check "
                                     "that the server runs an SFT model that knows '中文女' "
                                     f"(CosyVoice-300M-SFT: {SFT_SPEAKERS})")
    assert not (tmp_path / "x.wav").exists()


def test_a_body_shorter_than_its_content_length_is_not_taken_for_speech(
        server: CosyVoiceServer, tmp_path: Path) -> None:
    server.fail_next("truncated", "truncated")
    with pytest.raises(EngineError) as error:
        engine(server.url, retries=1).speak("半截话。", {"cosyvoice": "中文女"}, "zh", tmp_path / "x.wav", {})
    half = len(server.pcm_for("半截话。")) // 2
    assert f"the reply broke off after {half} bytes (" in str(error.value)
    assert "(2 attempts)" in str(error.value)


def test_a_reply_that_is_not_audio_is_refused_at_once(server: CosyVoiceServer, tmp_path: Path) -> None:
    server.fail_next("html")
    with pytest.raises(EngineError) as error:
        engine(server.url).speak("你好。", {"cosyvoice": "中文女"}, "zh", tmp_path / "x.wav", {})
    assert len(server.received) == 1
    assert ("the server answered text/html, not audio: <html><body><h1>Welcome to nginx!</h1></body></html>"
            in str(error.value))


def test_real_speech_sounds_like_sound_and_garbage_does_not(tmp_path: Path) -> None:
    spoken = tmp_path / "espeak.wav"
    subprocess.run(["espeak-ng", "-v", "cmn", "-w", str(spoken), "山门在雾中。"], check=True)
    rate, _, _, pcm = read_wav(spoken)
    check_sound(Audio(rate, pcm))  # real speech passes, and so does the fake servers' tone
    check_sound(Audio(22050, tone("他来了。", 22050, 0.5)))
    refused = {
        "noise": random.Random(1).randbytes(len(pcm)),
        "text": ("这不是声音，是一段文字。" * 400).encode("utf-8")[:len(pcm) // 2 * 2],
        "json": json.dumps({"error": "x" * 20000}).encode()[:20000],
        "silence": bytes(len(pcm)),
    }
    messages = {}
    for name, data in refused.items():
        with pytest.raises(TransientError) as error:
            check_sound(Audio(rate, data))
        messages[name] = str(error.value).split(":")[0].split(" (")[0]
    assert messages == {"noise": "the audio is noise, not speech", "text": "the audio is not sound",
                        "json": "the audio is not sound", "silence": f"the server sent {len(pcm) / 2 / rate:.2f} s of silence"}
