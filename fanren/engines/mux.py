"""The built-in ffmpeg engine: a shot (clip retimed to its speech), the subtitles, the episode.

A shot is rendered to its final pixels, its own subtitles burned in, so that the episode only
joins the shots' video packets (no decode, no encode) and encodes its audio: editing one line
costs one shot's encode, however long the episode.

The filter graphs are written as plain ffmpeg argument lists rather than with a Python builder. Each
graph is a few short chains (one per input) joined by a single concat, so as strings they read
exactly like the ffmpeg filter documentation a maintainer will check them against, and the flags
that make output bytes deterministic (bitexact, no metadata, a fixed encoder thread count) stay
visible in one place instead of being spread over builder calls. Everything still goes through
`fanren.media.run_ffmpeg`, so a failure is an EngineError with the tail of ffmpeg's log.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import EngineError
from ..fonts import cjk_font
from ..media import Probe, probe, run_ffmpeg, wav_duration
from .base import Engine, Request
from .mux_subtitles import MIN_CUE, Cue, episode_cues, shot_cues, write_ass, write_srt

LINE_GAP = 0.25       # seconds of silence between two lines of one shot (at least)
# A line's last cue stays up this long before the next line's first cue (or the cut) takes its
# place: 0.7 s to be read, and a centisecond for the rounding of the SRT and ASS times.
CUE_ROOM = MIN_CUE / 100 + 0.01
AUDIO_RATE = 48000
MUSIC_FADE = 0.5      # seconds: music fades in where it starts and out where it stops or changes

SUBTITLE_MODES = ("burn", "soft", "none")

BITEXACT = ["-map_metadata", "-1", "-map_chapters", "-1", "-fflags", "+bitexact"]
# The episode encodes all of its audio on every build, so this encoder's speed is the episode's.
# For the 127 s example, CPU seconds and the signal-to-noise ratio of the decoded AAC: default
# (twoloop) coder 8.7 s, 29.7 dB; fast coder 4.1 s, 50.9 dB; fast coder without mid/side stereo
# 2.2 s, 39.8 dB. Without mid/side each channel still gets 80 kb/s, plenty for speech.
AUDIO_CODEC = ["-c:a", "aac", "-aac_coder", "fast", "-aac_ms", "0", "-b:a", "160k",
               "-ar", str(AUDIO_RATE), "-ac", "2", "-flags:a", "+bitexact"]
# dB kept below the true-peak ceiling: the limiter sees samples, not the peaks between them, and
# AAC adds its own overshoot (measured: a -2 dB limit came out at -2.0 to -1.7 dBTP)
LIMITER_HEADROOM = 0.5
# Music ducks under speech: a compressor on the music, keyed by the speech. The key is levelled
# first (30 dB up, then limited) so that the ducking is about as deep whatever the voice engine's
# level: measured on espeak-ng speech at -19, -39 and -49 LUFS, the music under the words drops
# 16, 15 and 13 dB (keyed by the speech as it is: 15, 1 and 0 dB). It falls within 20 ms of a word
# and is back within 1 dB 0.4 to 0.5 s after the speech stops, so it stays down through the
# 0.12 s between sentences and comes up in the pause between shots.
DUCKING_KEY = "volume=30dB,alimiter=limit=0.25:level=false"
DUCKING = "sidechaincompress=threshold=0.02:ratio=6:attack=20:release=400"


MOTIONS = ("interpolate", "duplicate")
# Motion-compensated interpolation (ffmpeg's minterpolate): bidirectional motion estimation,
# overlapped-block compensation, variable-size blocks. A clip of 8 fps (CogVideoX) shown at 24 fps
# gets two new in-between frames per pair instead of each frame three times. Its cost per second of
# output is in docs/performance.md (bench/motion_bench.py). minterpolate stops one source frame
# short of the end (it has no frame after the last to interpolate towards): the clip's last frame is
# repeated once before it, so the shot still reaches that frame at its time.
MOTION_INTERPOLATION = ("tpad=stop_mode=clone:stop=1,"
                        "minterpolate=fps={fps}:mi_mode=mci:mc_mode=aobmc:me_mode=bidir:vsbmc=1")


def shot_video_codec(fps: int) -> list[str]:
    """x264 settings of every shot: the episode copies the shots' packets, so they must all match.

    stitchable=1 keeps x264 from fitting its stream headers (SPS/PPS) to a shot's content, so every
    shot of an episode has the same headers and the concat demuxer can join them without a decode.
    x264's bytes depend on its thread count; a fixed count keeps a shot identical on every machine.

    veryfast at CRF 18, measured on three 8 s shots of the xianxia example against a lossless
    encode: SSIM 0.9980, PSNR 49.0 dB, 2891 kB, 6.6 CPU s; fast at CRF 20 (the episode's old
    setting): 0.9982, 49.0 dB, 2757 kB, 13.3 CPU s; veryfast at CRF 20: 0.9974, 47.4 dB, 2244 kB.
    """
    return ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-pix_fmt", "yuv420p",
            "-profile:v", "high", "-g", str(fps * 2), "-x264-params", "stitchable=1",
            "-threads", "4", "-flags:v", "+bitexact"]


class MuxEngine(Engine):
    family = "mux"
    name = "mux"
    options_known = frozenset[str]()  # takes no options
    # 2: shots burn their own subtitles, the episode copies their video
    # 3: music per scene, ducked under speech and faded at scene changes; a line's last cue gets 0.7 s
    # 4: a sentence too long for two rows is several cues (it was one cue in a tiny font)
    version = "4"
    kinds = frozenset({"shot", "subtitles", "episode"})
    encodes = True

    def run(self, request: Request) -> dict[str, Path]:
        if request.kind == "shot":
            return render_shot(request)
        if request.kind == "subtitles":
            return render_subtitles(request)
        if request.kind == "episode":
            return render_episode(request)
        raise EngineError(f"the mux engine cannot render a {request.kind!r} node "
                          f"(it renders {', '.join(sorted(self.kinds))})")


# ── shot ─────────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class PlacedLine:
    """One line of a shot with where its speech starts, in seconds from the shot's start."""

    who: str
    speech: Path
    cues: list[dict[str, Any]]
    start: float
    duration: float


def render_shot(request: Request) -> dict[str, Path]:
    """shot.mp4: the clip fitted to the shot's duration, over its lines' speech, its subtitles
    burned in when the mode is "burn"; and timing.json."""
    params = request.params
    width, height = (int(v) for v in params["size"])
    fps = int(params["fps"])
    mode = _subtitle_mode(params)
    clip = _single_input(request, "clip", "clip.mp4")
    lines = place_lines(params["lines"], request.inputs, float(params["lead_in"]))
    clip_seconds, clip_fps = clip_timing(clip)
    frames = shot_frames(lines, float(params["pause"]), params.get("min_seconds"), clip_seconds, fps)
    duration = frames / fps
    fit = str(params["fit"])
    timing = shot_timing(lines, duration)

    video = fit_clip(fit, clip_seconds, duration, float(params["max_slow"]), frames, (width, height), fps,
                     motion=str(params["motion"]), clip_fps=clip_fps)
    ass: Path | None = None
    cues = shot_cues(timing)  # exactly this shot's cues in the episode's SRT and ASS
    if mode == "burn" and cues:
        ass = request.out_dir / "shot.ass"
        write_ass(cues, ass, (width, height), str(params["font"]), str(params["language"]))
        video += burn_filter(ass)
    audio = speech_track(lines, float(params["lead_in"]), round(duration * AUDIO_RATE))
    clip_input = ["-stream_loop", "-1", "-i", str(clip)] if fit == "loop" else ["-i", str(clip)]
    speech_inputs = [arg for line in lines for arg in ("-i", str(line.speech))]
    out = request.out_dir / "shot.mp4"
    # trim ends the video, never -frames:v: that stops the output with audio still in the encoder
    run_ffmpeg([*clip_input, *speech_inputs,
                "-filter_complex", f"[0:v]{video}[v];{audio}",
                "-map", "[v]", "-map", "[a]",
                *shot_video_codec(fps), *AUDIO_CODEC, *BITEXACT, str(out)],
               f"rendering shot {params['shot_id']}")
    if ass is not None:
        ass.unlink()

    timing_file = request.out_dir / "timing.json"
    timing_file.write_text(json.dumps(timing, ensure_ascii=False, indent=1), encoding="utf-8")
    return {"shot.mp4": out, "timing.json": timing_file}


def place_lines(lines: list[Mapping[str, Any]], inputs: Mapping[str, Mapping[str, Path]],
                lead_in: float) -> list[PlacedLine]:
    """Lines one after another: lead_in of silence, then each line's speech with LINE_GAP between,
    or more after a line whose last sentence is too short to be read before the next line starts."""
    placed: list[PlacedLine] = []
    start = lead_in
    for line in lines:
        node = str(line["node"])
        if node not in inputs:
            raise EngineError(f"the shot lists line {node} but its speech was not given as an input")
        speech = inputs[node]["speech.wav"]
        cues = json.loads(Path(inputs[node]["cues.json"]).read_text(encoding="utf-8"))
        duration = wav_duration(speech)
        placed.append(PlacedLine(who=str(line["who"]), speech=speech, cues=cues, start=start,
                                 duration=duration))
        start = max(start + duration + LINE_GAP, last_cue_start(placed[-1]) + CUE_ROOM)
    return placed


def last_cue_start(line: PlacedLine) -> float:
    """Seconds into the shot where the line's last sentence starts (its start if it has no cues)."""
    return line.start + (float(line.cues[-1]["start"]) if line.cues else 0.0)


def clip_timing(clip: Path) -> tuple[float, float | None]:
    """The clip's duration in seconds and its frame rate (None when the file names none)."""
    info = probe(clip)
    return _duration(clip, info), info.fps


def clip_duration(clip: Path) -> float:
    return _duration(clip, probe(clip))


def _duration(clip: Path, info: Probe) -> float:
    if info.video is None:
        raise EngineError(f"{clip.name} has no video stream")
    if info.frames and info.fps:
        return info.frames / info.fps
    if info.duration <= 0:
        raise EngineError(f"{clip.name} has no duration")
    return info.duration


def shot_frames(lines: list[PlacedLine], pause: float, min_seconds: float | None,
                clip_seconds: float, fps: int) -> int:
    """Frames in the shot: its speech plus the pause (and time to read its last cue), at least
    min_seconds; the clip if silent.

    The duration is rounded up to whole frames so that audio and video end together and the
    episode's concatenated timeline (and every subtitle after it) stays exact.
    """
    if lines:
        speech_end = lines[-1].start + lines[-1].duration
        seconds = max(speech_end + pause, last_cue_start(lines[-1]) + CUE_ROOM, min_seconds or 0.0)
    else:
        seconds = min_seconds or clip_seconds
    return max(1, math.ceil(seconds * fps - 1e-6))


def fit_clip(fit: str, clip_seconds: float, duration: float, max_slow: float, frames: int,
             size: tuple[int, int], fps: int, *, motion: str, clip_fps: float | None) -> str:
    """The video filter chain that turns the clip into exactly `frames` frames of the episode format.

    A clip shorter than the shot is slowed (at most max_slow times) when fit is "slow", then its
    last frame is held; "hold" only holds; "loop" relies on the input being looped. A longer clip
    is cut. With motion "interpolate", a clip whose frame rate, once slowed, is below the
    episode's gets the missing frames by motion-compensated interpolation (MOTION_INTERPOLATION);
    with "duplicate", or at the episode's rate already, the fps filter repeats frames.
    """
    if fit not in ("slow", "hold", "loop"):
        raise EngineError(f"unknown fit {fit!r}: expected slow, hold or loop")
    if motion not in MOTIONS:
        raise EngineError(f"unknown motion {motion!r}: expected {' or '.join(MOTIONS)}")
    width, height = size
    chain: list[str] = []
    slow = 1.0
    if fit == "slow" and clip_seconds < duration:
        slow = min(duration / clip_seconds, max_slow)
        chain.append(f"setpts={slow:.6f}*PTS")
    if motion == "interpolate" and clip_fps is not None and clip_fps / slow < fps - 1e-6:
        # after the slow-down, on the clip's own pixels (never more than the model made)
        chain.append(MOTION_INTERPOLATION.format(fps=fps))
    chain += [
        # cover the frame and crop the centre: a clip of another aspect is never letterboxed
        f"scale={width}:{height}:force_original_aspect_ratio=increase",
        f"crop={width}:{height}",
        "setsar=1",
        f"fps={fps}",
        f"tpad=stop_mode=clone:stop_duration={duration:.6f}",
        f"trim=end_frame={frames}",
        # the subtitles are timed from the shot's first frame, whatever the clip's first timestamp
        "setpts=PTS-STARTPTS",
        "format=yuv420p",
    ]
    return ",".join(chain)


def burn_filter(ass: Path) -> str:
    """",ass=…" drawing an ASS file onto the frames, with the CJK font's folder given to libass."""
    fonts = cjk_font().file.parent
    return f",ass=filename={_filter_value(str(ass))}:fontsdir={_filter_value(str(fonts))}"


def speech_track(lines: list[PlacedLine], lead_in: float, total_samples: int) -> str:
    """Filter graph ending in [a]: stereo 48 kHz, lead_in of silence, each line at its start,
    padded to the end."""
    chains: list[str] = []
    labels: list[str] = []
    lead_samples = round(lead_in * AUDIO_RATE)
    if lines and lead_samples > 0:
        chains.append(f"anullsrc=r={AUDIO_RATE}:cl=stereo,atrim=end_sample={lead_samples}[lead]")
        labels.append("[lead]")
    for i, line in enumerate(lines):
        chain = f"[{i + 1}:a]aresample={AUDIO_RATE},aformat=sample_fmts=fltp:channel_layouts=stereo"
        if i < len(lines) - 1:  # the line and the silence up to the next one's start
            chain += "," + _exact_length(round((lines[i + 1].start - line.start) * AUDIO_RATE))
        chains.append(chain + f"[line{i}]")
        labels.append(f"[line{i}]")
    end = f"{_exact_length(total_samples)}[a]"
    if not labels:
        return f"anullsrc=r={AUDIO_RATE}:cl=stereo,{end}"
    return ";".join([*chains, f"{''.join(labels)}concat=n={len(labels)}:v=0:a=1,{end}"])


def shot_timing(lines: list[PlacedLine], duration: float) -> dict[str, Any]:
    cues = [{"start": round(line.start + float(cue["start"]), 4),
             "end": round(line.start + float(cue["end"]), 4),
             "text": str(cue["text"]), "who": line.who}
            for line in lines for cue in line.cues]
    return {"duration": duration, "cues": cues}


# ── subtitles ────────────────────────────────────────────────────────────────


def render_subtitles(request: Request) -> dict[str, Path]:
    """episode.srt and episode.ass: every sentence of every shot, at the shot's place in the episode."""
    params = request.params
    width, height = (int(v) for v in params["size"])
    timings = [json.loads(Path(files["timing.json"]).read_text(encoding="utf-8"))
               for _, files in request.inputs_of_kind("shot")]
    cues: list[Cue] = episode_cues(timings)
    srt = request.out_dir / "episode.srt"
    ass = request.out_dir / "episode.ass"
    write_srt(cues, srt)
    write_ass(cues, ass, (width, height), str(params["font"]), str(params["language"]))
    return {"episode.srt": srt, "episode.ass": ass}


# ── episode ──────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class Segment:
    """One shot of the episode: its file and its exact length in frames and audio samples."""

    file: Path
    frames: int
    samples: int


@dataclass(frozen=True)
class MusicRun:
    """One stretch of music: a file played from its start (looped) over [start, end) samples of
    the episode, fading in and out at its ends."""

    file: Path
    volume: float
    start: int
    end: int


def render_episode(request: Request) -> dict[str, Path]:
    """episode.mp4: the shots' video joined as it is, their audio with the music ducked under it,
    loudness-normalised, and the subtitles as a text track when the mode is "soft" (in "burn" the
    shots carry them already).

    The audio takes up to three ffmpeg passes, each linear in the number of shots:
    1. the shots' audio, cut to the sample, joined into a few float WAVs (SPEECH_CHUNK shots each,
       two at a time): an ffmpeg graph with one input per shot slows down with the square of the
       inputs (1,000 shots: minutes), one with a few dozen does not. Without music this pass
       measures the loudness too;
    2. with music only: those WAVs through the concat demuxer, the music mixed under them, the
       loudness measured;
    3. the same mix with the gain (and limiter) applied, encoded into episode.mp4 beside the shots'
       video packets, which were joined (copied, not decoded) during passes 1 and 2.
    """
    params = request.params
    fps = int(params["fps"])
    mode = _subtitle_mode(params)
    shots = request.inputs_of_kind("shot")
    segments = [_segment(node, files, fps) for node, files in shots]
    if not segments:
        raise EngineError("the episode has no shots")
    total_samples = sum(s.samples for s in segments)
    runs = music_runs(params.get("music") or [], [node for node, _ in shots], segments, request.sources)

    work = request.out_dir / "episode-work"
    work.mkdir(exist_ok=True)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="fanren-video") as side:
        # The video needs no decode and no loudness: it is joined beside the first audio passes.
        video = side.submit(join_video, segments, fps, work)
        # Pass 1; without music the episode's audio is the joined speech, so pass 1 also measures
        # its loudness (each part beside the others) and pass 2 is left out.
        speech, measured = join_speech(segments, work, measure=not runs)
        # The joined speech, then each stretch of music (inputs 1, 2, ... of pass 3).
        audio_inputs = ["-f", "concat", "-safe", "0", "-i", str(speech)]
        audio_inputs += [arg for run in runs for arg in ("-stream_loop", "-1", "-i", str(run.file))]
        if measured is None:
            measured = measure_loudness(audio_inputs, episode_audio(runs, total_samples, 0))
        video_file = video.result()
    loudness = loudness_filter(params["loudness"], measured)
    graph = f"{episode_audio(runs, total_samples, 1)};[mix]{loudness},{_exact_length(total_samples)}[a]"
    subtitle_args: list[str] = []
    srt = _subtitle_file(request, "episode.srt") if mode == "soft" else None
    if srt is not None and srt.read_text(encoding="utf-8").strip():  # ffmpeg reads no SRT without cues
        audio_inputs += ["-i", str(srt)]
        subtitle_args = ["-map", f"{2 + len(runs)}:s", "-c:s", "mov_text"]
    out = request.out_dir / "episode.mp4"
    # Input 0: the joined video, whose packets are copied as they are.
    run_ffmpeg(["-i", str(video_file), *audio_inputs, "-filter_complex", graph,
                "-map", "0:v", "-map", "[a]", *subtitle_args, "-c:v", "copy", *AUDIO_CODEC, *BITEXACT,
                "-movflags", "+faststart", str(out)], "rendering the episode")
    shutil.rmtree(work)
    return {"episode.mp4": out}


def join_video(segments: list[Segment], fps: int, work: Path) -> Path:
    """The shots' video packets through the concat demuxer, copied without a decode. The shots were
    encoded with identical settings (shot_video_codec) and each starts on a keyframe."""
    playlist = work / "shots.ffconcat"
    playlist.write_text(concat_playlist(segments, fps), encoding="utf-8")
    video = work / "video.mp4"
    # auto_convert 0: the packets stay as the shots hold them (length-prefixed, headers in the
    # stream's extradata) instead of being rewritten to Annex B on the way through
    run_ffmpeg(["-f", "concat", "-safe", "0", "-auto_convert", "0", "-i", str(playlist), "-map", "0:v",
                "-c:v", "copy", *BITEXACT, str(video)], "joining the shots' video")
    return video


# Shots per speech WAV of pass 1. ffmpeg's time per input grows with the number of inputs of its
# graph (measured, bench/episode_bench.py: 1,000 shots in one graph took minutes; in 32 graphs of
# 32, a few seconds of CPU).
SPEECH_CHUNK = 32
SPLIT_FROM = 8
SPEECH_WORKERS = 2


def speech_chunks(count: int) -> list[range]:
    """Which shots go into each speech WAV: at most SPEECH_CHUNK, and two WAVs from SPLIT_FROM shots
    on, so that two cores share a short episode too. A function of the count only: the joined
    samples are the same whatever the split, and so is the split (and the measured loudness) on
    every machine."""
    parts = max(2 if count >= SPLIT_FROM else 1, math.ceil(count / SPEECH_CHUNK))
    size = math.ceil(count / parts)
    return [range(start, min(start + size, count)) for start in range(0, count, size)]


def join_speech(segments: list[Segment], work: Path, measure: bool = False) -> tuple[Path, Loudness | None]:
    """Pass 1: every shot's audio cut to exactly its samples, end to end, as float WAVs (no
    quantisation: the AAC decoder's float samples go on unchanged). Returns an ffconcat playlist
    of the WAVs, which the concat demuxer joins sample-exactly (PCM has no priming or padding),
    and with `measure` the loudness of the whole (see `combined_loudness`)."""
    chunks = speech_chunks(len(segments))
    files = [work / f"speech{n:04d}.wav" for n in range(len(chunks))]
    # ebur128 hands its input on unchanged (as doubles, which hold the float samples exactly)
    meter = ",ebur128=peak=true" if measure else ""

    def render(n: int) -> str:
        part = [segments[i] for i in chunks[n]]
        inputs = [arg for s in part for arg in ("-vn", "-i", str(s.file))]
        return run_ffmpeg([*inputs, "-filter_complex", speech_graph(part, meter), "-map", "[speech]",
                           "-c:a", "pcm_f32le", *BITEXACT, str(files[n])],
                          f"joining the audio of shots {chunks[n].start + 1} to {chunks[n].stop}",
                          loglevel="info" if measure else "error")

    if len(chunks) == 1:
        logs = [render(0)]
    else:
        with ThreadPoolExecutor(max_workers=SPEECH_WORKERS, thread_name_prefix="fanren-speech") as pool:
            logs = list(pool.map(render, range(len(chunks))))
    playlist = work / "speech.ffconcat"
    playlist.write_text("ffconcat version 1.0\n" + "".join(f"file {_concat_quote(f)}\n" for f in files),
                        encoding="utf-8")
    return playlist, combined_loudness(logs) if measure else None


_BLOCK = re.compile(r"\bt:\s*[\d.]+\s+TARGET:\S+ LUFS\s+M:\s*(-?[\d.]+|-?inf)")


def combined_loudness(logs: list[str]) -> Loudness:
    """Integrated loudness and true peak of parts joined end to end, from each part's ebur128 log.

    ebur128 prints the momentary loudness (M) every 100 ms: the loudness of the 400 ms block that
    ends there, the very blocks ITU-R BS.1770 gates and averages for the integrated loudness. So
    the blocks of all parts, gated together (absolute gate -70 LUFS, relative gate 10 LU under the
    loudness of what passes the first), give the loudness of the whole; only the three blocks that
    would straddle each join are missing, some 0.3 s in a part of a minute or more. The true peak of
    the whole is the highest of the parts'.
    """
    blocks: list[float] = []
    peaks: list[float] = []
    for log in logs:
        blocks += [float(m) for m in _BLOCK.findall(log)]
        summary = log[log.rfind("Summary:"):]
        peak = re.search(r"Peak:\s+(-?(?:[\d.]+|inf)) dBFS", summary)
        if "Summary:" not in log or peak is None:
            raise EngineError("ffmpeg's ebur128 printed no loudness measurement")
        peaks.append(float(peak.group(1)))
    loud = [m for m in blocks if m > -70.0]
    if not loud:
        return Loudness(integrated=-70.0, true_peak=max(peaks))
    threshold = _mean_loudness(loud) - 10.0
    gated = [m for m in loud if m > threshold]
    return Loudness(integrated=round(_mean_loudness(gated or loud), 2), true_peak=max(peaks))


def _mean_loudness(blocks: list[float]) -> float:
    """The loudness of the mean power of blocks given as loudness (LUFS)."""
    return -0.691 + 10 * math.log10(sum(10 ** ((m + 0.691) / 10) for m in blocks) / len(blocks))


def speech_graph(segments: list[Segment], after: str = "") -> str:
    """Filter graph ending in [speech]: the segments' audio end to end.

    Each shot is its own input so that its audio can be cut to the exact sample: its AAC decodes
    to a little more than its length, as the encoder pads the last frame, and those extra samples
    would push every later shot (and subtitle) a little late.
    """
    chains = [f"[{i}:a]{_exact_length(s.samples)},asetpts=PTS-STARTPTS[a{i}]" for i, s in enumerate(segments)]
    joined = "".join(f"[a{i}]" for i in range(len(segments)))
    return ";".join([*chains, f"{joined}concat=n={len(segments)}:v=0:a=1{after}[speech]"])


def concat_playlist(segments: list[Segment], fps: int) -> str:
    """An ffconcat playlist of the shots' video, each lasting exactly its frames.

    Without `duration` the demuxer would start each shot where the previous file's padded AAC
    ends, a fraction of a frame late, and the drift would add up over the episode. Only the video
    track (id 1) is read: with the audio track in, the playlist would start at the first shot's
    AAC priming, 21 ms before its first frame, and the copied video would start 21 ms late.
    """
    entries = ["ffconcat version 1.0", "stream", "exact_stream_id 1"]
    for segment in segments:
        entries += [f"file {_concat_quote(segment.file)}", f"duration {segment.frames / fps:.6f}"]
    return "\n".join(entries) + "\n"


def _segment(node: str, files: Mapping[str, Path], fps: int) -> Segment:
    shot = files.get("shot.mp4")
    if shot is None:
        raise EngineError(f"{node} gave no shot.mp4")
    if "timing.json" in files:
        duration = float(json.loads(Path(files["timing.json"]).read_text(encoding="utf-8"))["duration"])
    else:
        duration = clip_duration(shot)
    return Segment(file=shot, frames=round(duration * fps), samples=round(duration * AUDIO_RATE))


def music_runs(music: list[Mapping[str, Any]], shot_nodes: list[str], segments: list[Segment],
               sources: Mapping[str, Path]) -> list[MusicRun]:
    """The stretches of music in the episode, from the music of each scene (its shots, file and
    volume). Scenes that follow each other with the same file at the same volume are one stretch:
    the music plays on across the cut instead of starting again."""
    offsets = [0]
    for segment in segments:
        offsets.append(offsets[-1] + segment.samples)
    position = {node: i for i, node in enumerate(shot_nodes)}
    runs: list[MusicRun] = []
    for entry in music:
        shots = [f"shot:{shot}" for shot in entry["shots"]]
        missing = [node for node in shots if node not in position]
        if missing or not shots:
            raise EngineError(f"the music {entry['file']} is under {', '.join(missing) or 'no shots'}, "
                              "which the episode was not given")
        first = position[shots[0]]
        if [position[node] for node in shots] != list(range(first, first + len(shots))):
            raise EngineError(f"the music {entry['file']} is under shots that do not follow each other "
                              f"in the episode: {', '.join(shots)}")
        file = sources.get(str(entry["file"]))
        if file is None:
            raise EngineError(f"the music file {entry['file']} was not given to the episode")
        volume = float(entry["volume"])
        start, end = offsets[first], offsets[first + len(shots)]
        if volume <= 0 or end <= start:
            continue
        if runs and (runs[-1].file, runs[-1].volume, runs[-1].end) == (Path(file), volume, start):
            runs[-1] = MusicRun(runs[-1].file, volume, runs[-1].start, end)
        else:
            runs.append(MusicRun(Path(file), volume, start, end))
    return runs


def episode_audio(runs: list[MusicRun], total_samples: int, first_input: int) -> str:
    """Filter graph ending in [mix]: the joined speech (input first_input), with the music (the
    inputs after it) ducked under it."""
    speech = f"[{first_input}:a]{_exact_length(total_samples)}"
    if not runs:
        return f"{speech}[mix]"
    return ";".join([
        f"{speech},asplit=2[speech][key]",
        music_track(runs, total_samples, first_input + 1),
        f"[key]{DUCKING_KEY}[levelled]",
        f"[music][levelled]{DUCKING}[ducked]",
        "[speech][ducked]amix=inputs=2:duration=first:normalize=0[mix]",
    ])


def music_track(runs: list[MusicRun], total_samples: int, first_input: int) -> str:
    """Filter graph ending in [music]: each stretch of music at its place, faded in and out at its
    ends, and silence where there is none; exactly total_samples long."""
    chains: list[str] = []
    labels: list[str] = []
    position = 0

    def silence(samples: int) -> None:
        label = f"[quiet{len(labels)}]"
        chains.append(f"anullsrc=r={AUDIO_RATE}:cl=stereo,atrim=end_sample={samples}{label}")
        labels.append(label)

    for k, run in enumerate(runs):
        if run.start > position:
            silence(run.start - position)
        length = run.end - run.start
        fade = min(round(MUSIC_FADE * AUDIO_RATE), length // 2)
        chain = (f"[{first_input + k}:a]aresample={AUDIO_RATE},"
                 f"aformat=sample_fmts=fltp:channel_layouts=stereo,volume={run.volume},"
                 f"atrim=end_sample={length},asetpts=PTS-STARTPTS")
        if fade > 0:
            chain += f",afade=t=in:ns={fade},afade=t=out:ss={length - fade}:ns={fade}"
        label = f"[run{k}]"
        chains.append(chain + label)
        labels.append(label)
        position = run.end
    if position < total_samples:
        silence(total_samples - position)
    return ";".join([*chains, f"{''.join(labels)}concat=n={len(labels)}:v=0:a=1[music]"])


@dataclass(frozen=True)
class Loudness:
    integrated: float   # LUFS (ITU-R BS.1770, gated); -70 for silence
    true_peak: float    # dBTP; -inf for silence


def measure_loudness(inputs: list[str], mixed: str) -> Loudness:
    """First pass: the episode audio's integrated loudness and true peak, from ffmpeg's ebur128."""
    # framelog=verbose keeps its ten lines a second out of the info log that carries the summary
    log = run_ffmpeg([*inputs, "-filter_complex", f"{mixed};[mix]ebur128=peak=true:framelog=verbose[a]",
                      "-map", "[a]", "-f", "null", "-"],
                     "measuring the episode's loudness", loglevel="info")
    summary = log[log.rfind("Summary:"):]
    integrated = re.search(r"I:\s+(-?[\d.]+) LUFS", summary)
    peak = re.search(r"Peak:\s+(-?(?:[\d.]+|inf)) dBFS", summary)
    if integrated is None or peak is None:
        raise EngineError("ffmpeg's ebur128 printed no loudness measurement")
    return Loudness(integrated=float(integrated.group(1)), true_peak=float(peak.group(1)))


def loudness_filter(target: Mapping[str, float], measured: Loudness) -> str:
    """Second pass: one gain to the target loudness, and a limiter if that gain lifts the peaks
    over the true-peak ceiling.

    Two loudnorm passes did this before, but loudnorm runs at 192 kHz, and when the gain would
    push a peak over the ceiling (as it does for most speech) its second pass compresses the
    whole episode dynamically. On the 127 s example each loudnorm pass took 7 to 9 s, where the
    ebur128 pass takes 1.5 s (decoding the shots included) and the gain and limiter 0.3 s.
    """
    if not math.isfinite(measured.integrated) or measured.integrated <= -70:
        return "anull"  # silence (or as good as): there is nothing to bring to the target
    gain = target["i"] - measured.integrated
    chain = f"volume={gain:.2f}dB"
    if measured.true_peak + gain > target["tp"]:
        ceiling = 10 ** ((target["tp"] - LIMITER_HEADROOM) / 20)
        chain += f",alimiter=limit={max(ceiling, 0.0625):.6f}:level=false:latency=true"
    return chain


def _subtitle_mode(params: Mapping[str, Any]) -> str:
    mode = str(params["subtitles"])
    if mode not in SUBTITLE_MODES:
        raise EngineError(f"unknown subtitles mode {mode!r}: expected burn, soft or none")
    return mode


def _subtitle_file(request: Request, name: str) -> Path:
    files = request.inputs.get("subtitles")
    if files is None or name not in files:
        raise EngineError(f"subtitles are {request.params['subtitles']!r} but no {name} was given "
                          "to the episode")
    return Path(files[name])


def _filter_value(value: str) -> str:
    """Escape a filter option value for a filtergraph: once for the option, once for the graph."""
    for char in "\\':":
        value = value.replace(char, "\\" + char)
    for char in "\\'[],;":
        value = value.replace(char, "\\" + char)
    return value


def _concat_quote(path: Path) -> str:
    """A path quoted for an ffconcat playlist."""
    return "'" + str(path).replace("'", "'\\''") + "'"


def _exact_length(samples: int) -> str:
    """Pad with silence or cut, to exactly `samples` samples."""
    return f"apad=whole_len={samples},atrim=end_sample={samples}"


def _single_input(request: Request, kind: str, output: str) -> Path:
    found = request.inputs_of_kind(kind)
    if len(found) != 1 or output not in found[0][1]:
        raise EngineError(f"{request.node_id} needs exactly one {kind} input with {output}, "
                          f"got {[node for node, _ in found]}")
    return Path(found[0][1][output])
