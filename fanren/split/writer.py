"""Writing the drama folder: a commented drama.toml that validates, keeps the text, and says how to edit.

The file is rendered by hand (not tomli_w) so it can carry comments and keep one shot per block in
the order a reader expects. Before anything is written it is parsed back with the project's own
schema and checked against the chapter, so what lands on disk is exactly what was validated.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..project import DRAMA_FILE, Project, parse_project
from .coverage import check_no_text_lost

BACKUP_SUFFIX = ".bak"
GITIGNORE = ".fanren-cache/\nout/\n"

_HEADER = """\
# drama.toml, written by `fanren split` from {source} ({engine}).
#
# It builds as it is (run `fanren build` in this folder). Then make it yours:
#   [characters.<id>]  `description` is all the image model knows of a character: say how they look.
#   [[scenes]]         `setting` is the place drawn behind every shot of the scene.
#   [[scenes.shots]]   one picture and what is said over it: `action` and `camera` make the picture;
#                      `narration`, then each of `lines` (who = a character id or "narrator"), is spoken.
# The narration and lines of all shots are the chapter's text, in order, word for word.
#
# Shot ids come from the text a shot covers: `fanren split --force` on an edited chapter keeps the id
# of every shot whose text did not change, so the next build re-renders only the shots that changed.
# It replaces this file too (the previous one is kept as drama.toml.bak): carry your edits over.
"""

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


@dataclass(frozen=True)
class Written:
    path: Path
    backup: Path | None
    project: Project
    kept: int          # shot ids that were in the replaced drama.toml too
    new: int
    gone: int
    replaced: bool     # whether an older drama.toml was there


def header(source: str, engine: str) -> str:
    return _HEADER.format(source=source, engine=engine)


def render(table: dict[str, Any], head: str) -> str:
    """drama.toml text for a table shaped like `story.drama_table`'s."""
    out = [head, "[drama]"]
    out += [f"{_key(k)} = {_value(v)}" for k, v in table["drama"].items()]
    out += _characters(table["characters"])
    for scene in table["scenes"]:
        out += ["", "[[scenes]]"]
        out += [f"{_key(k)} = {_value(v)}" for k, v in scene.items() if k != "shots"]
        for shot in scene["shots"]:
            out += ["", "[[scenes.shots]]"]
            for k, v in shot.items():
                if k == "lines":
                    out.append("lines = [")
                    out += [f"  {{ who = {_value(line['who'])}, text = {_value(line['text'])} }}," for line in v]
                    out.append("]")
                else:
                    out.append(f"{_key(k)} = {_value(v)}")
    return "\n".join(out) + "\n"


def render_series(table: dict[str, Any], head: str) -> str:
    """series.toml text: [drama], [series] episodes (one a line), then the cast."""
    out = [head, "[drama]"]
    out += [f"{_key(k)} = {_value(v)}" for k, v in table["drama"].items()]
    out += ["", "[series]", "episodes = ["]
    out += [f"  {_value(episode)}," for episode in table["series"]["episodes"]]
    out += ["]"]
    out += _characters(table["characters"])
    return "\n".join(out) + "\n"


def _characters(characters: dict[str, dict[str, Any]]) -> list[str]:
    out = []
    if characters:
        out += ["", "# `description` is what the image model draws: replace it with how the character looks."]
    for cid, character in characters.items():
        out += ["", f"[characters.{_key(cid)}]"]
        out += [f"{_key(k)} = {_value(v)}" for k, v in character.items()]
    return out


def _key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _string(key)


def _string(text: str) -> str:
    # JSON's escapes are all valid in a TOML basic string; TOML also forbids a raw DEL.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def _value(value: Any) -> str:
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} into drama.toml")


def spoken_texts(project: Project) -> list[str]:
    """Narration, then line texts, of every shot in episode order: what the build will speak."""
    texts: list[str] = []
    for _, shot in project.shots():
        texts.append(shot.narration)
        texts += [line.text for line in shot.lines]
    return texts


def check_writable(folder: Path, force: bool) -> None:
    """Refuse to replace a drama.toml unless `force` (checked before a slow split, and again before writing)."""
    target = Path(folder) / DRAMA_FILE
    if target.exists() and not force:
        raise UsageError(f"{target} already exists; pass --force to replace it "
                         f"(the old one is kept as {DRAMA_FILE}{BACKUP_SUFFIX})")
    if Path(folder).exists() and not Path(folder).is_dir():
        raise UsageError(f"{folder} is not a folder (expected the drama folder to write {DRAMA_FILE} into)")


def write_drama(folder: Path, text: str, chapter: str, force: bool) -> Written:
    """Validate `text` as drama.toml, check it keeps `chapter`'s text, then write it atomically."""
    folder = Path(folder)
    project = parse_project(text, folder)
    check_no_text_lost(chapter, spoken_texts(project))
    check_writable(folder, force)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / DRAMA_FILE
    backup = None
    old_ids: set[str] = set()
    replaced = target.exists()
    if replaced:
        old_ids = shot_ids(target)
        backup = target.with_name(DRAMA_FILE + BACKUP_SUFFIX)
        shutil.copyfile(target, backup)
    temporary = target.with_name(DRAMA_FILE + ".tmp")
    temporary.write_text(text, encoding="utf-8", newline="\n")
    os.replace(temporary, target)
    gitignore = folder / ".gitignore"
    if not gitignore.exists():
        gitignore.write_text(GITIGNORE, encoding="utf-8")
    new_ids = [shot.id for _, shot in project.shots()]
    kept = sum(1 for i in new_ids if i in old_ids)
    return Written(target, backup, project, kept, len(new_ids) - kept,
                   len(old_ids - set(new_ids)), replaced)


def shot_ids(file: Path) -> set[str]:
    """The shot ids of an existing drama.toml, or none if it does not parse (it is replaced anyway)."""
    try:
        raw = tomllib.loads(file.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError):
        return set()
    ids = set()
    for scene in raw.get("scenes", []) if isinstance(raw.get("scenes"), list) else []:
        for shot in scene.get("shots", []) if isinstance(scene, dict) else []:
            if isinstance(shot, dict) and isinstance(shot.get("id"), str):
                ids.add(shot["id"])
    return ids
