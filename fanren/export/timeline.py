"""The one timeline every export is written from: shots on the picture track, each line's speech
and the music on sound tracks, the subtitles as text, all placed exactly as the episode mux
places them.

It is built from the same outputs and the same functions the mux uses (each shot's timing.json,
`place_lines` over the lines' speech.wav and cues.json, `music_runs`, `episode_cues`), so the
timeline and episode.mp4 cannot drift apart: a shot starts on the frame the episode's video
concat starts it on, and a line at the sample the episode's audio places it at.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from ..engines.base import Request
from ..engines.mux import AUDIO_RATE, Segment, music_runs, place_lines
from ..engines.mux_subtitles import episode_cues
from ..errors import EngineError
from . import media_line, media_music, media_shot


@dataclass(frozen=True)
class Item:
    """One piece of media on a track: `media` (relative to out/<profile>/) from its start, placed
    at `start` seconds of the episode for `duration` seconds."""

    name: str
    media: str
    start: Fraction
    duration: Fraction
    volume: float = 1.0

    @property
    def end(self) -> Fraction:
        return self.start + self.duration


@dataclass(frozen=True)
class Subtitle:
    """One cue of episode.srt: its rows joined by a newline, seconds into the episode."""

    start: Fraction
    end: Fraction
    text: str
    who: str


@dataclass(frozen=True)
class Timeline:
    title: str
    fps: int
    size: tuple[int, int]
    shots: list[Item]        # end to end, each exactly its frames
    lines: list[Item]        # in episode order, never overlapping
    music: list[Item]
    subtitles: list[Subtitle]

    @property
    def frames(self) -> int:
        return sum(round(shot.duration * self.fps) for shot in self.shots)

    @property
    def duration(self) -> Fraction:
        return Fraction(self.frames, self.fps)


def build_timeline(request: Request) -> Timeline:
    """The timeline of an export node: params title, fps, size, lead_in, shots [{id, picture
    [node, output], lines}], music; inputs shot:<id> → {timing.json}, each shot's picture,
    line:<shot>:<n> → {speech.wav, cues.json}."""
    params = request.params
    fps = int(params["fps"])
    shots: list[Item] = []
    lines: list[Item] = []
    timings: list[Mapping[str, Any]] = []
    segments: list[Segment] = []
    shot_nodes: list[str] = []
    frame = 0    # where the next shot starts: the episode's video joins whole frames
    sample = 0   # ... and its audio whole samples
    for shot in params["shots"]:
        node = f"shot:{shot['id']}"
        files = request.inputs.get(node)
        picture_node, picture_output = shot["picture"]
        if files is None or "timing.json" not in files:
            raise EngineError(f"{request.node_id} needs the timing.json of {node}")
        timing = json.loads(Path(files["timing.json"]).read_text(encoding="utf-8"))
        duration = float(timing["duration"])
        segment = Segment(file=Path(request.input_file(picture_node, picture_output)),
                          frames=round(duration * fps), samples=round(duration * AUDIO_RATE))
        shots.append(Item(name=str(shot["id"]), media=media_shot(str(shot["id"])),
                          start=Fraction(frame, fps), duration=Fraction(segment.frames, fps)))
        for line, placed in zip(shot["lines"], place_lines(shot["lines"], request.inputs,
                                                           float(params["lead_in"])), strict=True):
            start = Fraction(sample, AUDIO_RATE) + Fraction(round(placed.start * AUDIO_RATE), AUDIO_RATE)
            samples = round(placed.duration * AUDIO_RATE)
            lines.append(Item(name=f"{line['who']}: {line['text']}", media=media_line(str(line["node"])),
                              start=start, duration=Fraction(samples, AUDIO_RATE)))
        timings.append(timing)
        segments.append(segment)
        shot_nodes.append(node)
        frame += segment.frames
        sample += segment.samples

    music_files = {str(entry["file"]): Path(request.sources[str(entry["file"])])
                   for entry in params["music"] if str(entry["file"]) in request.sources}
    by_path = {path: name for name, path in music_files.items()}
    music = [Item(name=Path(by_path[run.file]).name, media=media_music(by_path[run.file]),
                  start=Fraction(run.start, AUDIO_RATE), duration=Fraction(run.end - run.start, AUDIO_RATE),
                  volume=run.volume)
             for run in music_runs(params["music"], shot_nodes, segments, request.sources)]
    subtitles = [Subtitle(start=Fraction(cue.start, 100), end=Fraction(cue.end, 100),
                          text="\n".join(cue.rows), who=cue.who) for cue in episode_cues(timings)]
    width, height = (int(v) for v in params["size"])
    return Timeline(title=str(params["title"]), fps=fps, size=(width, height), shots=shots, lines=lines,
                    music=music, subtitles=subtitles)
