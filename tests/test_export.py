"""Editor exports (fanren/export/, fanren/engines/export.py): every export read back with the real
libraries (OpenTimelineIO, its FCP XML adapter, pyJianYingDraft) and checked against the episode the
same build made: its shots' frames, its lines' WAVs, its subtitles (episode.srt) and report.json,
whose `timeline` (fanren/export/report.py) every export must agree with to the frame."""

from __future__ import annotations

import itertools
import json
import math
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import opentimelineio as otio
import pyJianYingDraft as jianying
import pytest
from conftest import REPO, SMALL_DRAMA, fanren, ran, report, write_drama
from speech_servers import closed_port_url

from fanren.build import open_session
from fanren.check import check_nodes
from fanren.executors.local import EnginePool
from fanren.export.report import TimelineMemo, report_timeline
from fanren.media import probe, wav_duration

FPS = 12  # SMALL_DRAMA's
FORMATS = ["otio", "fcpxml", "jianying"]
# the gate scene plays a 1.5 s tune, shorter than its two shots: the episode loops it
EXPORT_DRAMA = SMALL_DRAMA.replace('setting = "a mountain gate in the mist"',
                                   'setting = "a mountain gate in the mist"\nmusic = { file = "music/tune.wav", volume = 0.5 }'
                                   ) + '\n[export]\nformats = ["otio", "fcpxml", "jianying"]\n'
EXPORT_NODES = {"export:otio", "export:fcpxml", "export:jianying"}
PICTURES = {"picture:s1", "picture:s2", "picture:s3"}  # the shots burn their subtitles in (the default)


def write_tune(folder: Path) -> None:
    (folder / "music").mkdir(parents=True, exist_ok=True)
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                    "sine=frequency=330:sample_rate=48000:duration=1.5", str(folder / "music" / "tune.wav")],
                   check=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = write_drama(tmp_path_factory.mktemp("export") / "drama", EXPORT_DRAMA)
    write_tune(folder)
    result = fanren("build", folder)
    assert result.code == 0, result.stderr
    return folder


@pytest.fixture
def drama(built: Path, tmp_path: Path) -> Path:
    """A fresh copy of the built drama (cache and out/ included)."""
    target = tmp_path / "drama"
    shutil.copytree(built, target, symlinks=True)
    return target


def srt_cues(srt: Path) -> list[tuple[Fraction, Fraction, str]]:
    def seconds(stamp: str) -> Fraction:
        h, m, rest = stamp.split(":")
        s, ms = rest.split(",")
        return Fraction(int(h) * 3600 + int(m) * 60 + int(s)) + Fraction(int(ms), 1000)

    cues = []
    for block in srt.read_text(encoding="utf-8").strip().split("\n\n"):
        _, times, *rows = block.split("\n")
        start, end = times.split(" --> ")
        cues.append((seconds(start), seconds(end), "\n".join(rows)))
    return cues


def frames_of(video: Path) -> int:
    info = probe(video)
    assert info.frames is not None
    return info.frames


def line_files(out: Path) -> list[str]:
    """The lines' media, in episode order (shot, then line number)."""
    order = {"s1": 0, "s2": 1, "s3": 2}
    names = [p.name for p in (out / "media" / "lines").iterdir()]
    return sorted(names, key=lambda n: (order[n.split("-")[0]], int(n.split("-")[1].split(".")[0])))


def exact(value: float) -> Fraction:
    """A time of report.json as the exact decimal it was written as (cues: whole centiseconds)."""
    return Fraction(str(value))


def timeline_lines(timeline: dict) -> list[dict]:
    return [line for shot in timeline["shots"] for line in shot["lines"]]


# ── the graph ────────────────────────────────────────────────────────────────


def test_every_format_is_a_node_of_the_build_reading_every_shot_and_line(built: Path) -> None:
    nodes = {n["id"]: n for n in report(built)["nodes"]}
    assert {nid for nid in nodes if nid.split(":")[0] in ("export", "picture")} == EXPORT_NODES | PICTURES
    assert {nodes[nid]["status"] for nid in EXPORT_NODES | PICTURES} == {"ran"}
    session = open_session(built)
    node = session.graph["export:otio"]
    assert node.inputs == ("shot:s1", "picture:s1", "line:s1:0", "shot:s2", "picture:s2", "line:s2:0",
                           "line:s2:1", "shot:s3", "picture:s3", "line:s3:0")
    assert node.reads["shot:s2"] == ("timing.json",)
    assert node.reads["picture:s2"] == ("picture.mp4",)
    assert node.reads["line:s2:1"] == ("speech.wav", "cues.json")
    picture = session.graph["picture:s2"]
    assert (picture.inputs, picture.reads) == (("clip:s2", "shot:s2"), {"shot:s2": ("timing.json",)})
    assert node.sources == ("music/tune.wav",)
    assert node.params["libraries"] == {"opentimelineio": otio.__version__}
    assert not any(d.stale for d in session.decisions)


def test_editing_one_line_reruns_its_speech_its_shot_and_the_exports_and_nothing_else(drama: Path) -> None:
    toml = drama / "drama.toml"
    toml.write_text(toml.read_text(encoding="utf-8").replace("他点了点头。", "他终于点了点头。"),
                    encoding="utf-8")
    result = fanren("build", drama)
    assert result.code == 0, result.stderr
    # the shot's picture too: the new line makes the shot longer
    assert ran(drama) == {"line:s3:0", "shot:s3", "picture:s3", "subtitles", "episode", "storyboard",
                          *EXPORT_NODES}
    texts = [m.name for m in otio.adapters.read_from_file(str(drama / "out" / "draft" / "episode.otio")).tracks.markers]
    assert "他终于点了点头。" in texts
    timeline = report(drama)["timeline"]  # laid out again, not the memo of the last build's
    assert [c["text"] for c in timeline["cues"]] == texts
    assert timeline_lines(timeline)[-1]["text"] == "他终于点了点头。"


def test_an_export_rendered_again_gives_the_same_bytes(built: Path) -> None:
    session = open_session(built)
    records = {d.node.id: d.record for d in session.decisions if d.record is not None}
    pool = EnginePool(session.engines.by_family())
    checked: list[str] = []
    mismatches = check_nodes(session.graph, records, pool, session.cache, built, kinds={"export", "picture"},
                             on_node=lambda done, total, node: checked.append(node.id))
    assert set(checked) == EXPORT_NODES | PICTURES
    assert mismatches == []


def video_frames(video: Path) -> list[str]:
    """The md5 of each decoded frame of the video stream."""
    out = subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", str(video), "-map", "0:v",
                          "-f", "framemd5", "-"], check=True, capture_output=True, text=True).stdout
    return [row.split(",")[-1].strip() for row in out.splitlines() if not row.startswith("#")]


def test_the_exported_shots_carry_no_burned_subtitles(built: Path, drama: Path) -> None:
    """The pictures of a drama that burns its subtitles are frame for frame the shots of the same
    drama with `subtitles = "none"`, whose shots the export then references as they are."""
    toml = drama / "drama.toml"
    toml.write_text(toml.read_text(encoding="utf-8").replace('fps = 12\n', 'fps = 12\nsubtitles = "none"\n'),
                    encoding="utf-8")
    result = fanren("build", drama)
    assert result.code == 0, result.stderr
    assert not any(nid.startswith("picture:") for nid in (n["id"] for n in report(drama)["nodes"]))
    assert {"shot:s1", "shot:s2", "shot:s3"} <= ran(drama)
    for shot in ("s1", "s2", "s3"):
        burned = video_frames(built / "out" / "draft" / "media" / "shots" / f"{shot}.mp4")
        clean = video_frames(drama / "out" / "draft" / "media" / "shots" / f"{shot}.mp4")
        assert len(burned) == frames_of(built / "out" / "draft" / "media" / "shots" / f"{shot}.mp4")
        assert burned == clean
    # ... while the shots of the burning drama differ from them: they do carry the text
    session = open_session(built)
    record = session.decision("shot:s1").record
    assert record is not None
    assert video_frames(session.cache.object_for_use(record, "shot.mp4")) != video_frames(
        built / "out" / "draft" / "media" / "shots" / "s1.mp4")
    assert probe(built / "out" / "draft" / "media" / "shots" / "s1.mp4").audio is None


# ── report.json's timeline ───────────────────────────────────────────────────


def test_report_json_holds_the_episodes_timeline_as_its_files_have_it(built: Path) -> None:
    out = built / "out" / "draft"
    timeline = report(built)["timeline"]
    assert (timeline["fps"], timeline["audio_rate"]) == (FPS, 48000)
    assert timeline["frames"] == frames_of(out / "episode.mp4")
    assert timeline["duration"] == round(timeline["frames"] / FPS, 6)
    # the shots end to end, each exactly the frames of its picture
    shots = timeline["shots"]
    assert [s["id"] for s in shots] == ["s1", "s2", "s3"]
    position = 0
    for shot in shots:
        assert shot["start_frame"] == position
        assert shot["frames"] == frames_of(out / "media" / "shots" / f"{shot['id']}.mp4")
        assert (shot["start"], shot["duration"]) == (round(position / FPS, 6), round(shot["frames"] / FPS, 6))
        position += shot["frames"]
    assert position == timeline["frames"]
    # each shot's lines, in order, each exactly its WAV's samples, inside its shot, one after another
    assert [[(line["id"], line["who"], line["text"]) for line in shot["lines"]] for shot in shots] == [
        [("line:s1:0", "narrator", "山门在雾中。")],
        [("line:s2:0", "narrator", "长老拦住了她。"), ("line:s2:1", "elder", "你为何而来？")],
        [("line:s3:0", "narrator", "他点了点头。")]]
    for shot in shots:
        shot_start = Fraction(shot["start_frame"], FPS)
        shot_end = shot_start + Fraction(shot["frames"], FPS)
        for line in shot["lines"]:
            _, n = line["id"].rsplit(":", 1)
            wav = out / "media" / "lines" / f"{shot['id']}-{n}.wav"
            assert line["samples"] == round(wav_duration(wav) * 48000)
            start = Fraction(line["start_sample"], 48000)
            assert shot_start < start and start + Fraction(line["samples"], 48000) <= shot_end
            assert (line["start"], line["duration"]) == (round(float(start), 6),
                                                         round(line["samples"] / 48000, 6))
    lines = timeline_lines(timeline)
    assert all(a["start_sample"] + a["samples"] < b["start_sample"] for a, b in itertools.pairwise(lines))
    # the cues are exactly episode.srt's, to the millisecond it writes
    assert [(exact(c["start"]), exact(c["end"]), c["text"]) for c in timeline["cues"]] == srt_cues(
        out / "episode.srt")
    assert [c["who"] for c in timeline["cues"]] == ["narrator", "narrator", "elder", "narrator"]


def test_the_timeline_memo_answers_only_for_the_digest_it_was_laid_out_under(built: Path, drama: Path) -> None:
    session = open_session(drama)
    records = {d.node.id: d.record for d in session.decisions if d.record is not None}
    laid_out = report_timeline(session.graph, "", records.__getitem__, session.cache, drama)  # no memo
    assert laid_out == report(built)["timeline"]
    memo = TimelineMemo(session.cache, drama, "draft")
    assert memo.file.parent == drama / ".fanren-cache" / "timelines"
    # a memo of another key (a drama edited since) is not used, and is replaced by the right one
    memo.put("", "0" * 32, {"fps": 1})
    memo.save()
    assert fanren("build", drama).code == 0 and ran(drama) == set()
    assert report(drama)["timeline"] == laid_out
    [(key, timeline)] = json.loads(memo.file.read_text(encoding="utf-8"))["episodes"].values()
    assert key != "0" * 32 and timeline == laid_out
    # a damaged memo file is no memo
    memo.file.write_text('{"version": 1, "episodes": ', encoding="utf-8")
    assert fanren("build", drama).code == 0
    assert report(drama)["timeline"] == laid_out
    assert TimelineMemo(session.cache, drama, "draft").get("", key) == laid_out


def test_a_build_whose_episode_did_not_resolve_reports_no_timeline(drama: Path) -> None:
    assert "timeline" in report(drama)
    toml = drama / "drama.toml"
    toml.write_text(toml.read_text(encoding="utf-8").replace(
        'video = { engine = "kenburns", seconds = 1.0 }\n',
        'video = { engine = "kenburns", seconds = 1.0 }\n'
        f'voice = {{ engine = "cosyvoice", url = "{closed_port_url()}", retries = 0, timeout = 2 }}\n'),
        encoding="utf-8")
    result = fanren("build", drama, "--keep-going", timeout=120)
    assert result.code == 1, result.stderr
    written = report(drama)
    statuses = {n["id"]: n["status"] for n in written["nodes"]}
    assert (statuses["line:s1:0"], statuses["episode"], statuses["export:otio"]) == (
        "failed", "skipped", "skipped")
    assert "timeline" not in written  # the last build's timeline is not left standing either


# ── OpenTimelineIO ───────────────────────────────────────────────────────────


def test_the_otio_timeline_has_the_shots_lines_music_and_subtitles_of_the_episode(built: Path) -> None:
    out = built / "out" / "draft"
    timeline = otio.adapters.read_from_file(str(out / "episode.otio"))
    assert timeline.name == "试炼"
    assert [(t.name, t.kind) for t in timeline.tracks] == [("Shots", "Video"), ("Speech", "Audio"),
                                                           ("Music", "Audio")]
    shots, speech, music = timeline.tracks
    # the shots end to end, each exactly the frames of its file, together exactly the episode's
    assert [c.name for c in shots.find_clips()] == ["s1", "s2", "s3"]
    for clip in shots.find_clips():
        assert clip.media_reference.target_url == f"media/shots/{clip.name}.mp4"
        assert clip.duration() == otio.opentime.RationalTime(frames_of(out / "media" / "shots" / f"{clip.name}.mp4"), FPS)
    assert shots.duration().value == frames_of(out / "episode.mp4")
    # each line's speech, exactly its WAV's length
    lines = list(speech.find_clips())
    assert [c.media_reference.target_url for c in lines] == [f"media/lines/{n}" for n in line_files(out)]
    assert [c.name for c in lines][-1] == "narrator: 他点了点头。"
    for clip in lines:
        seconds = wav_duration(out / clip.media_reference.target_url)
        assert clip.duration().rate == 48000
        assert clip.duration().value == round(seconds * 48000)
    # the music under the gate scene (shots s1 and s2): one clip from the episode's start
    tune = list(music.find_clips())
    assert [c.media_reference.target_url for c in tune] == ["media/music/music/tune.wav"]
    assert tune[0].range_in_parent().start_time.value == 0
    s1, s2 = list(shots.find_clips())[:2]
    assert tune[0].duration().to_seconds() == pytest.approx((s1.duration() + s2.duration()).to_seconds(),
                                                            abs=1 / 48000)
    assert tune[0].metadata["fanren"]["volume"] == 0.5
    # the subtitles: exactly episode.srt's cues, each within a frame of its time there
    cues = srt_cues(out / "episode.srt")
    markers = list(timeline.tracks.markers)
    assert [m.name for m in markers] == [text for _, _, text in cues]
    for marker, (start, end, _) in zip(markers, cues, strict=True):
        assert abs(marker.marked_range.start_time.to_seconds() - float(start)) <= 0.5 / FPS
        assert abs(marker.marked_range.end_time_exclusive().to_seconds() - float(end)) <= 1 / FPS
    # ... and exactly report.json's timeline: each shot's start and length in frames, each line's
    # in samples, each cue's text and time
    expected = report(built)["timeline"]
    frame = otio.opentime.RationalTime
    assert [(c.name, c.range_in_parent().start_time, c.duration()) for c in shots.find_clips()] == [
        (s["id"], frame(s["start_frame"], FPS), frame(s["frames"], FPS)) for s in expected["shots"]]
    assert [(c.name, c.range_in_parent().start_time.value, c.duration().value) for c in lines] == [
        (f"{line['who']}: {line['text']}", line["start_sample"], line["samples"])
        for line in timeline_lines(expected)]
    assert [(m.name, m.marked_range.start_time.value, m.metadata["fanren"]["start"], m.metadata["fanren"]["end"])
            for m in markers] == [(c["text"], round(exact(c["start"]) * FPS), c["start"], c["end"])
                                  for c in expected["cues"]]


def test_the_fcp_xml_reads_back_through_otios_adapter_with_the_same_clips(built: Path) -> None:
    out = built / "out" / "draft"
    timeline = otio.adapters.read_from_file(str(out / "episode.xml"), adapter_name="fcp_xml")
    video = [t for t in timeline.tracks if t.kind == "Video"]
    audio = [t for t in timeline.tracks if t.kind == "Audio"]
    assert len(video) == 1 and len(audio) == 2
    assert [c.name for c in video[0].find_clips()] == ["s1", "s2", "s3"]
    # written at a 24 fps timebase (12 fps is no SMPTE rate): every frame of the drama is two
    assert [(c.duration().rate, c.duration().value) for c in video[0].find_clips()] == [
        (24, 2 * frames_of(out / "media" / "shots" / f"{s}.mp4")) for s in ("s1", "s2", "s3")]
    assert video[0].duration().value == 2 * frames_of(out / "episode.mp4")
    speech = list(audio[0].find_clips())
    assert [Path(c.media_reference.target_url).name for c in speech] == line_files(out)
    for clip in speech:  # FCP 7 XML counts in frames: each line within half a frame of its WAV
        assert clip.duration().rate == 24
        assert abs(clip.duration().value - wav_duration(out / "media" / "lines" / Path(
            clip.media_reference.target_url).name) * 24) <= 0.5
    markers = [m for m in timeline.tracks.markers] or [m for t in timeline.tracks for m in t.markers]
    assert [m.name for m in markers] == [text for _, _, text in srt_cues(out / "episode.srt")]
    # against report.json's timeline: the shots to the frame (two of the timebase's each), the
    # lines and cues each within a frame of the timebase
    expected = report(built)["timeline"]
    assert [(c.name, c.range_in_parent().start_time.value, c.duration().value)
            for c in video[0].find_clips()] == [(s["id"], 2 * s["start_frame"], 2 * s["frames"])
                                                for s in expected["shots"]]
    assert len(speech) == len(timeline_lines(expected)) == 4
    for clip, line in zip(speech, timeline_lines(expected), strict=True):
        _, shot_id, n = line["id"].split(":")
        assert Path(clip.media_reference.target_url).name == f"{shot_id}-{n}.wav"
        assert abs(clip.range_in_parent().start_time.value - Fraction(line["start_sample"], 48000) * 24) <= 1
        assert abs(clip.duration().value - Fraction(line["samples"], 48000) * 24) <= 0.5
    assert [m.name for m in markers] == [c["text"] for c in expected["cues"]]
    for marker, cue in zip(markers, expected["cues"], strict=True):
        assert marker.marked_range.start_time.rate == 24
        assert abs(marker.marked_range.start_time.value - exact(cue["start"]) * 24) <= 0.5


def test_the_out_folder_can_move_and_every_otio_and_fcp_reference_still_finds_its_file(drama: Path,
                                                                                        tmp_path: Path) -> None:
    moved = tmp_path / "elsewhere" / "draft"
    shutil.move(str(drama / "out" / "draft"), moved)
    shutil.rmtree(drama)  # nothing of the drama folder or its cache is left to point at
    for file, adapter in (("episode.otio", None), ("episode.xml", "fcp_xml")):
        timeline = otio.adapters.read_from_file(str(moved / file), adapter_name=adapter)
        urls = [c.media_reference.target_url for c in timeline.find_clips()]
        assert len(urls) == 3 + 4 + 1
        for url in urls:
            assert not Path(url).is_absolute()
            assert (moved / url).is_file(), url


# ── Jianying ─────────────────────────────────────────────────────────────────


def test_the_jianying_draft_loads_in_pyjianyingdraft_with_editable_tracks(built: Path) -> None:
    out = built / "out" / "draft"
    draft = jianying.DraftFolder(str(out)).load_template("jianying")
    tracks = {t.name: t for t in draft.imported_tracks}
    assert {name: (t.track_type, len(t.segments)) for name, t in tracks.items()} == {
        "镜头": (jianying.TrackType.video, 3), "台词": (jianying.TrackType.audio, 4),
        # the 1.5 s tune under the two gate shots: again from its start after each 1.5 s
        "音乐": (jianying.TrackType.audio, math.ceil(sum(frames_of(out / "media" / "shots" / f"{s}.mp4")
                                                          for s in ("s1", "s2")) / FPS / 1.5)),
        "字幕": (jianying.TrackType.text, len(srt_cues(out / "episode.srt")))}
    assert [s.source_timerange.start for s in tracks["音乐"].segments] == [0] * len(tracks["音乐"].segments)
    assert (draft.width, draft.height) == (1280, 720)
    assert draft.fps == FPS
    # shots end to end, each its frames (in microseconds), the whole the episode's length
    shots = tracks["镜头"].segments
    position = 0
    for segment, shot in zip(shots, ("s1", "s2", "s3"), strict=True):
        assert segment.target_timerange.start == position
        assert abs(segment.target_timerange.duration - frames_of(out / "media" / "shots" / f"{shot}.mp4")
                   * 1_000_000 / FPS) <= 1
        position = segment.target_timerange.end
    assert position == round(frames_of(out / "episode.mp4") * 1_000_000 / FPS) == draft.duration
    # every material is a file of out/draft/media (absolute: Jianying resolves no other path)
    content = json.loads((out / "jianying" / "draft_content.json").read_text(encoding="utf-8"))
    paths = [m["path"] for kind in ("videos", "audios") for m in content["materials"][kind]]
    assert sorted(Path(p).relative_to(out.resolve()).as_posix() for p in paths) == sorted(
        [f"media/shots/{s}.mp4" for s in ("s1", "s2", "s3")] + [f"media/lines/{n}" for n in line_files(out)]
        + ["media/music/music/tune.wav"])
    assert all(Path(p).is_file() for p in paths)
    # the shots' own sound is muted: the speech track carries it, one line a segment
    assert [s.raw_data["volume"] for s in shots] == [0.0, 0.0, 0.0]
    # the subtitles are text segments holding exactly the cues of episode.srt
    texts = {m["id"]: json.loads(m["content"])["text"] for m in content["materials"]["texts"]}
    assert [texts[s.material_id] for s in tracks["字幕"].segments] == [t for _, _, t in srt_cues(out / "episode.srt")]
    # against report.json's timeline: shots to the microsecond of their frames, lines to the
    # microsecond of their first sample (their ends within the millisecond mediainfo reads WAVs
    # to), subtitles exactly at their cues
    expected = report(built)["timeline"]
    assert draft.duration == round(Fraction(expected["frames"], FPS) * 1_000_000)
    assert len(shots) == len(expected["shots"])
    for segment, shot in zip(shots, expected["shots"], strict=True):
        assert segment.target_timerange.start == round(Fraction(shot["start_frame"], FPS) * 1_000_000)
        assert abs(segment.target_timerange.duration - Fraction(shot["frames"], FPS) * 1_000_000) <= 1
    speech = tracks["台词"].segments
    assert len(speech) == len(timeline_lines(expected))
    for segment, line in zip(speech, timeline_lines(expected), strict=True):
        assert segment.target_timerange.start == round(Fraction(line["start_sample"], 48000) * 1_000_000)
        assert abs(segment.target_timerange.duration - Fraction(line["samples"], 48000) * 1_000_000) <= 1000
    assert [(texts[s.material_id], s.target_timerange.start, s.target_timerange.end)
            for s in tracks["字幕"].segments] == [(c["text"], round(exact(c["start"]) * 1_000_000),
                                                  round(exact(c["end"]) * 1_000_000)) for c in expected["cues"]]
    meta = json.loads((out / "jianying" / "draft_meta_info.json").read_text(encoding="utf-8"))
    assert meta["draft_name"] == "试炼" and meta["draft_fold_path"] == str((out / "jianying").resolve())


def test_the_cached_draft_holds_relative_paths_and_no_random_ids(built: Path) -> None:
    session = open_session(built)
    record = session.decision("export:jianying").record
    assert record is not None
    text = session.cache.object_for_use(record, "draft_content.json").read_text(encoding="utf-8")
    content = json.loads(text)
    assert sorted(m["path"] for m in content["materials"]["videos"]) == [
        "media/shots/s1.mp4", "media/shots/s2.mp4", "media/shots/s3.mp4"]
    assert str(session.cache.root) not in text and str(built) not in text


# ── bad input ────────────────────────────────────────────────────────────────


def test_an_unknown_format_in_drama_toml_is_bad_input_with_the_closest_name(tmp_path: Path) -> None:
    folder = write_drama(tmp_path / "d", SMALL_DRAMA + '\n[export]\nformats = ["otio", "jianyin"]\n')
    result = fanren("status", folder)
    assert result.code == 2
    assert result.stderr == (f"error: {folder / 'drama.toml'}: export.formats[1]: expected one of 'otio', "
                             "'fcpxml' or 'jianying', got 'jianyin' (did you mean 'jianying'?)\n")
    write_drama(folder, SMALL_DRAMA + '\n[export]\nformat = ["otio"]\n')
    result = fanren("status", folder)
    assert result.code == 2
    assert result.stderr == (f"error: {folder / 'drama.toml'}: export.format: expected a known key, "
                             "got unknown key 'format' (did you mean 'formats'?)\n")


def test_fanren_export_refuses_an_unknown_format_and_a_drama_without_formats(tmp_path: Path) -> None:
    folder = write_drama(tmp_path / "d")
    result = fanren("export", folder, "--format", "otio,fcpxlm")
    assert (result.code, result.stderr) == (2, ("error: --format: unknown format 'fcpxlm' (did you mean "
                                                "'fcpxml'? formats: otio, fcpxml, jianying)\n"))
    result = fanren("export", folder)
    assert (result.code, result.stderr) == (2, (f"error: {folder / 'drama.toml'}: no [export] formats; pass "
                                                "--format (one or more of otio, fcpxml, jianying, comma-separated)\n"))
    assert not (folder / "out").exists() and not (folder / ".fanren-cache").exists()


def test_fanren_export_writes_the_formats_asked_for_from_the_cache(drama: Path) -> None:
    toml = drama / "drama.toml"
    toml.write_text(toml.read_text(encoding="utf-8").replace(
        'formats = ["otio", "fcpxml", "jianying"]', "formats = []"), encoding="utf-8")
    result = fanren("export", drama, "--format", "otio", "--quiet")
    assert result.code == 0, result.stderr
    assert result.stdout == f"{drama / 'out' / 'draft' / 'episode.otio'}\n"
    assert ran(drama) == set()  # the export and everything it reads were cached
    assert {n["id"] for n in report(drama)["nodes"] if n["id"].startswith("export:")} == {"export:otio"}


@pytest.mark.slow
def test_the_example_drama_exports_in_the_draft_profile(tmp_path: Path) -> None:
    folder = tmp_path / "xianxia"
    shutil.copytree(REPO / "examples" / "xianxia", folder, ignore=shutil.ignore_patterns("out", ".fanren-cache"))
    result = fanren("export", folder, "--format", ",".join(FORMATS), "-q")
    assert result.code == 0, result.stderr
    out = folder / "out" / "draft"
    assert result.stdout.split() == [str(out / n) for n in ("episode.otio", "episode.xml",
                                                             "jianying/draft_content.json",
                                                             "jianying/draft_meta_info.json")]
    timeline = otio.adapters.read_from_file(str(out / "episode.otio"))
    shots = timeline.tracks[0]
    assert len(list(shots.find_clips())) == 14
    assert shots.duration().value == frames_of(out / "episode.mp4")
    assert [m.name for m in timeline.tracks.markers] == [t for _, _, t in srt_cues(out / "episode.srt")]
    draft = jianying.DraftFolder(str(out)).load_template("jianying")
    tracks = {t.name: t for t in draft.imported_tracks}
    assert len(tracks["镜头"].segments) == 14
    assert len(tracks["字幕"].segments) == len(srt_cues(out / "episode.srt"))
    assert draft.duration == round(frames_of(out / "episode.mp4") * 1_000_000 / draft.fps)
