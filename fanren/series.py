"""series.toml + ep*/drama.toml → Series: one cast, many episodes, one build.

A series folder holds `series.toml` (what episodes share: every drama.toml table but [[scenes]],
plus an optional `[series] episodes = [...]`) and one folder per episode with its own drama.toml.
An episode is its drama.toml merged over series.toml: a key of [drama], [narrator], [music] in the
episode overrides that key; [characters.*] and [voices.*] entries replace the series' entry of the
same id; [[scenes]] are the episode's own. Profiles, [cache] and [check] are the series' alone (one build,
one set of engines, one cache), and so are `aspect` and `fps` (the season plays as one format).

Paths (references, music, prompt wavs) are looked up in the episode's folder first, then in the
series folder, and kept relative to the series folder, which is the root every node's sources are
read from. Templates likewise: `<episode>/templates/` before `templates/`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import DramaError, Problem, UsageError
from .project import DRAMA_FILE, Project, did_you_mean, parse_toml, validate_project

SERIES_FILE = "series.toml"
EPISODE_ID = re.compile(r"^[A-Za-z0-9_\-.]+$")  # the same rule as shot ids
MERGED_BY_KEY = ("drama", "narrator", "music")  # a key of the episode's table overrides that key
MERGED_BY_ID = ("characters", "voices")         # an entry of the episode replaces the series' entry
SERIES_ONLY = ("profiles", "cache", "check")    # one build: one set of engines, one cache, one verdict
SAME_FORMAT = ("aspect", "fps")                 # the season is one format


@dataclass(frozen=True)
class Series:
    """A series: what its episodes share, and every episode merged over it, in series order."""

    root: Path
    shared: Project                 # series.toml as a drama without scenes
    episodes: dict[str, Project]    # episode id → the episode, merged over series.toml
    selected: tuple[str, ...]       # the episodes this build renders (all unless chosen)

    @property
    def file(self) -> Path:
        return self.root / SERIES_FILE

    @property
    def cache(self) -> Any:
        return self.shared.cache

    @property
    def profiles(self) -> Any:
        return self.shared.profiles

    @property
    def check(self) -> Any:
        """`[check]` of series.toml: an episode may not set its own (one verdict for the season)."""
        return self.shared.check

    def select(self, episodes: tuple[str, ...]) -> Series:
        return Series(self.root, self.shared, self.episodes, episodes)

    def episode_of(self, node_id: str) -> str | None:
        """The episode a node belongs to (`ep01/keyframe:s1` → ep01); None for shared nodes."""
        head, slash, _ = node_id.partition("/")
        return head if slash else None


def series_root(directory: Path) -> Path | None:
    """The series folder `directory` belongs to: itself when it holds series.toml, its parent when
    it is an episode folder (a drama.toml under a series.toml); else None (a single drama)."""
    directory = Path(directory).absolute()
    if (directory / SERIES_FILE).is_file():
        return directory
    if (directory / DRAMA_FILE).is_file() and (directory.parent / SERIES_FILE).is_file():
        return directory.parent
    return None


def load_drama(directory: Path) -> Project | Series:
    """What `fanren build DIRECTORY` builds: the series DIRECTORY is (or is an episode of, which is
    then the only episode selected), or else the single drama in it."""
    from .project import load_project

    directory = Path(directory).absolute()
    root = series_root(directory)
    if root is None:
        return load_project(directory)
    series = load_series(root)
    if root == directory:
        return series
    if directory.name not in series.episodes:
        raise UsageError(f"{directory} is not an episode of the series in {root}: [series] episodes of "
                         f"{SERIES_FILE} does not list {directory.name!r}")
    return series.select((directory.name,))


def load_series(root: Path) -> Series:
    """Read series.toml and every episode; all problems of a file together, one file at a time."""
    root = Path(root).absolute()
    file = root / SERIES_FILE
    raw = parse_toml(file.read_bytes(), file)
    table = raw.pop("series", {})
    problems: list[Problem] = []
    if "scenes" in raw:
        problems.append(Problem(file, "scenes", "no [[scenes]] in series.toml", "a [[scenes]] table",
                                hint="each episode's drama.toml holds its own scenes"))
        raw.pop("scenes")
    if not isinstance(table, dict):
        problems.append(Problem(file, "series", "a table", "a value"))
        table = {}
    for key in table:
        if key != "episodes":
            problems.append(Problem(file, f"series.{key}", "a known key", f"unknown key {key!r}",
                                    hint=did_you_mean(key, ["episodes"]) or "allowed here: episodes"))
    episode_ids = _episode_ids(root, file, table.get("episodes"), problems)
    if problems:
        raise DramaError(problems)
    shared = validate_project(raw, root, file=file, needs_shots=False)
    shared._templates = (root / "templates",)
    episodes = {eid: _load_episode(root, eid, raw, shared) for eid in episode_ids}
    return Series(root, shared, episodes, tuple(episodes))


def _episode_ids(root: Path, file: Path, listed: Any, problems: list[Problem]) -> list[str]:
    if listed is None:  # every subfolder holding a drama.toml, in natural order (ep2 before ep10)
        found = [p.name for p in root.iterdir() if (p / DRAMA_FILE).is_file() and EPISODE_ID.fullmatch(p.name)]
        if not found:
            problems.append(Problem(file, "", "episode folders, each holding a drama.toml", "none",
                                    hint="add ep01/drama.toml, or list them in [series] episodes"))
        return sorted(found, key=natural_key)
    if not isinstance(listed, list):
        problems.append(Problem(file, "series.episodes", "a list of episode folder names", "a value"))
        return []
    seen: dict[str, int] = {}
    for i, eid in enumerate(listed):
        at = f"series.episodes[{i}]"
        if not isinstance(eid, str) or not EPISODE_ID.fullmatch(eid):
            problems.append(Problem(file, at, "an episode id of letters, digits, '_', '-' or '.' "
                                    "(its folder's name)", repr(eid)))
        elif eid in seen:
            problems.append(Problem(file, at, "an episode listed once", repr(eid),
                                    hint=f"also listed at series.episodes[{seen[eid]}]"))
        elif not (root / eid / DRAMA_FILE).is_file():
            problems.append(Problem(file, at, "a folder holding a drama.toml", repr(eid),
                                    hint=f"no such file {eid}/{DRAMA_FILE}"))
        if isinstance(eid, str):
            seen.setdefault(eid, i)
    return [e for e in seen if isinstance(e, str)]


def natural_key(name: str) -> list[Any]:
    """'ep10' after 'ep9': digit runs compare as numbers."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name) if part]


def _load_episode(root: Path, eid: str, shared_raw: dict[str, Any], shared: Project) -> Project:
    file = root / eid / DRAMA_FILE
    own = parse_toml(file.read_bytes(), file)
    problems: list[Problem] = []
    for table in SERIES_ONLY:
        if table in own:
            problems.append(Problem(file, table, f"no [{table}] in an episode", f"a [{table}] table",
                                    hint=f"[{table}] is set for the whole series in {SERIES_FILE}"))
    drama = own.get("drama")
    if isinstance(drama, dict):
        for key in SAME_FORMAT:
            if key in drama and drama[key] != getattr(shared.drama, key):
                problems.append(Problem(file, f"drama.{key}", f"the series' {key} "
                                        f"{getattr(shared.drama, key)!r} or nothing", repr(drama[key]),
                                        hint=f"every episode of a series has the {key} of {SERIES_FILE}"))
    if problems:
        raise DramaError(problems)
    merged = _with_paths(merge(shared_raw, own), root, eid)
    project = validate_project(merged, root, file=file)
    project._templates = (root / eid / "templates", root / "templates")
    return project


def merge(shared: dict[str, Any], episode: dict[str, Any]) -> dict[str, Any]:
    """An episode's tables over the series' (see the module docstring for the rules)."""
    merged = dict(shared)
    for table, value in episode.items():
        below = merged.get(table)
        if table in MERGED_BY_KEY + MERGED_BY_ID and isinstance(value, dict) and isinstance(below, dict):
            merged[table] = {**below, **value}
        else:
            merged[table] = value
    return merged


def _with_paths(raw: dict[str, Any], root: Path, eid: str) -> dict[str, Any]:
    """Every path the drama names, made relative to the series folder: `<episode>/<path>` when the
    episode's folder has that file, else the path as given (the series folder's)."""

    def locate(value: Any) -> Any:
        if isinstance(value, str) and not Path(value).is_absolute() and (root / eid / value).is_file():
            return f"{eid}/{value}"
        return value

    def table(value: Any, key: str) -> Any:
        return {**value, key: locate(value[key])} if isinstance(value, dict) and key in value else value

    out = dict(raw)
    if isinstance(out.get("characters"), dict):
        characters = {}
        for cid, character in out["characters"].items():
            character = table(character, "reference")
            if isinstance(character, dict) and isinstance(character.get("looks"), dict):
                character = {**character, "looks": {k: table(v, "reference")
                                                    for k, v in character["looks"].items()}}
            characters[cid] = character
        out["characters"] = characters
    if "music" in out:
        out["music"] = table(out["music"], "file")
    if isinstance(out.get("scenes"), list):
        out["scenes"] = [{**s, "music": table(s["music"], "file")} if isinstance(s, dict) and "music" in s
                         else s for s in out["scenes"]]
    if isinstance(out.get("voices"), dict):
        out["voices"] = {vid: {k: table(v, "prompt_wav") for k, v in voice.items()}
                         if isinstance(voice, dict) else voice for vid, voice in out["voices"].items()}
    return out


def choose_episodes(series: Series, spec: str) -> Series:
    """`--episodes ep07`, `3-5` (positions, from 1), `ep03-ep05` (ids, in series order), or a
    comma-separated list of those."""
    order = list(series.episodes)
    chosen: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        if part in series.episodes:
            span = [part]
        elif "-" in part:
            first, _, last = part.partition("-")
            span = order[_position(series, first, spec):_position(series, last, spec) + 1]
            if not span:
                raise UsageError(f"--episodes {spec!r}: {part!r} is an empty range")
        else:
            span = [order[_position(series, part, spec)]]
        chosen += [e for e in span if e not in chosen]
    return series.select(tuple(e for e in order if e in chosen))


def _position(series: Series, name: str, spec: str) -> int:
    order = list(series.episodes)
    if name in series.episodes:
        return order.index(name)
    if name.isdigit() and 1 <= int(name) <= len(order):
        return int(name) - 1
    hint = did_you_mean(name, order) or f"episodes: {order[0]} … {order[-1]} (1-{len(order)})"
    raise UsageError(f"--episodes {spec!r}: no episode {name!r} ({hint})")
