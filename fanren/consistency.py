"""The consistency check's verdict: each `consistency:<character>` node's scores against the
thresholds of `[check] consistency`, for report.json, the storyboard's badges and `build --check`.

The nodes (fanren/engines/consistency.py) only measure; thresholds are applied here, after the
build, so changing one re-embeds nothing. A shot is flagged `below` when its similarity to the
character's sheet is under `threshold`, and `outlier` when that similarity, or its similarity to the
centroid of the character's shots, lies `outlier_z` or more standard deviations under the mean of
the character's shots. Only `below` fails `build --check`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import FanrenError, UsageError
from .project import ConsistencyCheck

if TYPE_CHECKING:
    from .build import Session
    from .cache import ActionRecord, Cache
    from .graph import Node


@dataclass(frozen=True)
class Flagged:
    """One shot of one character that the check flags."""

    character: str
    name: str
    shot: str
    similarity: float
    z: float           # of the similarity to the sheet, among the character's shots
    z_centroid: float  # of the similarity to the centroid of the character's shots
    below: bool        # under the threshold: fails `build --check`
    outlier: bool      # z or z_centroid ≤ -outlier_z

    def show(self, threshold: float) -> str:
        why = [f"similarity {self.similarity:.3f} < threshold {threshold:g}"] if self.below else []
        why += [f"outlier (z {self.z:+.2f} to the sheet, {self.z_centroid:+.2f} to its other shots)"] \
            if self.outlier else []
        who = self.character if self.name == self.character else f"{self.name} ({self.character})"
        return f"{self.shot}: {who}: {', '.join(why)}"


def verdict(settings: ConsistencyCheck, scores: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """report.json's `consistency`: the settings, every character's scores with each shot's flags,
    and the flagged shots. `scores` maps character id → that character's consistency.json."""
    characters: dict[str, Any] = {}
    for cid, score in scores.items():
        shots = [{**shot, "below": shot["similarity"] < settings.threshold,
                  "outlier": min(shot["z"], shot["z_centroid"]) <= -settings.outlier_z}
                 for shot in score["shots"]]
        characters[cid] = {**score, "shots": shots}
    flagged = [{"character": cid, "shot": shot["shot"], "similarity": shot["similarity"], "z": shot["z"],
                "z_centroid": shot["z_centroid"], "below": shot["below"], "outlier": shot["outlier"]}
               for cid, score in characters.items() for shot in score["shots"]
               if shot["below"] or shot["outlier"]]
    return {"model": settings.model, "threshold": settings.threshold, "outlier_z": settings.outlier_z,
            "characters": characters, "flagged": flagged}


def flagged(report: Mapping[str, Any]) -> list[Flagged]:
    """The flagged shots of a verdict, in report order."""
    names = {cid: str(score["name"]) for cid, score in report["characters"].items()}
    return [Flagged(f["character"], names[f["character"]], f["shot"], f["similarity"], f["z"], f["z_centroid"],
                    f["below"], f["outlier"]) for f in report["flagged"]]


def score_key(node: Any) -> str:
    """A consistency node's character in the verdict: its id, after its episode in a series (`ep01/lu`)."""
    episode = node.id.rpartition("/")[0]
    cid = str(node.params["character_id"])
    return f"{episode}/{cid}" if episode else cid


def scored_verdict(settings: ConsistencyCheck, cache: Cache,
                   scored: Iterable[tuple[Node, ActionRecord]]) -> dict[str, Any]:
    """The verdict on the consistency.json each (consistency node, its record) holds in `cache`."""
    return verdict(settings, {score_key(node): json.loads(cache.object_for_use(record, "consistency.json")
                                                          .read_text(encoding="utf-8"))
                              for node, record in scored})


def last_verdict(session: Session) -> dict[str, Any]:
    """The verdict on the scores the cache holds for `session`'s drama as it is now (`fanren check`):
    nothing is rendered, so every check node must be fresh. Of a series, the selected episodes'
    characters (`ep01/lu`): the season's, or one episode's."""
    from .build import selected_decisions

    settings = session.project.check.consistency
    if settings is None:
        raise UsageError(f"{session.project.file} sets no [check] consistency (see docs/consistency.md), "
                         "so there is nothing to check")
    checks = [d for d in selected_decisions(session) if d.node.kind == "consistency"]
    stale = [d.node.id for d in checks if d.stale or d.record is None]
    if stale:
        raise UsageError(f"not scored yet for profile {session.profile!r}: {', '.join(stale)}; run "
                         f"`fanren build --profile {session.profile}` first")
    return scored_verdict(settings, session.cache,
                          [(d.node, d.record) for d in checks if d.record is not None])


class ConsistencyFailed(FanrenError):
    """A shot scored below the drama's consistency threshold (`build --check`). Exit code 1.
    `file` sets the threshold: drama.toml, or a series' series.toml."""

    exit_code = 1

    def __init__(self, shots: list[Flagged], threshold: float, file: str = "drama.toml") -> None:
        self.shots = shots
        lines = [(f"error: {len(shots)} shot(s) fell below the consistency threshold {threshold:g} "
                  f"([check] consistency in {file}; scores in out/<profile>/report.json)")]
        lines += ["  " + shot.show(threshold) for shot in shots]
        super().__init__("\n".join(lines))

    def show(self) -> str:
        return str(self)
