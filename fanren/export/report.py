"""report.json's `timeline`: the episode's timeline model (timeline.py) written as JSON.

A build without an export node has the same model: `episode_timeline` hands `build_timeline` the
params and inputs an export node would get, taken from the episode's own nodes (each shot's
timing.json, each line's speech.wav and cues.json, the scenes' music). So report.json, the editor
exports and episode.mp4 place every shot, line and subtitle from one computation.

Every build writes the report, so the timeline is memoised (`TimelineMemo`): by the digest of the
params and of every file it reads. Laying out the subtitle cues is most of its cost: 0.3 ms a shot
on the shared 2-core machine (4.1 ms for examples/xianxia's 14 shots), about 0.5 s of a no-op build
of a 60 × 30 series without the memo; 0.07 ms an episode with it (docs/performance.md).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..cache import ActionRecord, Cache, atomic_write, canonical_json, digest_bytes
from ..graph import Graph, local_id

if TYPE_CHECKING:
    from .timeline import Timeline

MEMO_VERSION = 1


def report_timeline(graph: Graph, prefix: str, record: Callable[[str], ActionRecord], cache: Cache,
                    root: Path, memo: TimelineMemo | None = None) -> dict[str, Any]:
    """report.json's `timeline` of the finished episode whose node is `prefix`episode (a series'
    episode: `ep01/`); `record(node id)` is a finished node's action record, `root` the drama
    folder. From `memo` when it holds the timeline of exactly these params and files."""
    params, reads = episode_params(graph, prefix)
    key = digest_bytes(canonical_json({"params": params, "reads": [
        [node, output, record(node).outputs[output].digest] for _, node, output in reads]}).encode())
    if memo is not None and (known := memo.get(prefix, key)) is not None:
        return known
    inputs: dict[str, dict[str, Path]] = {}
    for input_id, node, output in reads:
        inputs.setdefault(input_id, {})[output] = cache.object_for_use(record(node), output)
    timeline = timeline_json(episode_timeline(graph, prefix, params, inputs, root), params["shots"])
    if memo is not None:
        memo.put(prefix, key, timeline)
    return timeline


def episode_params(graph: Graph, prefix: str) -> tuple[dict[str, Any], list[tuple[str, str, str]]]:
    """The params an export node of the episode would get (fanren/compile.py) and the files its
    timeline reads: (input id within the episode, node id in the graph, output name)."""
    episode = graph[prefix + "episode"]
    shot_nodes = [graph[i] for i in episode.inputs if graph[i].kind == "shot"]
    shots: list[dict[str, Any]] = []
    reads: list[tuple[str, str, str]] = []
    for node in shot_nodes:
        shot_id = str(node.params["shot_id"])
        shots.append({"id": shot_id, "picture": [f"shot:{shot_id}", "shot.mp4"],
                      "lines": node.params["lines"]})
        reads += [(local_id(node.id), node.id, name) for name in ("shot.mp4", "timing.json")]
        for line in node.params["lines"]:
            reads += [(str(line["node"]), prefix + str(line["node"]), name)
                      for name in ("speech.wav", "cues.json")]
    first = shot_nodes[0].params
    # the title is the export's (report.json names no title): "" keeps it out of the memo's key
    params = {"title": "", "fps": episode.params["fps"], "size": first["size"], "lead_in": first["lead_in"],
              "shots": shots, "music": episode.params["music"]}
    return params, reads


def episode_timeline(graph: Graph, prefix: str, params: Mapping[str, Any],
                     inputs: Mapping[str, Mapping[str, Path]], root: Path) -> Timeline:
    """The model the exports are written from, built by the exports' own `build_timeline`."""
    from ..engines.base import Request
    from .timeline import build_timeline

    episode = graph[prefix + "episode"]
    request = Request(node_id=episode.id, kind="episode", params=params, inputs=inputs, out_dir=root,
                      sources={file: root / file for file in episode.sources})
    return build_timeline(request)


def timeline_json(timeline: Timeline, shots: list[Mapping[str, Any]]) -> dict[str, Any]:
    """The timeline as report.json holds it (docs/export.md): shots in frames of the drama's fps,
    lines in samples of the episode's audio, each also in seconds, and the subtitle cues."""
    from ..engines.mux import AUDIO_RATE

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


class TimelineMemo:
    """The timelines of one drama's profile (each episode's in a series), in one file of the cache:

        timelines/<xxh3 of the drama root and profile>.json
        {"version": 1, "episodes": {episode prefix: [memo key, timeline]}}

    A lost, stale or damaged memo costs time, never a wrong timeline: an entry answers only for the
    very key (the digest of the params and of every file the timeline reads)."""

    def __init__(self, cache: Cache, root: Path, profile: str) -> None:
        name = digest_bytes(f"{Path(root).resolve()}\0{profile}".encode())
        self.file = cache.root / "timelines" / f"{name}.json"
        self._episodes: dict[str, list[Any]] = {}
        with contextlib.suppress(OSError, ValueError):
            raw = json.loads(self.file.read_text(encoding="utf-8"))
            if isinstance(raw, dict) and raw.get("version") == MEMO_VERSION \
                    and isinstance(raw.get("episodes"), dict):
                self._episodes = raw["episodes"]
        self._changed = False

    def get(self, prefix: str, key: str) -> dict[str, Any] | None:
        entry = self._episodes.get(prefix)
        if isinstance(entry, list) and len(entry) == 2 and entry[0] == key and isinstance(entry[1], dict):
            return entry[1]
        return None

    def put(self, prefix: str, key: str, timeline: dict[str, Any]) -> None:
        self._episodes[prefix] = [key, timeline]
        self._changed = True

    def save(self) -> None:
        """Write the memo if a timeline was added (not fsynced: a speed-up only)."""
        if self._changed:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(self.file, json.dumps({"version": MEMO_VERSION, "episodes": self._episodes},
                                                ensure_ascii=False, separators=(",", ":")), durable=False)
            self._changed = False
