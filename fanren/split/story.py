"""What a split engine produces — a Story of scenes and shots — and its drama.toml table.

A shot holds its text as `parts` in the chapter's order, each spoken by a character or the
narrator. drama.toml speaks a shot's `narration` first and then its `lines`, so the narrator's
leading parts become the narration and every later part a line: the order of the chapter is kept.

Ids come from text (see `stable_ids`), never from positions, so a shot keeps its id, its seed and
its rendered keyframe and clip as long as its text is unchanged, wherever it moves.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..project import NARRATOR
from .coverage import normalize


@dataclass(frozen=True)
class Voiced:
    """A run of the chapter's text and who speaks it: a character id or 'narrator'."""

    who: str
    text: str


@dataclass(frozen=True)
class ShotDraft:
    parts: tuple[Voiced, ...]
    action: str
    camera: str = ""
    characters: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return "".join(part.text for part in self.parts)


@dataclass(frozen=True)
class SceneDraft:
    setting: str
    shots: tuple[ShotDraft, ...]


@dataclass(frozen=True)
class CharacterDraft:
    id: str
    name: str
    description: str
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Story:
    title: str
    language: str
    characters: tuple[CharacterDraft, ...]
    scenes: tuple[SceneDraft, ...]

    def shots(self) -> list[ShotDraft]:
        return [shot for scene in self.scenes for shot in scene.shots]


def joiner(language: str) -> str:
    return "" if language == "zh" else " "


def narration_and_lines(parts: Sequence[Voiced], language: str) -> tuple[str, list[dict[str, str]]]:
    """The narrator's leading parts → narration; the rest → lines, neighbours of one speaker merged."""
    glue = joiner(language)
    k = 0
    while k < len(parts) and parts[k].who == NARRATOR:
        k += 1
    narration = glue.join(part.text for part in parts[:k])
    lines: list[dict[str, str]] = []
    for part in parts[k:]:
        if lines and lines[-1]["who"] == part.who:
            lines[-1]["text"] += glue + part.text
        else:
            lines.append({"who": part.who, "text": part.text})
    return narration, lines


# ── ids ──────────────────────────────────────────────────────────────────────

_ARTICLES = {"a", "an", "the"}


def _digest(text: str) -> str:
    return hashlib.blake2b(normalize(text).encode("utf-8"), digest_size=4).hexdigest()


def _prefix(text: str, fallback: str) -> str:
    """The first three words of a text that starts in ASCII letters, as a slug; else `fallback`."""
    words = []
    for word in re.findall(r"[A-Za-z0-9']+|\S", text.strip()):
        if not word.isascii() or not word[0].isalnum():
            break
        word = word.replace("'", "").lower()
        if word and word not in _ARTICLES:
            words.append(word)
        if len(words) == 3:
            break
    return "-".join(words) or fallback


def stable_ids(texts: Sequence[str], fallback: str) -> list[str]:
    """One id per text: a slug of its first words (or `fallback`) and a hash of its normalized text.

    Equal texts get `-2`, `-3`, … in order of appearance: the only ids that depend on position.
    """
    seen: dict[str, int] = {}
    ids = []
    for text in texts:
        base = f"{_prefix(text, fallback)}-{_digest(text)}"
        seen[base] = seen.get(base, 0) + 1
        ids.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return ids


# ── the drama.toml table ─────────────────────────────────────────────────────


def drama_table(story: Story) -> dict[str, Any]:
    """The Story as the raw table `fanren.project.validate_project` takes (and drama.toml holds)."""
    shot_ids = iter(stable_ids([shot.text for shot in story.shots()], "shot"))
    scene_ids = stable_ids([scene.setting for scene in story.scenes], "scene")
    scenes = []
    for scene, scene_id in zip(story.scenes, scene_ids):
        shots = []
        for shot in scene.shots:
            narration, lines = narration_and_lines(shot.parts, story.language)
            table: dict[str, Any] = {"id": next(shot_ids)}
            if shot.characters:
                table["characters"] = list(shot.characters)
            table["action"] = shot.action
            if shot.camera:
                table["camera"] = shot.camera
            if narration:
                table["narration"] = narration
            if lines:
                table["lines"] = lines
            shots.append(table)
        scenes.append({"id": scene_id, "setting": scene.setting, "shots": shots})
    return {
        "drama": {"title": story.title, "language": story.language},
        "characters": characters_table(story.characters),
        "scenes": scenes,
    }


def characters_table(characters: Sequence[CharacterDraft]) -> dict[str, dict[str, Any]]:
    """[characters.<id>] tables: name, description, and aliases when the text has any."""
    table: dict[str, dict[str, Any]] = {}
    for c in characters:
        table[c.id] = {"name": c.name, "description": c.description}
        if c.aliases:
            table[c.id]["aliases"] = list(c.aliases)
    return table
