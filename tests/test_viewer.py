"""What a viewer notices, measured on a real `fanren build`: subtitles against the speech heard,
the subtitles' text, the episode's loudness, and music that ducks under speech and fades at cuts.

One drama is built twice: without music (speech onsets are found by silence detection in the
episode's own audio), then with a 55 Hz tone as [music] and a 40 Hz tone as the second scene's
own music. Speech has next to no energy at those frequencies, so the level of each tone in a
stretch of the episode is the level of that music there, whatever is said over it.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import fanren, ran, write_drama
from viewer import Viewing, mono_samples, speech_bursts, spoken_sentences, tone_db, view

LOUDNESS, TRUE_PEAK = -16.0, -1.5
LEAD_IN = 0.15
THEME, HALL = 55.0, 40.0  # Hz: the [music] tone and the hall scene's own

DRAMA = """\
[drama]
title = "观灯"
language = "zh"
fps = 12
seed = 3

[narrator]
voice = "narrator"

[voices.narrator]
speed = 1.3

[voices.lin]
speed = 1.4

[characters.lin]
name = "林青"
description = "a young swordswoman in a blue robe"
voice = "lin"

[characters.elder]
name = "白长老"
description = "an old sect elder with a white beard"

[[scenes]]
id = "gate"
setting = "a mountain gate in the mist"
characters = ["lin"]

[[scenes.shots]]
id = "steps"
action = "Lin Qing climbs the stone steps"
narration = "山门在雾中。石阶一直通到云里。"

[[scenes.shots]]
id = "blocked"
characters = ["lin", "elder"]
action = "The elder blocks her way"
narration = "长老拦住了她。"
lines = [{ who = "lin", text = "是我。" }, { who = "elder", text = "你为何而来？" }]

[[scenes.shots]]
id = "mist"
action = "Mist drifts over the empty steps"
duration = 2.0

[[scenes]]
id = "hall"
setting = "a candle-lit hall"
characters = ["elder"]

[[scenes.shots]]
id = "lamps"
action = "The elder walks into the hall of lamps"
narration = "他点了点头，转身走进大殿，殿中一万盏灯同时亮了起来。"
lines = [{ who = "lin", text = "好。我们走。" }]

[[scenes]]
id = "dawn"
setting = "the mountain at dawn"

[[scenes.shots]]
id = "sunrise"
action = "The sun rises over the peaks"
narration = "天亮了。"
lines = [{ who = "lin", text = "走。" }]

[profiles.draft]
video = { engine = "kenburns", seconds = 1.0 }
"""

MUSIC = """
[music]
file = "music/theme.wav"
volume = 0.25
"""


@dataclass(frozen=True)
class Builds:
    drama: Path
    plain: Path   # out/draft of the build without music, kept aside
    music: Path   # out/draft of the build with music
    music_ran: set[str]


def tone_file(path: Path, frequency: float) -> None:
    """20 s of a sine at half of full scale: the test's music."""
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi",
                    "-i", f"sine=frequency={frequency}:duration=20", "-af", "volume=4", str(path)], check=True)


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> Builds:
    root = tmp_path_factory.mktemp("viewer")
    drama = write_drama(root / "drama", DRAMA)
    result = fanren("build", drama)
    assert result.code == 0, result.stderr
    plain = root / "plain"
    shutil.copytree(drama / "out" / "draft", plain)

    tone_file(drama / "music" / "theme.wav", THEME)
    tone_file(drama / "music" / "hall.wav", HALL)
    text = DRAMA.replace('setting = "a candle-lit hall"\n',
                         'setting = "a candle-lit hall"\nmusic = { file = "music/hall.wav" }\n')
    text = text.replace('setting = "the mountain at dawn"\n', 'setting = "the mountain at dawn"\nmusic = "none"\n')
    write_drama(drama, text + MUSIC)
    result = fanren("build", drama)
    assert result.code == 0, result.stderr
    return Builds(drama=drama, plain=plain, music=drama / "out" / "draft", music_ran=ran(drama))


@pytest.fixture(scope="module")
def viewing(builds: Builds) -> Viewing:
    return view(builds.plain, spoken_sentences(builds.drama))


# ── subtitles ────────────────────────────────────────────────────────────────


def test_each_cue_starts_within_150_ms_of_its_speech(viewing: Viewing) -> None:
    print(f"\ncue start → speech onset over {len(viewing.cues)} cues: median "
          f"{statistics.median(viewing.offsets) * 1000:+.0f} ms, worst {viewing.offset_worst * 1000:.0f} ms")

    assert len(viewing.offsets) == len(viewing.cues) == 9
    assert viewing.offset_worst <= 0.150, viewing.offsets


def test_every_sentence_is_in_the_srt_in_order(viewing: Viewing) -> None:
    assert viewing.missing == []
    # a sentence too short to read shares the next one's cue (好。 lasts ~0.3 s); the others have their own
    assert [cue.text for cue in viewing.cues] == [
        "山门在雾中。", "石阶一直通到云里。", "长老拦住了她。", "是我。", "你为何而来？",
        "他点了点头，转身走进大殿，殿中一万盏灯同时亮了起来。", "好。我们走。", "天亮了。", "走。"]


def test_no_cue_is_shorter_than_0_7_s_and_none_has_more_than_two_rows(viewing: Viewing) -> None:
    # 是我。 is followed by another line, and 走。 ends the episode, well within 0.7 s of their starts
    assert viewing.shortest_cue >= 0.7
    assert viewing.most_rows == 2
    assert [len(cue.rows) for cue in viewing.cues] == [1, 1, 1, 1, 1, 2, 1, 1, 1]


# ── loudness ─────────────────────────────────────────────────────────────────


def test_the_episode_is_at_broadcast_loudness(viewing: Viewing, builds: Builds) -> None:
    with_music = view(builds.music, spoken_sentences(builds.drama))
    print(f"\nloudness: {viewing.integrated} LUFS, true peak {viewing.true_peak} dBTP; with music "
          f"{with_music.integrated} LUFS, {with_music.true_peak} dBTP")

    for measured in (viewing, with_music):
        assert measured.integrated == pytest.approx(LOUDNESS, abs=1.0)
        assert measured.true_peak <= TRUE_PEAK


# ── music ────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class Stretches:
    """Stretches of the episode (start, end seconds), found from the speech of the plain build."""

    speech: list[tuple[float, float]]   # words of the gate scene, each at least 0.5 s
    between: tuple[float, float]        # the silent shot, away from the speech and the cut
    fading: tuple[float, float]         # the last 0.3 s of the gate scene
    hall: tuple[float, float]           # the hall scene's narration
    dawn: tuple[float, float]           # the first second of the dawn scene, which has no music


@pytest.fixture(scope="module")
def stretches(builds: Builds) -> Stretches:
    bursts = speech_bursts(builds.plain / "episode.mp4")
    # the longest silence is the gate scene's silent shot, between "blocked" and "lamps"
    gap = max(range(1, len(bursts)), key=lambda i: bursts[i][0] - bursts[i - 1][1])
    silence_start, hall_onset = bursts[gap - 1][1], bursts[gap][0]
    cut = hall_onset - LEAD_IN
    dawn_onset = bursts[-1][0]
    return Stretches(
        speech=[(start + 0.05, end - 0.05) for start, end in bursts[:gap] if end - start >= 0.5],
        between=(silence_start + 0.7, cut - 0.7),
        fading=(cut - 0.3, cut),
        hall=(hall_onset + 0.1, hall_onset + 1.0),
        dawn=(dawn_onset - LEAD_IN, dawn_onset + 0.85),
    )


def test_adding_music_reruns_only_the_episode(builds: Builds) -> None:
    assert builds.music_ran == {"episode"}


def test_music_ducks_under_speech(builds: Builds, stretches: Stretches) -> None:
    music, plain = mono_samples(builds.music / "episode.mp4"), mono_samples(builds.plain / "episode.mp4")
    between = tone_db(music, THEME, *stretches.between)
    under = [tone_db(music, THEME, *stretch) for stretch in stretches.speech]
    speech_alone = [tone_db(plain, THEME, *stretch) for stretch in stretches.speech]
    print(f"\nmusic between lines {between:.1f} dBFS, under speech {statistics.median(under):.1f} "
          f"(loudest {max(under):.1f}); speech alone at the tone's frequency {max(speech_alone):.1f}")

    assert len(under) >= 4
    assert between > -30  # the music is there, and up, where nobody speaks
    assert max(under) <= between - 8
    # what was measured under the speech is the music, not the speech
    assert max(speech_alone) <= min(under) - 10


def test_music_fades_out_at_a_scene_change(builds: Builds, stretches: Stretches) -> None:
    music = mono_samples(builds.music / "episode.mp4")

    assert tone_db(music, THEME, *stretches.fading) <= tone_db(music, THEME, *stretches.between) - 6


def test_each_scene_plays_its_own_music_or_none(builds: Builds, stretches: Stretches) -> None:
    music = mono_samples(builds.music / "episode.mp4")
    theme_up = tone_db(music, THEME, *stretches.between)

    # the gate scene: the theme only; the hall: its own tone only (ducked); the dawn: no music
    assert tone_db(music, HALL, *stretches.between) <= theme_up - 30
    assert tone_db(music, HALL, *stretches.hall) >= theme_up - 25
    assert tone_db(music, THEME, *stretches.hall) <= theme_up - 30
    assert max(tone_db(music, f, *stretches.dawn) for f in (THEME, HALL)) <= theme_up - 30
