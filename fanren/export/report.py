"""report.json's `timeline`: the episode's timeline model (timeline.py) written as JSON.

A build without an export node has the same model: `episode_timeline` hands `build_timeline` the
params and inputs an export node would get, taken from the episode's own nodes (each shot's
timing.json, each line's speech.wav and cues.json, the scenes' music). So report.json, the editor
exports and episode.mp4 place every shot, line and subtitle from one computation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from fractions import Fraction
from pathlib import Path
from typing import Any

from ..engines.base import Request
from ..engines.mux import AUDIO_RATE
from ..graph import Graph, local_id
from .timeline import Timeline, build_timeline


def episode_timeline(graph: Graph, prefix: str, output: Callable[[str, str], Path],
                     root: Path) -> tuple[Timeline, list[Mapping[str, Any]]]:
    """The timeline of the episode whose node is `prefix`episode (a series' episode: `ep01/`) and
    the shots it was built from ({id, lines [{node, who, text}]}, in episode order). `output(node
    id, output name)` is the path of a finished node's output; `root` the drama folder."""
    episode = graph[prefix + "episode"]
    shot_nodes = [graph[i] for i in episode.inputs if graph[i].kind == "shot"]
    shots: list[Mapping[str, Any]] = []
    inputs: dict[str, dict[str, Path]] = {}
    for node in shot_nodes:
        shot_id = str(node.params["shot_id"])
        shots.append({"id": shot_id, "picture": [f"shot:{shot_id}", "shot.mp4"],
                      "lines": node.params["lines"]})
        inputs[local_id(node.id)] = {name: output(node.id, name) for name in ("shot.mp4", "timing.json")}
        for line in node.params["lines"]:
            inputs[str(line["node"])] = {name: output(prefix + str(line["node"]), name)
                                         for name in ("speech.wav", "cues.json")}
    first = shot_nodes[0].params
    params = {"title": "", "fps": episode.params["fps"], "size": first["size"], "lead_in": first["lead_in"],
              "shots": shots, "music": episode.params["music"]}
    request = Request(node_id=episode.id, kind="episode", params=params, inputs=inputs, out_dir=root,
                      sources={file: root / file for file in episode.sources})
    return build_timeline(request), shots


def timeline_json(timeline: Timeline, shots: list[Mapping[str, Any]]) -> dict[str, Any]:
    """The timeline as report.json holds it (docs/export.md): shots in frames of the drama's fps,
    lines in samples of the episode's audio, each also in seconds, and the subtitle cues."""
    fps = timeline.fps
    lines = iter(timeline.lines)  # build_timeline places them shot by shot, in the shots' order
    return {
        "fps": fps,
        "frames": timeline.frames,
        "duration": _seconds(timeline.duration),
        "audio_rate": AUDIO_RATE,
        "shots": [{"id": item.name,
                   "start_frame": int(item.start * fps), "frames": int(item.duration * fps),
                   "start": _seconds(item.start), "duration": _seconds(item.duration),
                   "lines": [{"id": str(line["node"]), "who": str(line["who"]), "text": str(line["text"]),
                              "start_sample": int(placed.start * AUDIO_RATE),
                              "samples": int(placed.duration * AUDIO_RATE),
                              "start": _seconds(placed.start), "duration": _seconds(placed.duration)}
                             for line, placed in zip(shot["lines"], lines)]}
                  for item, shot in zip(timeline.shots, shots, strict=True)],
        "cues": [{"start": _seconds(cue.start), "end": _seconds(cue.end), "text": cue.text, "who": cue.who}
                 for cue in timeline.subtitles],
    }


def _seconds(value: Fraction) -> float:
    # a microsecond is finer than any frame or sample fanren places; the exact counts are beside it
    return round(float(value), 6)
