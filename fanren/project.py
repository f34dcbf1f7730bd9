"""drama.toml → Project: the schema (pydantic), validation, and error locations.

Every problem a user can make in drama.toml ends here as a `Problem` with the file, the key path
(`scenes[2].shots[0].characters[1]`), what was expected and, where it helps, a "did you mean".
All problems of a file are collected into one `DramaError` rather than stopping at the first.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, ValidationError
from pydantic_core import PydanticCustomError

from .errors import DramaError, Problem
from .text import clean_text

SCHEMA_VERSION = 1
DRAMA_FILE = "drama.toml"
NARRATOR = "narrator"  # a line's `who` may name the narrator instead of a character
MUSIC_VOLUME = 0.25    # gain of the music under the speech when drama.toml gives none


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Drama(_Strict):
    title: str = Field(min_length=1)
    language: Literal["zh", "en"] = "zh"
    aspect: Literal["16:9", "9:16", "1:1"] = "16:9"
    fps: int = Field(default=24, ge=1, le=120)
    style: str = ""
    seed: int = Field(default=0, ge=0)
    pause: float = Field(default=0.4, ge=0, le=10)
    subtitles: Literal["burn", "soft", "none"] = "burn"
    fit: Literal["slow", "hold", "loop"] = "slow"
    # How a clip slower than `fps` is brought to it: in-between frames by motion-compensated
    # interpolation, or each frame shown several times.
    motion: Literal["interpolate", "duplicate"] = "interpolate"


class Narrator(_Strict):
    voice: str | None = None


class Voice(BaseModel):
    """Per-engine voice names (`espeak = "cmn-latn-pinyin"`, `cosyvoice = "中文女"` or a table) and speed.

    Engine names are open (third-party engines), so unknown keys are allowed here and checked
    by the engine that reads them.
    """

    model_config = ConfigDict(extra="allow", frozen=True)
    speed: float = Field(default=1.0, gt=0.25, le=4.0)

    def for_engine(self, engine: str) -> str | dict[str, Any] | None:
        extra = self.model_extra or {}
        value = extra.get(engine)
        return value if isinstance(value, (str, dict)) else None


class Look(_Strict):
    """`[characters.<id>.looks.<look>]`: the character's full appearance in one part of the story
    (an age, a costume, an injury). A shot or scene picks it with `looks = { <id> = "<look>" }`."""

    description: str = Field(min_length=1)
    reference: str | None = None


class Character(_Strict):
    name: str = ""
    description: str = Field(min_length=1)
    reference: str | None = None
    voice: str | None = None
    # the text's other names for the character (韩师弟, 二愣子): read by `fanren split` to find who
    # speaks; never part of a key, so editing them re-renders nothing
    aliases: list[str] = []
    looks: dict[str, Look] = {}


class Line(_Strict):
    who: str
    text: str = Field(min_length=1)


class Shot(_Strict):
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_\-.]+$")
    characters: list[str] = []
    action: str = Field(min_length=1)
    camera: str = ""
    narration: str = ""
    lines: list[Line] = []
    seed: int | None = Field(default=None, ge=0)
    duration: float | None = Field(default=None, gt=0, le=120)
    fit: Literal["slow", "hold", "loop"] | None = None
    motion: Literal["interpolate", "duplicate"] | None = None
    looks: dict[str, str] = {}  # character id → look id, over the scene's


class SceneMusic(_Strict):
    """A scene's own music: `{ file = "music/duel.ogg", volume = 0.3 }`, a key left out taking the
    `[music]` value; `music = "none"` (short for `{ volume = 0 }`) leaves the scene without music."""

    file: str | None = None
    volume: float | None = Field(default=None, ge=0, le=1)


def _scene_music_table(value: Any) -> Any:
    if value == "none":
        return {"volume": 0.0}
    if not isinstance(value, (dict, SceneMusic)):
        raise PydanticCustomError("scene_music", 'a table or "none"')
    return value


SceneMusicSpec = Annotated[SceneMusic, BeforeValidator(_scene_music_table)]


class Scene(_Strict):
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_\-.]+$")
    setting: str = Field(min_length=1)
    characters: list[str] = []
    shots: list[Shot] = []
    music: SceneMusicSpec | None = None
    looks: dict[str, str] = {}  # character id → look id for every shot of the scene


def _engine_table(value: Any) -> Any:
    return {"engine": value} if isinstance(value, str) else value


class EngineChoice(BaseModel):
    """`"card"` or `{ engine = "flux", steps = 28 }`: an engine name and its options."""

    model_config = ConfigDict(extra="allow", frozen=True)
    engine: str = Field(min_length=1)

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


EngineSpec = Annotated[EngineChoice, BeforeValidator(_engine_table)]


class Profile(_Strict):
    image: EngineSpec | None = None
    video: EngineSpec | None = None
    voice: EngineSpec | None = None


class Music(_Strict):
    file: str
    volume: float = Field(default=MUSIC_VOLUME, ge=0, le=1)


class CacheSettings(_Strict):
    """`[cache]`: where finished results are shared between machines (fanren/remote.py)."""

    remote: str | None = None  # s3://bucket/prefix or file:///folder, checked where it is opened


class Export(_Strict):
    """`[export]`: the editor timelines every build writes beside the episode (docs/export.md)."""

    formats: list[Literal["otio", "fcpxml", "jianying"]] = []
class ConsistencyCheck(_Strict):
    """`[check] consistency`: embed each character's sheet and keyframes and score how alike they
    look (fanren/engines/consistency.py); `fanren build --check` fails below `threshold`."""

    model: str = "facebook/dinov2-small"
    revision: str | None = None
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threshold: float = Field(default=0.6, ge=-1, le=1)  # cosine similarity to the character's sheet
    outlier_z: float = Field(default=2.0, gt=0)          # a shot this many standard deviations below

    def engine_options(self) -> dict[str, Any]:
        """What the engine is built with (thresholds apply to its scores later: no re-embedding)."""
        options: dict[str, Any] = {"model": self.model, "device": self.device}
        return options | ({"revision": self.revision} if self.revision is not None else {})


class CheckSettings(_Strict):
    """`[check]`: measurements of the rendered drama, as nodes of the graph."""

    consistency: ConsistencyCheck | None = None


class Project(_Strict):
    drama: Drama
    narrator: Narrator = Narrator()
    voices: dict[str, Voice] = {}
    characters: dict[str, Character] = {}
    scenes: list[Scene] = []
    profiles: dict[str, Profile] = {}
    music: Music | None = None
    cache: CacheSettings = CacheSettings()
    export: Export = Export()
    check: CheckSettings = CheckSettings()

    _root: Path = PrivateAttr(default=Path("."))
    _file: Path | None = PrivateAttr(default=None)  # an episode's drama.toml (its root is the series')
    _templates: tuple[Path, ...] = PrivateAttr(default=())  # template folders, the first one wins

    @property
    def root(self) -> Path:
        """The drama folder (of a series' episode: the series folder; paths are relative to it)."""
        return self._root

    @property
    def file(self) -> Path:
        return self._file or self._root / DRAMA_FILE

    @property
    def template_dirs(self) -> tuple[Path, ...]:
        """The templates/ folders prompts are looked up in before the packaged ones."""
        return self._templates or (self._root / "templates",)

    def shots(self) -> list[tuple[Scene, Shot]]:
        return [(scene, shot) for scene in self.scenes for shot in scene.shots]

    def look_of(self, scene: Scene, shot: Shot, cid: str) -> str | None:
        """The look a shot shows character `cid` in: the shot's pick, else the scene's, else none."""
        return shot.looks.get(cid, scene.looks.get(cid))

    def music_of(self, scene: Scene) -> Music | None:
        """The music under a scene: its own `music`, each key it leaves out taken from `[music]`;
        None when it has none (or plays it at volume 0)."""
        own, drama = scene.music, self.music
        if own is None:
            music = drama
        else:
            file = own.file if own.file is not None else drama.file if drama else None
            volume = own.volume if own.volume is not None else drama.volume if drama else MUSIC_VOLUME
            music = Music(file=file, volume=volume) if file is not None else None
        return music if music is not None and music.volume > 0 else None


# ── loading ──────────────────────────────────────────────────────────────────


def load_project(root: Path) -> Project:
    """Read `root/drama.toml`, validate it, and check every cross reference and path."""
    root = Path(root).absolute()  # engines and ffmpeg playlists get absolute paths
    file = root / DRAMA_FILE
    if not file.is_file():
        raise DramaError(Problem(file, "", "a drama.toml file", "no such file",
                                 hint="run `fanren init` to create one"))
    return parse_project(file.read_bytes(), root)


def parse_project(source: bytes | str, root: Path) -> Project:
    file = Path(root) / DRAMA_FILE
    raw = parse_toml(source, file)
    if not raw:
        raise DramaError(Problem(file, "", "a drama", "an empty file", hint=MINIMAL_DRAMA))
    return validate_project(raw, root)


def parse_toml(source: bytes | str, file: Path) -> dict[str, Any]:
    """The tables of a drama.toml or series.toml; bad input naming the line of a syntax error."""
    text = decode_utf8(source, file) if isinstance(source, bytes) else source
    try:
        return tomllib.loads(text.removeprefix("\ufeff"))  # a byte order mark, as Notepad writes
    except tomllib.TOMLDecodeError as exc:
        raise DramaError(_syntax_problem(file, exc)) from None
    except RecursionError:  # arrays or inline tables nested thousands deep
        raise DramaError(Problem(file, "", "valid TOML", "arrays or tables nested too deep")) from None


# What the message about an empty drama.toml (or one without [drama]) says a drama needs.
MINIMAL_DRAMA = ("a drama needs at least `[drama] title`, one [[scenes]] with an id and a setting, and "
                 "one [[scenes.shots]] under it with an id and an action; `fanren init` writes a "
                 "commented example")


def decode_utf8(data: bytes, file: Path | str) -> str:
    """The text of a file that must be UTF-8; else bad input naming the first byte that is not."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        bad = " ".join(f"0x{b:02x}" for b in data[exc.start:exc.end])
        hint = ("it looks like UTF-16: save it as UTF-8" if data[:2] in (b"\xff\xfe", b"\xfe\xff")
                else "save it as UTF-8")
        raise DramaError(Problem(file, "", "UTF-8 text",
                                 f"byte {bad} at byte offset {exc.start}, which is not UTF-8",
                                 hint=hint, line=line)) from None


def validate_project(raw: dict[str, Any], root: Path, file: Path | None = None,
                     needs_shots: bool = True) -> Project:
    """A Project from parsed TOML; `file` names where it came from (an episode's drama.toml, or
    series.toml, which holds no shots: `needs_shots` False)."""
    root = Path(root).absolute()
    file = file or root / DRAMA_FILE
    raw = _clean_strings(raw)
    try:
        project = Project.model_validate(raw)
    except ValidationError as exc:
        problems = [_schema_problem(file, raw, e) for e in exc.errors()]
        if "drama" not in raw:
            problems = [Problem(file, "drama", "this required key", "nothing", hint=MINIMAL_DRAMA)
                        if p.key_path == "drama" else p for p in problems]
        raise DramaError(problems) from None
    project._root = root
    project._file = file
    problems = _check_references(project, file, needs_shots)
    if problems:
        raise DramaError(problems)
    return project


def _clean_strings(value: Any) -> Any:
    """Every string value of a parsed drama.toml without control characters or bidi overrides."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {k: _clean_strings(v) for k, v in value.items()}  # keys are ids, checked as such
    if isinstance(value, list):
        return [_clean_strings(v) for v in value]
    return value


def _syntax_problem(file: Path, exc: tomllib.TOMLDecodeError) -> Problem:
    # tomllib's message ends with "(at line L, column C)"
    message = str(exc)
    line = None
    if "(at line " in message:
        head, _, tail = message.rpartition("(at line ")
        message = head.strip()
        try:
            line = int(tail.split(",")[0])
        except ValueError:
            line = None
    return Problem(file, "", "valid TOML", message, line=line)


def key_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """('scenes', 2, 'shots', 0, 'characters', 1) → 'scenes[2].shots[0].characters[1]'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _fields_at(loc: tuple[Any, ...]) -> list[str]:
    """The keys a table at `loc` may hold, to suggest the right one for a misspelt key."""
    names = [p for p in loc if isinstance(p, str)]
    model: type[BaseModel] = Project
    tables: dict[str, type[BaseModel]] = {
        "drama": Drama, "narrator": Narrator, "characters": Character, "scenes": Scene,
        "shots": Shot, "lines": Line, "profiles": Profile, "music": Music, "voices": Voice,
        "cache": CacheSettings, "export": Export, "check": CheckSettings, "consistency": ConsistencyCheck,
        "looks": Look,
    }
    for name in names:
        nxt = tables.get(name)
        if nxt is not None:
            model = nxt
    return list(model.model_fields)


def _schema_problem(file: Path, raw: dict[str, Any], error: Any) -> Problem:
    loc = tuple(p for p in error["loc"] if p not in ("function-before[_engine_table(), EngineChoice]",))
    kind = error["type"]
    path = key_path(loc)
    got = _describe(error.get("input"))
    if kind == "extra_forbidden":
        key, allowed = str(loc[-1]), _fields_at(loc[:-1])
        return Problem(file, path, "a known key", f"unknown key {key!r}",
                       hint=did_you_mean(key, allowed) or f"allowed here: {', '.join(allowed)}")
    if kind == "missing":
        return Problem(file, path, "this required key", "nothing")
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "one of the allowed values")
        return Problem(file, path, f"one of {expected}", got,
                       hint=did_you_mean(str(error.get("input")),
                                         [s.strip(" '") for s in str(expected).replace(" or ", ",").split(",")]))
    if kind == "string_pattern_mismatch":
        return Problem(file, path, "an id of letters, digits, '_', '-' or '.'", got)
    expected = _EXPECTED.get(kind, error.get("msg", "a valid value").lower())
    return Problem(file, path, expected, got)


_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "list_type": "a list",
    "dict_type": "a table",
    "model_type": "a table",
    "model_attributes_type": "a table",
    "string_too_short": "a non-empty string",
    "greater_than": "a larger number",
    "greater_than_equal": "a larger number",
    "less_than_equal": "a smaller number",
}


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return repr(value if len(value) < 60 else value[:57] + "...")
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def did_you_mean(word: str, choices: list[str]) -> str | None:
    match = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"did you mean {match[0]!r}?" if match else None


def _check_references(project: Project, file: Path, needs_shots: bool = True) -> list[Problem]:
    """Cross references pydantic cannot see: ids, voices, paths, duplicates."""
    problems: list[Problem] = []
    characters = list(project.characters)
    voices = list(project.voices)

    def unknown(path: str, what: str, name: str, known: list[str]) -> Problem:
        hint = did_you_mean(name, known) or (f"known: {', '.join(known)}" if known else f"no {what}s defined")
        return Problem(file, path, f"the id of a [{what}s.*] entry", repr(name), hint=hint)

    if project.narrator.voice is not None and project.narrator.voice not in project.voices:
        problems.append(unknown("narrator.voice", "voice", project.narrator.voice, voices))
    for cid, character in project.characters.items():
        if not _ID.fullmatch(cid) or cid == NARRATOR:
            problems.append(Problem(file, f"characters.{cid}", "an id of letters, digits, '_', '-' or '.' "
                                    f"other than {NARRATOR!r}", repr(cid),
                                    hint="ids appear in node ids such as character:<id>"))
        if character.voice is not None and character.voice not in project.voices:
            problems.append(unknown(f"characters.{cid}.voice", "voice", character.voice, voices))
        if character.reference is not None:
            problem = check_inside(project.root, character.reference, file, f"characters.{cid}.reference")
            if problem:
                problems.append(problem)
        for look_id, look in character.looks.items():
            if not _ID.fullmatch(look_id):
                problems.append(Problem(file, f"characters.{cid}.looks.{look_id}",
                                        "a look id of letters, digits, '_', '-' or '.'", repr(look_id),
                                        hint="it appears in node ids such as character:<id>@<look>"))
            if look.reference is not None:
                problem = check_inside(project.root, look.reference, file,
                                       f"characters.{cid}.looks.{look_id}.reference")
                if problem:
                    problems.append(problem)
    for vid, voice in project.voices.items():
        for engine, entry in (voice.model_extra or {}).items():
            if isinstance(entry, dict) and isinstance(entry.get("prompt_wav"), str):
                problem = check_inside(project.root, entry["prompt_wav"], file,
                                       f"voices.{vid}.{engine}.prompt_wav")
                if problem:
                    problems.append(problem)
    for name in project.profiles:
        if not _PROFILE.fullmatch(name):
            problems.append(Problem(file, f"profiles.{name}", "a profile name of up to 64 letters, digits, "
                                    "'_' and '-', not starting with '-'", repr(name),
                                    hint="it names the folder out/<profile>/"))
    if project.music is not None:
        problem = check_inside(project.root, project.music.file, file, "music.file")
        if problem:
            problems.append(problem)

    seen_scenes: dict[str, int] = {}
    seen_shots: dict[str, str] = {}
    for i, scene in enumerate(project.scenes):
        problems += _scene_music_problems(project, scene, file, f"scenes[{i}].music")
        if scene.id in seen_scenes:
            problems.append(Problem(file, f"scenes[{i}].id", "a scene id used once",
                                    repr(scene.id), hint=f"also used by scenes[{seen_scenes[scene.id]}]"))
        seen_scenes.setdefault(scene.id, i)
        for k, cid in enumerate(scene.characters):
            if cid not in project.characters:
                problems.append(unknown(f"scenes[{i}].characters[{k}]", "character", cid, characters))
        problems += _look_problems(project, scene.looks, file, f"scenes[{i}].looks")
        for j, shot in enumerate(scene.shots):
            at = f"scenes[{i}].shots[{j}]"
            if shot.id in seen_shots:
                problems.append(Problem(file, f"{at}.id", "a shot id used once in the drama",
                                        repr(shot.id), hint=f"also used by {seen_shots[shot.id]}"))
            seen_shots.setdefault(shot.id, at)
            for k, cid in enumerate(shot.characters):
                if cid not in project.characters:
                    problems.append(unknown(f"{at}.characters[{k}]", "character", cid, characters))
            problems += _look_problems(project, shot.looks, file, f"{at}.looks")
            for k, line in enumerate(shot.lines):
                if not line.text.strip():
                    problems.append(Problem(file, f"{at}.lines[{k}].text", "text to speak", "only spaces"))
                if line.who != NARRATOR and line.who not in project.characters:
                    problems.append(unknown(f"{at}.lines[{k}].who", "character", line.who,
                                            characters + [NARRATOR]))
    if needs_shots and not seen_shots:
        problems.append(Problem(file, "scenes", "at least one [[scenes.shots]] entry", "a drama with no shots",
                                hint="add a [[scenes]] table with a [[scenes.shots]] table under it"))
    return problems


def _look_problems(project: Project, looks: dict[str, str], file: Path, path: str) -> list[Problem]:
    """`looks = { hanli = "young" }`: a known character, and a look it declares."""
    problems: list[Problem] = []
    for cid, look in looks.items():
        character = project.characters.get(cid)
        if character is None:
            known = list(project.characters)
            problems.append(Problem(file, f"{path}.{cid}", "the id of a [characters.*] entry", repr(cid),
                                    hint=did_you_mean(cid, known) or f"known: {', '.join(known)}"))
        elif look not in character.looks:
            names = list(character.looks)
            hint = did_you_mean(look, names) or (f"looks of {cid}: {', '.join(names)}" if names else
                                                 f"{cid} has no [characters.{cid}.looks.*]")
            problems.append(Problem(file, f"{path}.{cid}", f"a look of character {cid!r}", repr(look),
                                    hint=hint))
    return problems


_ID = re.compile(r"^[A-Za-z0-9_\-.]+$")
_PROFILE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$")  # compile.PROFILE_NAME


def _scene_music_problems(project: Project, scene: Scene, file: Path, path: str) -> list[Problem]:
    own = scene.music
    if own is None:
        return []
    if own.file is not None:
        problem = check_inside(project.root, own.file, file, f"{path}.file")
        return [problem] if problem else []
    if project.music is None and own.volume != 0:
        return [Problem(file, f"{path}.file", "a music file (the drama has no [music] to take it from)",
                        "nothing", hint='add file = "music/…", or write music = "none"')]
    return []


def check_inside(root: Path, relative: str, file: Path, path: str) -> Problem | None:
    """A path named in drama.toml must exist and stay inside the drama folder (no ../, no symlink out)."""
    candidate = Path(relative)
    if candidate.is_absolute():
        return Problem(file, path, "a path relative to the drama folder", repr(relative))
    base = root.resolve()
    resolved = (base / candidate).resolve()
    if not resolved.is_relative_to(base):
        return Problem(file, path, "a path inside the drama folder", repr(relative),
                       hint="it leaves the folder (through '..' or a symbolic link)")
    if not resolved.is_file():
        return Problem(file, path, "an existing file", repr(relative), hint="no such file")
    return None
