"""The mux engine on real media: a testsrc2 clip, espeak-ng speech, the real ffmpeg."""

from __future__ import annotations

import itertools
import json
import math
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from viewer import mono_samples, tone_db

from fanren.engines.base import Request
from fanren.engines.mux import (
    CUE_ROOM,
    LINE_GAP,
    SPEECH_CHUNK,
    MuxEngine,
    combined_loudness,
    fit_clip,
    speech_chunks,
)
from fanren.engines.mux_subtitles import MIN_CUE, ROW, ass_style, row_width, split_long, wrap
from fanren.engines.voice import SENTENCE_GAP, join_wavs
from fanren.errors import EngineError
from fanren.media import probe, wav_duration

FPS = 24
SMALL = [320, 180]
LEAD_IN = 0.15
PAUSE = 0.4
LOUDNESS = {"i": -16.0, "tp": -1.5}
FONT = "Noto Sans CJK SC"


# ── real inputs ─────────────────────────────────────────────────────────────


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("media")


@pytest.fixture(scope="module")
def clip(media: Path) -> Path:
    """Two seconds of testsrc2 at 1280x720, 24 fps: every frame differs from its neighbours."""
    out = media / "clip.mp4"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
                    "-i", "testsrc2=s=1280x720:r=24:d=2", "-c:v", "libx264", "-preset", "ultrafast",
                    "-pix_fmt", "yuv420p", str(out)], check=True)
    return out


def speak(folder: Path, name: str, sentences: list[str], words_per_minute: int = 175) -> dict[str, Path]:
    """A line node's outputs made the way the voice engines make them: one WAV per sentence, joined."""
    pieces = []
    for i, sentence in enumerate(sentences):
        piece = folder / f"{name}-{i}.wav"
        subprocess.run(["espeak-ng", "-v", "cmn-latn-pinyin", "-s", str(words_per_minute), "-w", str(piece),
                        sentence], check=True)
        pieces.append(piece)
    speech = folder / f"{name}.wav"
    cues = join_wavs(pieces, sentences, speech, SENTENCE_GAP)
    cues_file = folder / f"{name}.json"
    cues_file.write_text(json.dumps(cues, ensure_ascii=False), encoding="utf-8")
    return {"speech.wav": speech, "cues.json": cues_file}


@pytest.fixture(scope="module")
def first_line(media: Path) -> dict[str, Path]:
    return speak(media, "first", ["你好。", "今天天气很好。"])


@pytest.fixture(scope="module")
def second_line(media: Path) -> dict[str, Path]:
    return speak(media, "second", ["我们走吧。"])


def shot_request(out: Path, clip: Path, lines: list[tuple[str, str, dict[str, Path]]], *,
                 fit: str = "slow", min_seconds: float | None = None, size: list[int] = SMALL,
                 shot_id: str = "s1", subtitles: str = "none", motion: str = "duplicate") -> Request:
    # motion "duplicate" by default: these tests follow which clip frame each shot frame shows
    out.mkdir(parents=True, exist_ok=True)
    params = {"shot_id": shot_id, "size": size, "fps": FPS, "pause": PAUSE, "lead_in": LEAD_IN,
              "min_seconds": min_seconds, "fit": fit, "max_slow": 1.5, "motion": motion,
              "subtitles": subtitles, "font": FONT, "language": "zh",
              "lines": [{"node": f"line:{shot_id}:{n}", "who": who, "text": text}
                        for n, (who, text, _) in enumerate(lines)]}
    inputs: dict[str, dict[str, Path]] = {f"clip:{shot_id}": {"clip.mp4": clip}}
    inputs.update({f"line:{shot_id}:{n}": files for n, (_, _, files) in enumerate(lines)})
    return Request(node_id=f"shot:{shot_id}", kind="shot", params=params, inputs=inputs, out_dir=out)


def gray_frames(video: Path, size: tuple[int, int] = (64, 36)) -> list[bytes]:
    """Every frame of a video, scaled down to gray bytes for comparing pictures."""
    w, h = size
    raw = subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", str(video),
                          "-vf", f"scale={w}:{h}:flags=area", "-f", "rawvideo", "-pix_fmt", "gray", "-"],
                         check=True, capture_output=True).stdout
    return [raw[i:i + w * h] for i in range(0, len(raw), w * h)]


def difference(a: bytes, b: bytes) -> float:
    return sum(abs(x - y) for x, y in zip(a, b, strict=True)) / len(a)


def changed_pixels(a: bytes, b: bytes) -> int:
    return sum(1 for x, y in zip(a, b, strict=True) if abs(x - y) > 64)


W, H = SMALL
BOTTOM = slice(W * int(H * 0.75), W * H)  # subtitles sit in the bottom quarter
TOP = slice(0, W * int(H * 0.5))


def frames_with_text(burned: Path, plain: Path) -> list[int]:
    """The frames where the burned video differs from the plain one in the subtitle area.

    Measured at 320x180: 81 to 188 changed pixels where a cue shows, at most 2 elsewhere.
    """
    with_text, without = gray_frames(burned, (W, H)), gray_frames(plain, (W, H))
    assert len(with_text) == len(without)
    assert all(changed_pixels(a[TOP], b[TOP]) < 10 for a, b in zip(with_text, without, strict=True))
    return [n for n, (a, b) in enumerate(zip(with_text, without, strict=True))
            if changed_pixels(a[BOTTOM], b[BOTTOM]) > 40]


def frames_in_cues(cues: list[tuple[float, float, list[str]]], frames: int) -> list[int]:
    """The frames a cue covers, as libass shows it: start <= frame time < end."""
    return [n for n in range(frames) if any(start <= n / FPS < end for start, end, _ in cues)]


def nearest(frame: bytes, candidates: list[bytes]) -> int:
    return min(range(len(candidates)), key=lambda i: difference(frame, candidates[i]))


def expected_frames(lines: list[dict[str, Path]]) -> int:
    speech = sum(wav_duration(files["speech.wav"]) for files in lines) + LINE_GAP * (len(lines) - 1)
    return math.ceil((LEAD_IN + speech + PAUSE) * FPS - 1e-6)


# ── shot ─────────────────────────────────────────────────────────────────────


def test_shot_is_exactly_as_long_as_its_speech_and_pause(tmp_path: Path, clip: Path,
                                                         first_line: dict[str, Path],
                                                         second_line: dict[str, Path]) -> None:
    lines = [("narrator", "你好。今天天气很好。", first_line), ("lin", "我们走吧。", second_line)]
    outputs = MuxEngine().run(shot_request(tmp_path, clip, lines))

    assert sorted(p.name for p in tmp_path.iterdir()) == ["shot.mp4", "timing.json"]
    frames = expected_frames([first_line, second_line])
    shot = probe(outputs["shot.mp4"])
    assert shot.frames == frames
    assert shot.size == (320, 180)
    assert shot.fps == FPS
    assert shot.video is not None and shot.video["codec_name"] == "h264"
    assert shot.video["pix_fmt"] == "yuv420p"
    assert shot.audio is not None
    assert (shot.audio["codec_name"], int(shot.audio["sample_rate"]), shot.audio["channels"]) == ("aac", 48000, 2)
    assert float(shot.audio["duration"]) == pytest.approx(frames / FPS, abs=0.002)
    timing = json.loads(outputs["timing.json"].read_text(encoding="utf-8"))
    assert timing["duration"] == pytest.approx(frames / FPS, abs=1e-9)


def test_timing_cues_start_at_lead_in_plus_their_offsets(tmp_path: Path, clip: Path,
                                                         first_line: dict[str, Path],
                                                         second_line: dict[str, Path]) -> None:
    lines = [("narrator", "你好。今天天气很好。", first_line), ("lin", "我们走吧。", second_line)]
    outputs = MuxEngine().run(shot_request(tmp_path, clip, lines))

    timing = json.loads(outputs["timing.json"].read_text(encoding="utf-8"))
    first = json.loads(first_line["cues.json"].read_text(encoding="utf-8"))
    second = json.loads(second_line["cues.json"].read_text(encoding="utf-8"))
    second_start = LEAD_IN + wav_duration(first_line["speech.wav"]) + LINE_GAP
    expected = ([(LEAD_IN + c["start"], LEAD_IN + c["end"], c["text"], "narrator") for c in first]
                + [(second_start + c["start"], second_start + c["end"], c["text"], "lin") for c in second])
    assert [cue["text"] for cue in timing["cues"]] == ["你好。", "今天天气很好。", "我们走吧。"]
    assert [(c["start"], c["end"], c["text"], c["who"]) for c in timing["cues"]] == [
        (pytest.approx(s, abs=1e-3), pytest.approx(e, abs=1e-3), t, w) for s, e, t, w in expected]


def first_sound(video: Path, after: float = 0.0) -> float:
    """Seconds into the video's audio where it first gets louder than near-silence, from `after` on."""
    pcm = subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", str(video),
                          "-map", "0:a", "-ac", "1", "-ar", "1000", "-f", "s16le", "-"],
                         check=True, capture_output=True).stdout
    samples = [int.from_bytes(pcm[i:i + 2], "little", signed=True) for i in range(0, len(pcm), 2)]
    return next(i for i in range(round(after * 1000), len(samples)) if abs(samples[i]) > 300) / 1000


def test_speech_starts_after_the_lead_in(tmp_path: Path, clip: Path, first_line: dict[str, Path]) -> None:
    outputs = MuxEngine().run(shot_request(tmp_path, clip, [("narrator", "你好。", first_line)]))

    assert first_sound(outputs["shot.mp4"]) == pytest.approx(LEAD_IN, abs=0.03)


def test_a_line_ending_in_a_short_sentence_keeps_its_cue_up_0_7_s(tmp_path: Path, clip: Path, media: Path,
                                                                  second_line: dict[str, Path]) -> None:
    short = speak(media, "short", ["好。"], words_per_minute=400)
    short_seconds = wav_duration(short["speech.wav"])
    assert short_seconds + LINE_GAP < CUE_ROOM  # the rule is needed: LINE_GAP alone would be too soon
    lines = [("lin", "好。", short), ("elder", "我们走吧。", second_line)]
    outputs = MuxEngine().run(shot_request(tmp_path / "two", clip, lines))
    alone = MuxEngine().run(shot_request(tmp_path / "one", clip, [("lin", "好。", short)]))

    cues = json.loads(outputs["timing.json"].read_text(encoding="utf-8"))["cues"]
    assert cues[1]["start"] - cues[0]["start"] == pytest.approx(CUE_ROOM, abs=1e-3)
    # the speech is where the timing says: the second line starts after the longer gap
    assert first_sound(outputs["shot.mp4"], after=LEAD_IN + short_seconds + 0.02) == pytest.approx(
        LEAD_IN + CUE_ROOM, abs=0.03)
    # a shot ending in a short sentence lasts until its cue has been up 0.7 s, if the pause is shorter
    assert probe(alone["shot.mp4"]).frames == math.ceil(
        max(LEAD_IN + CUE_ROOM, LEAD_IN + short_seconds + PAUSE) * FPS - 1e-6)
    srt = parse_srt(MuxEngine().run(subtitles_request(tmp_path / "subtitles", [outputs["timing.json"],
                                                                                 alone["timing.json"]]))[
        "episode.srt"].read_text(encoding="utf-8"))
    assert [round(end - start, 3) >= 0.7 for start, end, _ in srt] == [True, True, True]


def test_slow_hold_and_loop_fill_a_long_shot_differently(tmp_path: Path, clip: Path) -> None:
    # 4 s of shot over a 2 s clip: slow stretches it to 3 s then holds, hold freezes at 2 s, loop repeats
    clip_frames = gray_frames(clip)
    files = {fit: MuxEngine().run(shot_request(tmp_path / fit, clip, [], fit=fit, min_seconds=4.0))["shot.mp4"]
             for fit in ("slow", "hold", "loop")}
    shots = {fit: gray_frames(file) for fit, file in files.items()}

    assert {fit: len(frames) for fit, frames in shots.items()} == {"slow": 96, "hold": 96, "loop": 96}
    assert {fit: float(probe(file).audio["duration"]) for fit, file in files.items()  # type: ignore[index]
            } == {"slow": 4.0, "hold": 4.0, "loop": 4.0}
    at_2_5s = {fit: nearest(frames[60], clip_frames) for fit, frames in shots.items()}
    assert abs(at_2_5s["slow"] - 40) <= 1    # 2.5 s / 1.5 = 1.67 s into the clip
    assert at_2_5s["hold"] == 47              # the clip's last frame, held
    assert abs(at_2_5s["loop"] - 12) <= 1    # 0.5 s into the second pass
    assert abs(nearest(shots["slow"][30], clip_frames) - 20) <= 1
    assert nearest(shots["slow"][90], clip_frames) == 47
    assert abs(nearest(shots["hold"][30], clip_frames) - 30) <= 1


def test_a_clip_longer_than_the_shot_is_cut(tmp_path: Path, clip: Path) -> None:
    outputs = MuxEngine().run(shot_request(tmp_path, clip, [], fit="slow", min_seconds=1.0))

    frames = gray_frames(outputs["shot.mp4"])
    assert len(frames) == 24
    clip_frames = gray_frames(clip)
    assert [nearest(frames[i], clip_frames) for i in (0, 12, 23)] == [0, 12, 23]


@pytest.fixture(scope="module")
def slow_clip(media: Path) -> Path:
    """Two seconds of testsrc2 at 8 fps (CogVideoX-5b's rate): 16 frames, each unlike the last."""
    out = media / "clip-8fps.mp4"
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
                    "-i", "testsrc2=s=320x180:r=8:d=2", "-c:v", "libx264", "-preset", "ultrafast",
                    "-pix_fmt", "yuv420p", str(out)], check=True)
    return out


def frame_md5s(video: Path, chain: str | None = None) -> list[str]:
    """The md5 of every decoded frame (ffmpeg's framemd5 muxer), after the filter `chain` if given."""
    listing = subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", str(video), "-map", "0:v",
                              *(["-vf", chain] if chain else []), "-f", "framemd5", "-"],
                             check=True, capture_output=True, text=True).stdout
    return [row.split(",")[-1].strip() for row in listing.splitlines() if row and not row.startswith("#")]


def repeats(md5s: list[str]) -> int:
    """How many frames equal the frame before them."""
    return sum(1 for a, b in itertools.pairwise(md5s) if a == b)


def still_pairs(frames: list[bytes]) -> int:
    """Consecutive frames that show the same picture. A shot's frames went through x264, so a
    repeated frame comes back within 0.02 of a level of the one before (measured), moving ones 2 to 8."""
    return sum(1 for a, b in itertools.pairwise(frames) if difference(a, b) < 0.1)


@pytest.mark.parametrize("motion, repeated", [("interpolate", 2), ("duplicate", 32)])
def test_an_8_fps_clip_reaches_24_fps_by_interpolation_not_repeats(tmp_path: Path, slow_clip: Path, motion: str,
                                                                   repeated: int) -> None:
    # 16 clip frames span 1.875 s of a 2 s shot: interpolated, frames 0-45 all differ (two new frames
    # between each pair of the clip's) and the last two hold the clip's last frame; duplicated, each
    # clip frame shows three times
    shot = MuxEngine().run(shot_request(tmp_path, slow_clip, [], fit="hold", min_seconds=2.0,
                                        motion=motion))["shot.mp4"]
    info = probe(shot)
    assert (info.fps, info.frames) == (24.0, 48)
    assert still_pairs(gray_frames(shot, (320, 180))) == repeated
    # the same, exactly, before the encoder: the shot's filter chain over the clip, frame by frame
    chain = fit_clip("hold", 2.0, 2.0, 1.5, 48, (320, 180), 24, motion=motion, clip_fps=8.0)
    md5s = frame_md5s(slow_clip, chain)
    assert len(md5s) == 48 and repeats(md5s) == repeated
    assert md5s[45] == frame_md5s(slow_clip, "select=eq(n\\,15),format=yuv420p")[0]  # the clip's last frame
    if motion == "interpolate":  # the clip's own frames are still there, at their times
        clip_frames, shot_frames = gray_frames(slow_clip), gray_frames(shot)
        assert [nearest(shot_frames[3 * n], clip_frames) for n in range(16)] == list(range(16))


def test_a_slowed_clip_keeps_the_episodes_frame_rate(tmp_path: Path, slow_clip: Path) -> None:
    # 3 s over a 2 s clip: slowed 1.5 times, 8 fps would become 5.3 fps; interpolated after the slow-down
    shot = MuxEngine().run(shot_request(tmp_path, slow_clip, [], fit="slow", min_seconds=3.0,
                                        motion="interpolate"))["shot.mp4"]
    frames = gray_frames(shot, (320, 180))
    assert (probe(shot).fps, len(frames)) == (24.0, 72)
    # 1.875 s × 1.5 = 2.81 s of motion (frames 0-67), then the last frame held to 3 s
    assert still_pairs(frames[:68]) == 0 and still_pairs(frames[67:]) == 4


def test_interpolation_is_skipped_at_the_episodes_rate_and_repeats_its_bytes(tmp_path: Path, clip: Path,
                                                                             slow_clip: Path) -> None:
    # a 24 fps clip into a 24 fps shot (Ken Burns clips are rendered at the drama's fps): nothing to do
    same_rate = {motion: MuxEngine().run(shot_request(tmp_path / motion, clip, [], min_seconds=1.0,
                                                      motion=motion))["shot.mp4"].read_bytes()
                 for motion in ("interpolate", "duplicate")}
    assert same_rate["interpolate"] == same_rate["duplicate"]
    first, second = (MuxEngine().run(shot_request(tmp_path / f"run{n}", slow_clip, [], fit="slow", min_seconds=3.0,
                                                  motion="interpolate"))["shot.mp4"].read_bytes() for n in (1, 2))
    assert first == second


def test_an_unknown_motion_is_an_engine_error(tmp_path: Path, clip: Path) -> None:
    with pytest.raises(EngineError, match="unknown motion 'smooth': expected interpolate or duplicate"):
        MuxEngine().run(shot_request(tmp_path, clip, [], motion="smooth"))


def test_a_silent_shot_without_min_seconds_lasts_as_long_as_its_clip(tmp_path: Path, clip: Path) -> None:
    outputs = MuxEngine().run(shot_request(tmp_path, clip, []))

    assert probe(outputs["shot.mp4"]).frames == 48
    assert json.loads(outputs["timing.json"].read_text()) == {"duration": 2.0, "cues": []}


def test_min_seconds_lengthens_a_short_line(tmp_path: Path, clip: Path, second_line: dict[str, Path]) -> None:
    outputs = MuxEngine().run(shot_request(tmp_path, clip, [("lin", "我们走吧。", second_line)],
                                           min_seconds=3.5))

    assert probe(outputs["shot.mp4"]).frames == 84


def test_shot_at_full_size_is_exact(tmp_path: Path, clip: Path, first_line: dict[str, Path]) -> None:
    outputs = MuxEngine().run(shot_request(tmp_path, clip, [("narrator", "你好。", first_line)],
                                           size=[1280, 720]))

    shot = probe(outputs["shot.mp4"])
    assert (shot.frames, shot.size, shot.fps) == (expected_frames([first_line]), (1280, 720), FPS)
    assert shot.audio is not None


def test_burn_draws_the_shots_cues_on_exactly_their_frames(tmp_path: Path, clip: Path,
                                                           first_line: dict[str, Path],
                                                           second_line: dict[str, Path]) -> None:
    lines = [("narrator", "你好。今天天气很好。", first_line), ("lin", "我们走吧。", second_line)]
    burned = MuxEngine().run(shot_request(tmp_path / "burn", clip, lines, subtitles="burn"))
    plain = MuxEngine().run(shot_request(tmp_path / "none", clip, lines, subtitles="none"))

    assert sorted(p.name for p in (tmp_path / "burn").iterdir()) == ["shot.mp4", "timing.json"]
    assert burned["timing.json"].read_bytes() == plain["timing.json"].read_bytes()
    # the cues of this shot alone, as the subtitles node writes them for an episode of one shot
    subtitles = MuxEngine().run(subtitles_request(tmp_path / "subtitles", [burned["timing.json"]]))
    cues = parse_srt(subtitles["episode.srt"].read_text(encoding="utf-8"))
    assert [sentence(rows) for _, _, rows in cues] == ["你好。", "今天天气很好。", "我们走吧。"]
    frames = expected_frames([first_line, second_line])
    assert frames_with_text(burned["shot.mp4"], plain["shot.mp4"]) == frames_in_cues(cues, frames)


def test_burn_without_cues_is_the_plain_shot(tmp_path: Path, clip: Path) -> None:
    burned = MuxEngine().run(shot_request(tmp_path / "burn", clip, [], subtitles="burn"))
    plain = MuxEngine().run(shot_request(tmp_path / "none", clip, [], subtitles="none"))

    assert burned["shot.mp4"].read_bytes() == plain["shot.mp4"].read_bytes()


def test_every_shot_has_the_same_stream_headers(tmp_path: Path, clip: Path, first_line: dict[str, Path],
                                                 second_line: dict[str, Path]) -> None:
    # other pictures, lengths, fits and subtitles: the episode can only copy shots whose SPS/PPS match
    shots = [
        MuxEngine().run(shot_request(tmp_path / "a", clip, [("narrator", "x", first_line)],
                                     subtitles="burn"))["shot.mp4"],
        MuxEngine().run(shot_request(tmp_path / "b", clip, [("lin", "y", second_line)], fit="loop",
                                     min_seconds=5.0))["shot.mp4"],
        MuxEngine().run(shot_request(tmp_path / "c", clip, [], fit="hold"))["shot.mp4"],
    ]
    headers = [video_headers(shot) for shot in shots]
    assert headers[0]["extradata"] != ""
    assert headers[1] == headers[0] and headers[2] == headers[0]


def video_headers(video: Path) -> dict[str, str]:
    """The video stream's parameters that stream copy needs to match, its extradata (SPS/PPS) too."""
    names = ("codec_name", "profile", "level", "width", "height", "pix_fmt", "sample_aspect_ratio",
             "r_frame_rate", "time_base", "extradata")
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v", "-show_data", "-show_streams",
                          "-show_entries", "stream=" + ",".join(names), "-of", "json", str(video)],
                         check=True, capture_output=True, text=True).stdout
    stream = json.loads(out)["streams"][0]
    return {name: str(stream.get(name, "")) for name in names}


def test_an_unknown_subtitles_mode_is_an_engine_error(tmp_path: Path, clip: Path) -> None:
    with pytest.raises(EngineError, match="unknown subtitles mode 'burnt'"):
        MuxEngine().run(shot_request(tmp_path, clip, [], subtitles="burnt"))


def test_same_shot_request_gives_the_same_bytes(tmp_path: Path, clip: Path,
                                                second_line: dict[str, Path]) -> None:
    lines = [("lin", "我们走吧。", second_line)]
    renders = [MuxEngine().run(shot_request(tmp_path / str(n), clip, lines, subtitles="burn"))
               for n in range(10)]

    assert len({r["shot.mp4"].read_bytes() for r in renders}) == 1
    assert len({r["timing.json"].read_bytes() for r in renders}) == 1


@pytest.mark.parametrize("subtitles", ["burn", "none"])
def test_shot_bytes_do_not_depend_on_what_malloc_hands_back(tmp_path: Path, clip: Path, second_line: dict[str, Path],
                                                            monkeypatch: pytest.MonkeyPatch, subtitles: str) -> None:
    """x264's AVX-512 code reads uninitialised memory: unpinned, these gave 2 to 4 different shots."""
    lines = [("lin", "我们走吧。", second_line)]
    shots = set()
    for perturb in ("0", "77", "165"):  # glibc fills fresh and freed memory with this byte
        monkeypatch.setenv("MALLOC_PERTURB_", perturb)
        out = MuxEngine().run(shot_request(tmp_path / perturb, clip, lines, subtitles=subtitles))
        shots.add(out["shot.mp4"].read_bytes())

    assert len(shots) == 1


def test_a_missing_line_input_is_an_engine_error(tmp_path: Path, clip: Path,
                                                 second_line: dict[str, Path]) -> None:
    request = shot_request(tmp_path, clip, [("lin", "我们走吧。", second_line)])
    inputs = {k: v for k, v in request.inputs.items() if not k.startswith("line:")}
    broken = Request(node_id=request.node_id, kind="shot", params=request.params, inputs=inputs,
                     out_dir=tmp_path)

    with pytest.raises(EngineError, match="line:s1:0"):
        MuxEngine().run(broken)


# ── subtitles ────────────────────────────────────────────────────────────────


SRT_BLOCK = re.compile(r"(\d+)\n(\d\d):(\d\d):(\d\d),(\d{3}) --> (\d\d):(\d\d):(\d\d),(\d{3})\n((?:.+\n?)+)")


def parse_srt(text: str) -> list[tuple[float, float, list[str]]]:
    cues = []
    for block in SRT_BLOCK.finditer(text):
        h1, m1, s1, ms1, h2, m2, s2, ms2 = (int(g) for g in block.groups()[1:9])
        cues.append((h1 * 3600 + m1 * 60 + s1 + ms1 / 1000, h2 * 3600 + m2 * 60 + s2 + ms2 / 1000,
                     block.group(10).strip("\n").split("\n")))
    return cues


def sentence(rows: list[str]) -> str:
    """The sentence back from its subtitle rows (a Latin break dropped a space)."""
    return " ".join(rows) if rows[0].isascii() else "".join(rows)


def write_timing(folder: Path, name: str, duration: float, cues: list[tuple[float, float, str, str]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / f"{name}.json"
    file.write_text(json.dumps({"duration": duration, "cues": [
        {"start": s, "end": e, "text": t, "who": w} for s, e, t, w in cues]}, ensure_ascii=False))
    return file


def subtitles_request(out: Path, timings: list[Path], size: list[int] = SMALL,
                      language: str = "zh") -> Request:
    out.mkdir(parents=True, exist_ok=True)
    return Request(node_id="subtitles", kind="subtitles",
                   params={"size": size, "language": language, "font": FONT},
                   inputs={f"shot:s{i}": {"timing.json": t} for i, t in enumerate(timings)}, out_dir=out)


LONG_ZH = "我们去公园散步吧，好不好呀朋友们，今天真的是非常好的天气。"
LONG_EN = "The quick brown fox jumps over the lazy dog, and then it runs away into the forest."


@pytest.fixture
def two_shots_of_cues(tmp_path: Path) -> list[Path]:
    return [
        write_timing(tmp_path / "t", "a", 4.0, [(0.15, 0.5, "你好。", "narrator"),
                                                 (1.2, 3.8, LONG_ZH, "lin")]),
        write_timing(tmp_path / "t", "b", 5.0, [(0.2, 3.5, LONG_EN, "elder"),
                                                 (3.6, 3.7, "嗯。", "lin")]),
    ]


def test_subtitles_follow_the_shots_in_order(tmp_path: Path, two_shots_of_cues: list[Path]) -> None:
    outputs = MuxEngine().run(subtitles_request(tmp_path / "out", two_shots_of_cues))

    cues = parse_srt(outputs["episode.srt"].read_text(encoding="utf-8"))
    assert [sentence(rows) for _, _, rows in cues] == ["你好。", LONG_ZH, LONG_EN, "嗯。"]
    assert [start for start, _, _ in cues] == [0.15, 1.2, 4.2, 7.6]
    assert [end for _, end, _ in cues] == [0.85, 3.8, 7.5, 8.3]  # short cues extended to 0.7 s
    assert all(end - start >= MIN_CUE / 100 - 1e-9 for start, end, _ in cues)


def test_long_sentences_wrap_to_two_rows_at_punctuation_or_spaces(tmp_path: Path,
                                                                   two_shots_of_cues: list[Path]) -> None:
    outputs = MuxEngine().run(subtitles_request(tmp_path / "out", two_shots_of_cues))

    rows = [rows for _, _, rows in parse_srt(outputs["episode.srt"].read_text(encoding="utf-8"))]
    assert rows[1] == ["我们去公园散步吧，好不好呀朋友们，", "今天真的是非常好的天气。"]
    assert rows[2] == ["The quick brown fox jumps over the lazy", "dog, and then it runs away into the forest."]
    assert all(len(r) <= 2 for r in rows)
    assert max(len(row.rstrip("，。")) for row in rows[1]) <= 16
    assert max(len(row.rstrip(",.")) for row in rows[2]) <= 42


def test_a_sentence_too_long_for_two_rows_still_gets_two() -> None:
    text = "一二三四五六七八九十" * 5
    rows = wrap(text)
    assert len(rows) == 2 and "".join(rows) == text
    assert (len(rows[0]), len(rows[1])) == (25, 25)


@pytest.mark.parametrize(("text", "join"), [
    ("你为何而来" * 400, ""),                                                     # 2,000 characters, no stop
    (" ".join(["The quick brown fox jumps over the lazy dog again and again"] * 30), " "),
])
def test_a_sentence_too_long_for_two_rows_is_several_readable_cues(tmp_path: Path, text: str, join: str) -> None:
    said = 0.2 * len(text)  # seconds: what a voice takes to say it
    timing = write_timing(tmp_path, "a", said + 1, [(0.15, 0.15 + said, text, "lin"), (said + 0.3, said + 0.8,
                                                                                     "好。", "elder")])
    outputs = MuxEngine().run(subtitles_request(tmp_path / "out", [timing]))

    cues = parse_srt(outputs["episode.srt"].read_text(encoding="utf-8"))
    *pieces, last = cues
    assert len(pieces) > 10 and last[2] == ["好。"]
    assert join.join(join.join(rows) for _, _, rows in pieces) == text  # in order, no text lost
    for start, end, rows in pieces:
        assert 1 <= len(rows) <= 2
        assert all(row_width(row) <= ROW for row in rows)
        assert end - start >= MIN_CUE / 100
    assert pieces[0][0] == 0.15 and pieces[-1][1] <= last[0]
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(cues))  # one after the other
    # and none shrinks its font to fit: every row fits the frame at the style's size
    assert "\\fs" not in outputs["episode.ass"].read_text(encoding="utf-8")


def test_split_long_prefers_punctuation_and_spaces() -> None:
    text = "他走进了山门，看见一位白发长老正坐在石阶上闭目养神，身边的香炉冒着袅袅青烟，" * 3
    pieces = split_long(text)
    assert "".join(pieces) == text and len(pieces) > 1
    assert all(piece.endswith("，") for piece in pieces[:-1])
    assert split_long("短句。") == ["短句。"]


def test_a_short_sentence_shares_the_cue_of_the_same_speakers_next(tmp_path: Path) -> None:
    timing = write_timing(tmp_path, "a", 4.0, [(0.1, 0.3, "好。", "lin"), (0.5, 1.0, "走吧。", "lin"),
                                               (1.2, 1.4, "Yes.", "elder"), (1.6, 2.0, "Go now.", "elder"),
                                               (2.5, 2.7, "嗯。", "elder"), (3.0, 3.5, "嗯？", "lin")])
    outputs = MuxEngine().run(subtitles_request(tmp_path / "out", [timing]))

    cues = parse_srt(outputs["episode.srt"].read_text(encoding="utf-8"))
    # one speaker's quick sentences share a cue (a space only between Latin text); another
    # speaker's next cue is never run into: the short cue stops where that one starts
    assert cues == [(0.1, 1.0, ["好。走吧。"]), (1.2, 2.0, ["Yes. Go now."]), (2.5, 3.0, ["嗯。"]),
                    (3.0, 3.7, ["嗯？"])]


def test_a_short_cue_never_runs_past_its_shot(tmp_path: Path) -> None:
    # a cue burned into a shot cannot outlive the shot: it stops at the cut, not 0.7 s after it starts
    a = write_timing(tmp_path, "a", 2.0, [(1.5, 1.7, "好。", "lin")])
    b = write_timing(tmp_path, "b", 2.0, [(0.15, 1.5, "走吧。", "lin")])
    outputs = MuxEngine().run(subtitles_request(tmp_path / "out", [a, b]))

    cues = parse_srt(outputs["episode.srt"].read_text(encoding="utf-8"))
    assert [(start, end) for start, end, _ in cues] == [(1.5, 2.0), (2.15, 3.5)]


def test_ass_matches_the_frame_and_escapes_text(tmp_path: Path) -> None:
    timing = write_timing(tmp_path, "a", 3.0, [(0.1, 1.5, "a {\\b1} \\N b", "lin, the hero")])
    outputs = MuxEngine().run(subtitles_request(tmp_path / "out", [timing], size=[720, 1280]))

    ass = outputs["episode.ass"].read_text(encoding="utf-8")
    assert "PlayResX: 720\nPlayResY: 1280\n" in ass
    style = ass_style((720, 1280), FONT, "zh")
    assert f"Style: Default,{FONT},{style.size},&H00FFFFFF," in ass
    dialogue = [line for line in ass.splitlines() if line.startswith("Dialogue:")]
    assert dialogue == [("Dialogue: 0,0:00:00.10,0:00:01.50,Default,lin  the hero,0,0,0,,"
                        "a \\{\\\u2060b1\\} \\\u2060N b")]


def test_subtitle_size_follows_the_short_side_and_portrait_sits_higher() -> None:
    landscape, portrait = ass_style((1280, 720), FONT, "zh"), ass_style((720, 1280), FONT, "zh")
    assert landscape.size == portrait.size == 41
    assert 16 * portrait.size <= 720 - 2 * portrait.margin_side
    assert portrait.margin_bottom > 2 * landscape.margin_bottom
    assert ass_style((1280, 720), FONT, "en").size < landscape.size


def test_ass_and_srt_carry_the_same_cues(tmp_path: Path, two_shots_of_cues: list[Path]) -> None:
    outputs = MuxEngine().run(subtitles_request(tmp_path / "out", two_shots_of_cues))

    srt = parse_srt(outputs["episode.srt"].read_text(encoding="utf-8"))
    ass = [line.split(",", 9) for line in outputs["episode.ass"].read_text(encoding="utf-8").splitlines()
           if line.startswith("Dialogue:")]

    def seconds(t: str) -> float:
        h, m, s = t.split(":")
        return round(int(h) * 3600 + int(m) * 60 + float(s), 2)

    assert [(seconds(a[1]), seconds(a[2]), a[9].split("\\N")) for a in ass] == srt
    assert [a[4] for a in ass] == ["narrator", "lin", "elder", "lin"]


# ── episode ──────────────────────────────────────────────────────────────────


def two_shots(folder: Path, clip: Path, first_line: dict[str, Path], second_line: dict[str, Path],
              subtitles: str) -> dict[str, dict[str, Path]]:
    """Two shots and their subtitles: what the episode node is given."""
    engine = MuxEngine()
    # folder names that need escaping inside an ffmpeg filter graph and a concat playlist
    shots = {
        "shot:s1": engine.run(shot_request(folder / "it's: [s1],dir;", clip, [("narrator", "x", first_line)],
                                           shot_id="s1", subtitles=subtitles)),
        "shot:s2": engine.run(shot_request(folder / "s2", clip, [("lin", "y", second_line)], fit="hold",
                                           min_seconds=3.0, shot_id="s2", subtitles=subtitles)),
    }
    subtitles_dir = folder / "it's: [odd],dir;"
    subtitles_dir.mkdir()
    cues = engine.run(Request(node_id="subtitles", kind="subtitles",
                              params={"size": SMALL, "language": "zh", "font": FONT},
                              inputs={k: {"timing.json": v["timing.json"]} for k, v in shots.items()},
                              out_dir=subtitles_dir))
    return {**shots, "subtitles": cues}


@pytest.fixture(scope="module")
def episode_inputs(media: Path, clip: Path, first_line: dict[str, Path],
                   second_line: dict[str, Path]) -> dict[str, dict[str, Path]]:
    return two_shots(media / "plain", clip, first_line, second_line, "none")


@pytest.fixture(scope="module")
def burned_inputs(media: Path, clip: Path, first_line: dict[str, Path],
                  second_line: dict[str, Path]) -> dict[str, dict[str, Path]]:
    return two_shots(media / "burned", clip, first_line, second_line, "burn")


def episode_request(out: Path, inputs: dict[str, dict[str, Path]], subtitles: str,
                    music: list[dict[str, Any]] | None = None, sources: dict[str, Path] | None = None) -> Request:
    out.mkdir(parents=True, exist_ok=True)
    return Request(node_id="episode", kind="episode",
                   params={"fps": FPS, "subtitles": subtitles, "loudness": LOUDNESS, "music": music or []},
                   inputs=inputs, out_dir=out, sources=sources or {})


@pytest.fixture(scope="module")
def plain_episode(media: Path, episode_inputs: dict[str, dict[str, Path]]) -> Path:
    outputs = MuxEngine().run(episode_request(media / "none", episode_inputs, "none"))
    assert sorted(p.name for p in (media / "none").iterdir()) == ["episode.mp4"]
    return outputs["episode.mp4"]


def ebur128(file: Path) -> tuple[float, float]:
    """Integrated loudness (LUFS) and true peak (dBTP) measured by ffmpeg's ebur128 filter."""
    log = subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-i", str(file), "-map", "0:a",
                          "-af", "ebur128=peak=true", "-f", "null", "-"],
                         capture_output=True, text=True, check=True).stderr
    summary = log[log.rindex("Summary:"):]
    integrated = float(re.search(r"I:\s+(-?[\d.]+) LUFS", summary).group(1))  # type: ignore[union-attr]
    peak = float(re.search(r"Peak:\s+(-?[\d.]+) dBFS", summary).group(1))  # type: ignore[union-attr]
    return integrated, peak


def test_episode_is_the_shots_end_to_end(plain_episode: Path,
                                         episode_inputs: dict[str, dict[str, Path]]) -> None:
    shots = [probe(episode_inputs[s]["shot.mp4"]) for s in ("shot:s1", "shot:s2")]
    episode = probe(plain_episode)

    assert episode.frames == sum(s.frames or 0 for s in shots)
    assert episode.video is not None and shots[0].video is not None and shots[1].video is not None
    video_seconds = [float(p.video["duration"]) for p in (episode, *shots)]  # type: ignore[index]
    assert video_seconds[0] == pytest.approx(video_seconds[1] + video_seconds[2], abs=1 / FPS)
    assert episode.duration == pytest.approx(sum(s.duration for s in shots), abs=0.1)
    assert (episode.size, episode.fps) == ((320, 180), FPS)
    assert episode.video is not None and episode.video["pix_fmt"] == "yuv420p"
    assert episode.audio is not None and episode.audio["codec_name"] == "aac"
    assert float(episode.audio["duration"]) == pytest.approx(episode.duration, abs=0.05)
    assert subprocess.run(["ffprobe", "-v", "error", "-select_streams", "s", "-show_entries",
                           "stream=index", "-of", "csv=p=0", str(plain_episode)],
                          check=False, capture_output=True, text=True).stdout.strip() == ""


def test_the_second_shot_starts_on_its_frame_and_its_speech_on_time(
        plain_episode: Path, clip: Path, episode_inputs: dict[str, dict[str, Path]]) -> None:
    first_frames = probe(episode_inputs["shot:s1"]["shot.mp4"]).frames or 0
    clip_frames = gray_frames(clip)
    episode_frames = gray_frames(plain_episode)

    # shot 1 ends holding the clip's last frame; shot 2 (fit "hold") opens on the clip's first
    assert nearest(episode_frames[first_frames - 1], clip_frames) == 47
    assert nearest(episode_frames[first_frames], clip_frames) == 0
    second_starts = first_frames / FPS
    assert first_sound(plain_episode, after=second_starts) == pytest.approx(second_starts + LEAD_IN, abs=0.03)


def h264_stream(video: Path) -> bytes:
    """The video stream's packets as an H.264 elementary stream, exactly as stored (no decode)."""
    return subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", str(video), "-map", "0:v",
                           "-c", "copy", "-f", "h264", "-"], check=True, capture_output=True).stdout


def video_packets(video: Path) -> list[tuple[int, str]]:
    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v", "-show_entries",
                          "packet=size,flags", "-of", "csv=p=0", str(video)],
                         check=True, capture_output=True, text=True).stdout
    return [(int(size), flags) for size, flags in (line.split(",") for line in out.split())]


def test_the_episode_copies_the_shots_video_packets(plain_episode: Path,
                                                    episode_inputs: dict[str, dict[str, Path]]) -> None:
    shots = [episode_inputs[s]["shot.mp4"] for s in ("shot:s1", "shot:s2")]

    assert video_packets(plain_episode) == video_packets(shots[0]) + video_packets(shots[1])
    assert h264_stream(plain_episode) == h264_stream(shots[0]) + h264_stream(shots[1])
    first = len(video_packets(shots[0]))
    assert video_packets(plain_episode)[first][1].startswith("K")  # the second shot opens on a keyframe
    assert video_headers(plain_episode) == video_headers(shots[0])


def test_same_episode_request_gives_the_same_bytes(media: Path, plain_episode: Path,
                                                   episode_inputs: dict[str, dict[str, Path]]) -> None:
    again = MuxEngine().run(episode_request(media / "again", episode_inputs, "none"))["episode.mp4"]

    assert again.read_bytes() == plain_episode.read_bytes()


def test_episode_loudness_is_normalised(plain_episode: Path) -> None:
    integrated, peak = ebur128(plain_episode)

    # espeak's peaks would pass the ceiling at this gain: the limiter holds them (-16.2 LUFS, -2.0 dBTP measured)
    assert integrated == pytest.approx(LOUDNESS["i"], abs=0.5)
    assert peak <= LOUDNESS["tp"]


def test_burned_subtitles_show_exactly_when_the_srt_says(media: Path, plain_episode: Path,
                                                          burned_inputs: dict[str, dict[str, Path]]) -> None:
    burned = MuxEngine().run(episode_request(media / "burn", burned_inputs, "burn"))["episode.mp4"]
    cues = parse_srt(burned_inputs["subtitles"]["episode.srt"].read_text(encoding="utf-8"))

    frames = probe(plain_episode).frames or 0
    assert probe(burned).frames == frames
    shown = frames_with_text(burned, plain_episode)

    # The SRT puts the second shot at its start rounded to the centisecond (3.67 s for 3.6667 s): a
    # frame within 5 ms of a cue's edge may fall either side.
    def certain(found: list[int]) -> list[int]:
        return [n for n in found if all(abs(n / FPS - edge) >= 0.005 for cue in cues for edge in cue[:2])]

    assert certain(shown) == certain(frames_in_cues(cues, frames))
    assert len(shown) >= len(certain(shown)) > 60
    second_shot = probe(burned_inputs["shot:s1"]["shot.mp4"]).frames or 0
    assert any(n >= second_shot for n in shown)  # the second shot's cue, at its place in the episode
    # burning happened in the shots: the episode's video is theirs, packet for packet
    shots = [burned_inputs[s]["shot.mp4"] for s in ("shot:s1", "shot:s2")]
    assert h264_stream(burned) == h264_stream(shots[0]) + h264_stream(shots[1])


def test_soft_subtitles_add_a_text_track(media: Path, episode_inputs: dict[str, dict[str, Path]]) -> None:
    soft = MuxEngine().run(episode_request(media / "soft", episode_inputs, "soft"))["episode.mp4"]

    codecs = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of",
                             "csv=p=0", str(soft)], check=True, capture_output=True, text=True).stdout.split()
    assert codecs == ["h264", "aac", "mov_text"]
    assert h264_stream(soft) == b"".join(h264_stream(episode_inputs[s]["shot.mp4"])
                                         for s in ("shot:s1", "shot:s2"))
    track = subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", str(soft),
                            "-map", "0:s", "-f", "srt", "-"], capture_output=True, text=True, check=True).stdout
    texts = ["".join(rows) for _, _, rows in parse_srt(track)]
    assert texts == ["你好。", "今天天气很好。", "我们走吧。"]


# ── music ──────────────────────────────────────────────────────────────────

THEME, OTHER = 55.0, 40.0  # Hz: low tones, where speech has next to no energy (see tests/viewer.py)


def tone_file(path: Path, frequency: float, seconds: float) -> Path:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
                    "-i", f"sine=frequency={frequency}:duration={seconds}", "-af", "volume=4", str(path)],
                   check=True)
    return path


@pytest.fixture(scope="module")
def music_files(media: Path) -> dict[str, Path]:
    # the theme lasts 1 s, so it has to loop under every shot
    return {"music/theme.wav": tone_file(media / "theme.wav", THEME, 1.0),
            "music/other.wav": tone_file(media / "other.wav", OTHER, 20.0)}


def under(shots: list[str], file: str, volume: float = 0.25) -> dict[str, Any]:
    """The music of one scene, as the compiler writes it into the episode's params."""
    return {"shots": shots, "file": file, "volume": volume}


def test_music_ducks_under_speech_and_leaves_the_video_alone(
        media: Path, plain_episode: Path, episode_inputs: dict[str, dict[str, Path]],
        first_line: dict[str, Path], second_line: dict[str, Path], music_files: dict[str, Path]) -> None:
    episode = MuxEngine().run(episode_request(media / "ducked", episode_inputs, "none",
                                              music=[under(["s1", "s2"], "music/theme.wav")],
                                              sources=music_files))["episode.mp4"]
    second_shot = (probe(episode_inputs["shot:s1"]["shot.mp4"]).frames or 0) / FPS
    speaking = (LEAD_IN + 0.1, LEAD_IN + wav_duration(first_line["speech.wav"]) - 0.05)
    # after the second shot's line, once the ducking has let go, and before the music fades out
    quiet = (second_shot + LEAD_IN + wav_duration(second_line["speech.wav"]) + 0.7, second_shot + 3.0 - 0.6)
    assert quiet[1] - quiet[0] >= 0.3
    music, speech_alone = mono_samples(episode), mono_samples(plain_episode)

    between_lines = tone_db(music, THEME, *quiet)
    assert between_lines > -30
    assert tone_db(music, THEME, *speaking) <= between_lines - 8
    assert tone_db(speech_alone, THEME, *speaking) <= tone_db(music, THEME, *speaking) - 10
    shots = [episode_inputs[s]["shot.mp4"] for s in ("shot:s1", "shot:s2")]
    assert h264_stream(episode) == h264_stream(shots[0]) + h264_stream(shots[1])
    integrated, peak = ebur128(episode)
    # -16.7 LUFS measured: the limiter takes a little more where the music adds to the speech's peaks
    assert integrated == pytest.approx(LOUDNESS["i"], abs=1.0)
    assert peak <= LOUDNESS["tp"]


@pytest.fixture(scope="module")
def silent_shots(media: Path, clip: Path) -> dict[str, dict[str, Path]]:
    """Four 2 s shots without speech (one rendering, four nodes): a, b, c, d."""
    shot = MuxEngine().run(shot_request(media / "silent", clip, [], min_seconds=2.0, shot_id="q"))
    return {f"shot:{name}": shot for name in "abcd"}


def test_music_plays_on_across_a_cut_and_fades_where_it_changes(
        media: Path, silent_shots: dict[str, dict[str, Path]], music_files: dict[str, Path]) -> None:
    # a and b: the theme (two scenes, the same music); c: the other music; d: none
    music = [under(["a"], "music/theme.wav"), under(["b"], "music/theme.wav"), under(["c"], "music/other.wav")]
    episode = MuxEngine().run(episode_request(media / "scenes", silent_shots, "none", music=music,
                                              sources=music_files))["episode.mp4"]
    samples = mono_samples(episode)

    def theme(start: float, end: float) -> float:
        return tone_db(samples, THEME, start, end)

    def other(start: float, end: float) -> float:
        return tone_db(samples, OTHER, start, end)

    steady, steady_other = theme(0.6, 1.4), other(4.6, 5.4)
    assert steady > -30 and steady_other > -30
    assert theme(2.6, 3.4) == pytest.approx(steady, abs=1.0)    # looped: a 1 s file under 4 s
    assert theme(1.75, 2.25) == pytest.approx(steady, abs=1.0)  # no fade where the music goes on
    assert theme(0.0, 0.3) <= steady - 6                        # fades in as the episode starts
    assert theme(3.7, 4.0) <= steady - 6                        # fades out before the cut to c
    assert other(4.0, 4.3) <= steady_other - 6                  # the next music fades in after it
    assert other(5.7, 6.0) <= steady_other - 6                  # and out before d, which has none
    assert theme(4.6, 5.4) <= steady - 40
    assert max(theme(6.2, 7.8), other(6.2, 7.8)) <= steady - 40
    assert probe(episode).frames == 4 * 48


def test_soft_subtitles_with_music_still_add_their_track(
        media: Path, episode_inputs: dict[str, dict[str, Path]], music_files: dict[str, Path]) -> None:
    music = [under(["s1"], "music/theme.wav"), under(["s2"], "music/other.wav")]
    soft = MuxEngine().run(episode_request(media / "soft-music", episode_inputs, "soft", music=music,
                                           sources=music_files))["episode.mp4"]

    codecs = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream=codec_name", "-of",
                             "csv=p=0", str(soft)], check=True, capture_output=True, text=True).stdout.split()
    assert codecs == ["h264", "aac", "mov_text"]


def test_music_under_shots_apart_is_an_engine_error(
        tmp_path: Path, silent_shots: dict[str, dict[str, Path]], music_files: dict[str, Path]) -> None:
    with pytest.raises(EngineError, match="do not follow each other in the episode: shot:a, shot:c"):
        MuxEngine().run(episode_request(tmp_path, silent_shots, "none", sources=music_files,
                                        music=[under(["a", "c"], "music/theme.wav")]))


def test_music_not_given_as_a_source_is_an_engine_error(
        tmp_path: Path, silent_shots: dict[str, dict[str, Path]]) -> None:
    with pytest.raises(EngineError, match="the music file music/theme.wav was not given to the episode"):
        MuxEngine().run(episode_request(tmp_path, silent_shots, "none",
                                        music=[under(["a"], "music/theme.wav")]))


def test_unknown_kind_is_an_engine_error(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="cannot render a 'clip' node"):
        MuxEngine().run(Request(node_id="clip:x", kind="clip", params={}, inputs={}, out_dir=tmp_path))


def test_speech_chunks_cover_every_shot_once_in_order() -> None:
    for count in (1, 2, 7, 8, 9, 32, 33, 64, 65, 1000):
        chunks = speech_chunks(count)
        assert [i for chunk in chunks for i in chunk] == list(range(count))
        assert all(0 < len(chunk) <= SPEECH_CHUNK for chunk in chunks)
    assert len(speech_chunks(7)) == 1 and len(speech_chunks(14)) == 2


def _ebur128_log(blocks: list[float], peak: float) -> str:
    lines = [f"[Parsed_ebur128_0 @ 0x1] t: {0.1 * (i + 1):.1f}  TARGET:-23 LUFS    M:{m:6.1f} S:-120.7     "
             "I: -70.0 LUFS       LRA:   0.0 LU  FTPK:  -inf  -inf dBFS  TPK:  -inf  -inf dBFS"
             for i, m in enumerate(blocks)]
    summary = ["[Parsed_ebur128_0 @ 0x1] Summary:", "  True peak:", f"    Peak:  {peak:5.1f} dBFS"]
    return "\n".join([*lines, *summary])


def test_loudness_of_parts_is_gated_over_all_their_blocks() -> None:
    # -120.7: the blocks before the first 400 ms are full, and silence; both fall under the gates
    first = _ebur128_log([-120.7] * 3 + [-20.0] * 50, -3.0)
    second = _ebur128_log([-120.7] * 3 + [-20.0] * 50 + [-45.0] * 40, -1.5)
    measured = combined_loudness([first, second])
    assert measured.integrated == pytest.approx(-20.0, abs=0.01)  # -45 is under the relative gate
    assert measured.true_peak == -1.5
    assert combined_loudness([_ebur128_log([-120.7] * 10, -200.0)]).integrated == -70.0
