"""Project → Graph: nodes, edges and the params that go into keys. Prompts are rendered here.

Nothing here runs an engine; it only asks engines for their identity and (video) native size.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import xxhash

from .engines import Engine, VideoEngine, available_engines, engine_class
from .engines.base import episode_size
from .engines.voice import SpeechEngine
from .errors import DramaError, OptionError, Problem, UsageError
from .graph import Graph, Node
from .project import NARRATOR, Character, Profile, Project, Scene, Shot, Voice, decode_utf8
from .series import Series
from .text import clean_text, sentences

LEAD_IN = 0.15       # seconds of silence before a shot's first line
MAX_SLOW = 1.5       # a clip may be slowed to at most 1/1.5 of its speed to cover speech
LOUDNESS = {"i": -16.0, "tp": -1.5}  # the episode's integrated loudness (LUFS) and true-peak ceiling (dBTP)
SUBTITLE_FONT = "Noto Sans CJK SC"

BUILTIN_PROFILES: dict[str, dict[str, Any]] = {
    "draft": {"image": "card", "video": "kenburns", "voice": "espeak"},
    # Chosen by measurement on an H200 (docs/performance.md, bench/results/h200/; full-size
    # architectures, random weights, bf16), and because both render 16:9, 9:16 and 1:1 natively at
    # 24 fps (CogVideoX-5b, the old default, renders 16:9 only at 8 fps, 80–104 s a clip):
    # - flux2 (FLUX.2 klein 4B): a 720×1280 keyframe with two character references in 1.44 s eager,
    #   peak 17.07 GiB (fits a 24 GB card in full). Compiling saves 0.23 s a keyframe for 17.7 s
    #   once: it pays off only past ~77 keyframes, so it stays off.
    # - ltx2 (LTX-2): a 5 s 9:16 clip (704×1280, 121 frames) in 41.6 s with `distilled = true`
    #   (1.26 s/step, 75.6 GB in full); the default 30-step schedule, for the released weights, is
    #   about 150 s (estimated, not measured). `vram = "auto"` picks group-offload on a 24 GB card.
    # HunyuanVideo 1.5 (866 s a 480p clip) is too slow for a default; Wan 2.2 was not measured.
    "final": {"image": "flux2", "video": "ltx2", "voice": "cosyvoice"},
    # the real flux2 and ltx2 engine code on tiny random pipelines: renders on a CPU in CI
    "smoke": {
        "image": {"engine": "flux2", "model": "fanren-tiny:flux2", "steps": 2},
        "video": {"engine": "ltx2", "model": "fanren-tiny:ltx2", "steps": 2},
        "voice": "espeak",
    },
}
FAMILIES = ("image", "video", "voice")
# A profile's name is the name of its folder under out/: a simple name, never a path.
PROFILE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,63}$")
PROFILE_NAME_RULE = "up to 64 letters, digits, '_' and '-', not starting with '-'"


@dataclass(frozen=True)
class Engines:
    """The engines one profile renders with (constructed, not loaded)."""

    profile: str
    image: Engine
    video: VideoEngine
    voice: Engine
    mux: Engine
    report: Engine
    export: Engine = field(default_factory=lambda: engine_class("export")())
    check: Engine | None = None  # the consistency check's embedder, when [check] consistency is set

    def by_family(self) -> dict[str, Engine]:
        families = {"image": self.image, "video": self.video, "voice": self.voice,
                    "mux": self.mux, "report": self.report, "export": self.export}
        return families | ({"check": self.check} if self.check is not None else {})


def profile_names(project: Project | Series) -> list[str]:
    return sorted(set(BUILTIN_PROFILES) | set(project.profiles))


def resolve_engines(project: Project | Series, profile: str) -> Engines:
    """The engine of each family for `profile`: the drama's [profiles.<name>] over the built-in one."""
    if not PROFILE_NAME.fullmatch(profile):  # it names the folder out/<profile>/
        raise UsageError(f"--profile: expected a profile name ({PROFILE_NAME_RULE}), got {profile!r}")
    if profile not in BUILTIN_PROFILES and profile not in project.profiles:
        raise UsageError(f"no profile named {profile!r} (profiles: {', '.join(profile_names(project))})")
    chosen: dict[str, tuple[str, dict[str, Any]]] = {}
    base = BUILTIN_PROFILES.get(profile, BUILTIN_PROFILES["draft"])
    for family in FAMILIES:
        spec = base[family]
        chosen[family] = (spec, {}) if isinstance(spec, str) else (
            spec["engine"], {k: v for k, v in spec.items() if k != "engine"})
    override: Profile | None = project.profiles.get(profile)
    for family in FAMILIES:
        choice = getattr(override, family) if override is not None else None
        if choice is not None:
            chosen[family] = (choice.engine, choice.options)

    def build(family: str) -> Engine:
        name, options = chosen[family]
        where = f"profiles.{profile}.{family}"
        try:
            cls = engine_class(name).variant(family)
        except UsageError as exc:
            if override is None or getattr(override, family) is None:  # a built-in profile's engine
                raise UsageError(f"profile {profile!r} renders {family} with engine {name!r}, "
                                 f"which is not available: {exc}") from None
            known = sorted(available_engines())
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            listing = f"installed: {', '.join(known)}"
            hint = f"did you mean {close[0]!r}? {listing}" if close else listing
            raise DramaError(Problem(project.file, f"{where}.engine", "an installed engine", repr(name),
                                     hint=hint)) from None
        if cls.family != family:
            raise DramaError(Problem(project.file, where,
                                     f"an engine of the {family} family", f"{name!r} ({cls.family})"))
        try:
            return cls(_drama_files(project, cls, options, where))
        except OptionError as exc:
            raise DramaError(exc.problem(project.file, where)) from None
        except (TypeError, ValueError, UsageError) as exc:  # an engine that names no option
            raise DramaError(Problem(project.file, where, f"valid options for engine {name!r}",
                                     str(exc))) from None

    video = build("video")
    assert isinstance(video, VideoEngine)
    return Engines(profile=profile, image=build("image"), video=video, voice=build("voice"),
                   mux=engine_class("mux")(), report=engine_class("storyboard")(),
                   check=consistency_engine(project))


def consistency_engine(project: Project) -> Engine | None:
    """The embedder of `[check] consistency` (the same in every profile), or None when unset."""
    settings = project.check.consistency
    if settings is None:
        return None
    try:
        return engine_class("consistency")(settings.engine_options())
    except OptionError as exc:
        raise DramaError(exc.problem(project.file, "check.consistency")) from None


def _drama_files(project: Project, cls: type[Engine], options: dict[str, Any], where: str) -> dict[str, Any]:
    """`options` with each file option (a path relative to the drama folder) made absolute, checked to exist."""
    resolved = dict(options)
    for name in sorted(cls.file_options & set(options)):
        value = options[name]
        if not isinstance(value, str) or not value or not (project.root / value).is_file():
            got = repr(value) if not isinstance(value, str) or not value else f"{value!r}, which does not exist"
            raise DramaError(Problem(project.file, f"{where}.{name}", "a file in the drama folder", got))
        resolved[name] = str((project.root / value).resolve())
    return resolved


def derive_seed(drama_seed: int, label: str) -> int:
    """A seed from the drama seed and a node's identity (never its position): stable under reordering."""
    return xxhash.xxh64_intdigest(f"{drama_seed}:{label}".encode()) % (2**31)


def compile_project(project: Project, engines: Engines, memo: PromptMemo | None = None) -> Graph:
    """Every node of the episode, in a topological order, with the params that go into its key.
    With a `memo`, a prompt rendered before from the same templates is taken from it (see PromptMemo)."""
    graph = Graph()
    prompts = Prompts(project.root, project.template_dirs, memo)
    _compile_episode(project, engines, graph, prompts, "")
    return graph


def compile_drama(drama: Project | Series, engines: Engines, memo: PromptMemo | None = None) -> Graph:
    """The graph of a single drama, or of a series."""
    return (compile_series(drama, engines, memo) if isinstance(drama, Series)
            else compile_project(drama, engines, memo))


def compile_series(series: Series, engines: Engines, memo: PromptMemo | None = None) -> Graph:
    """Every node of every episode of the series in one graph (a build of some episodes runs only
    theirs, see build.selected_graph, but plans them all: the season page says what is stale).

    An episode's nodes are its own (`ep01/keyframe:s1`); a character or look sheet that equals the
    series' (same description, style, seed, reference, prompt) is one node for the whole series
    (`character:hanli@young`), whichever episodes show it. An episode that redefines a character
    gets a sheet of its own (`ep01/character:hanli`).
    """
    graph = Graph()
    prompts: dict[tuple[Path, ...], Prompts] = {}  # one jinja environment per set of template folders

    def prompts_for(project: Project) -> Prompts:
        folders = tuple(f for f in project.template_dirs if f.is_dir())
        if folders not in prompts:
            prompts[folders] = Prompts(project.root, folders, memo)
        return prompts[folders]

    shared = series.shared
    _add_sheets(shared, engines, graph, prompts_for(shared), "", list(episode_size(shared.drama.aspect)))
    for episode, project in series.episodes.items():
        _compile_episode(project, engines, graph, prompts_for(project), f"{episode}/")
    return graph


Sheets = dict[tuple[str, str | None], str]  # (character id, look or None) → the node id of its sheet


def _add_sheets(project: Project, engines: Engines, graph: Graph, prompts: Prompts, prefix: str,
                size: list[int]) -> Sheets:
    """A sheet node per character and per look. In a series (`prefix` set) a sheet equal to the one
    already in the graph is that node; any other is the episode's own."""
    drama = project.drama
    sheets: Sheets = {}
    identity, gpu = engines.image.identity(), engines.image.resources().gpu
    for cid, character in project.characters.items():
        for look_id in (None, *character.looks):
            look = character.looks[look_id] if look_id is not None else None
            id = f"character:{cid}" if look_id is None else f"character:{cid}@{look_id}"
            where = f"characters.{cid}" if look_id is None else f"characters.{cid}.looks.{look_id}"
            # a look without a reference of its own keeps the character's: a reference is the face
            reference = look.reference or character.reference if look else character.reference
            params = {
                "character_id": cid,
                "name": character.name or cid,
                "description": look.description if look else character.description,
                "style": drama.style,
                "prompt": prompts.render("character.j2", where,
                                         character=_character_vars(cid, character, look_id),
                                         style=drama.style, language=drama.language),
                "seed": derive_seed(drama.seed, id),
                "size": size,
                "language": drama.language,
                "reference": reference,
                **({"look": look_id} if look_id is not None else {}),
            }
            sheet = Node(id=id, kind="character", family=engines.image.family, engine=engines.image.name,
                         identity=identity, params=params, sources=(reference,) if reference else (), gpu=gpu)
            if prefix and not (id in graph and graph[id] == sheet):
                sheet = replace(sheet, id=prefix + id)
            if sheet.id not in graph:
                graph.add(sheet)
            sheets[(cid, look_id)] = sheet.id
    return sheets


def _compile_episode(project: Project, engines: Engines, graph: Graph, prompts: Prompts, prefix: str) -> None:
    """The nodes of one episode, their ids after `prefix` (empty for a single drama)."""
    drama = project.drama
    size = list(episode_size(drama.aspect))
    try:
        frame = list(engines.video.native_size(drama.aspect))
    except OptionError as exc:  # the profile's video model cannot render the drama's aspect
        raise DramaError(exc.problem(project.file, f"profiles.{engines.profile}.video")) from None
    fps = engines.video.native_fps(drama.fps)

    def node(id: str, kind: str, engine: Engine, params: dict[str, Any],
             inputs: tuple[str, ...] = (), sources: tuple[str, ...] = (),
             reads: dict[str, tuple[str, ...]] | None = None) -> Node:
        return graph.add(Node(id=prefix + id, kind=kind, family=engine.family, engine=engine.name,
                              identity=engine.identity(), params=params, inputs=inputs,
                              sources=sources, gpu=engine.resources().gpu, reads=reads or {}))

    sheets = _add_sheets(project, engines, graph, prompts, prefix, size)
    shot_ids: list[str] = []
    for i, scene in enumerate(project.scenes):
        for j, shot in enumerate(scene.shots):
            where = f"scenes[{i}].shots[{j}]"
            _compile_shot(project, engines, node, prompts, sheets, prefix, scene, shot, where, frame, size, fps)
            shot_ids.append(shot.id)

    shots = tuple(f"{prefix}shot:{s}" for s in shot_ids)
    node("subtitles", "subtitles", engines.mux,
         {"size": size, "language": drama.language, "font": SUBTITLE_FONT}, inputs=shots,
         reads={s: ("timing.json",) for s in shots})
    # the shots carry their burned subtitles: the episode only copies their video and mixes audio
    music = scene_music(project)
    node("episode", "episode", engines.mux, {
        "fps": drama.fps, "subtitles": drama.subtitles, "loudness": LOUDNESS, "music": music,
    }, inputs=shots + (f"{prefix}subtitles",), sources=tuple(sorted({entry["file"] for entry in music})))
    node("storyboard", "storyboard", engines.report, {
        "title": drama.title, "language": drama.language,
        "shots": [{"id": shot.id, "scene": scene.id, "action": shot.action, "camera": shot.camera,
                   "narration": shot.narration,
                   "lines": [{"who": line.who, "text": line.text} for line in shot.lines]}
                  for scene, shot in project.shots()],
    }, inputs=tuple(f"{prefix}keyframe:{s}" for s in shot_ids) + shots,
        reads={s: ("timing.json",) for s in shots})
    _compile_exports(project, engines, graph, node, prefix, size, music)
    if engines.check is not None:
        _compile_checks(project, engines.check, node, prefix, sheets)


def _compile_exports(project: Project, engines: Engines, graph: Graph, node: Any, prefix: str,
                     size: list[int], music: list[dict[str, Any]]) -> None:
    """One `export:<format>` node per format of `[export] formats`: it reads every shot's picture
    and timing, every line's speech and cues and the music files, so editing one line re-writes
    the exports and nothing more than the episode already re-renders.

    The picture of a shot is its shot.mp4, unless the shots burn their subtitles in: then a
    `picture:<shot>` node renders the shot's clip fitted the same way without them, so that the
    exports' subtitles, which an editor can restyle, are the only ones on screen."""
    formats = list(dict.fromkeys(project.export.formats))
    if not formats:
        return
    burned = project.drama.subtitles == "burn"
    shots: list[dict[str, Any]] = []
    inputs: list[str] = []
    reads: dict[str, tuple[str, ...]] = {}
    # params name nodes by their ids within the episode (what the engine and the key see); inputs
    # and reads by their ids in the graph (`prefix` + id in a series)
    for _, shot in project.shots():
        shot_id = f"{prefix}shot:{shot.id}"
        shot_node = graph[shot_id]
        lines = list(shot_node.params["lines"])
        if burned:
            picture = node(f"picture:{shot.id}", "picture", engines.export, {
                "shot_id": shot.id, **{k: shot_node.params[k] for k in ("size", "fps", "fit", "max_slow", "motion")},
            }, inputs=(f"{prefix}clip:{shot.id}", shot_id), reads={shot_id: ("timing.json",)})
            inputs += [shot_id, picture.id]
            reads[shot_id] = ("timing.json",)
            reads[picture.id] = ("picture.mp4",)
            source = [f"picture:{shot.id}", "picture.mp4"]
        else:
            inputs.append(shot_id)
            reads[shot_id] = ("shot.mp4", "timing.json")
            source = [f"shot:{shot.id}", "shot.mp4"]
        shots.append({"id": shot.id, "picture": source, "lines": lines})
        inputs += [prefix + line["node"] for line in lines]
        reads.update({prefix + line["node"]: ("speech.wav", "cues.json") for line in lines})
    for fmt in formats:
        node(f"export:{fmt}", "export", engines.export, {
            "format": fmt, "libraries": _export_libraries(project, fmt),
            "title": project.drama.title, "fps": project.drama.fps, "size": size, "lead_in": LEAD_IN,
            "shots": shots, "music": music,
        }, inputs=tuple(inputs), sources=tuple(sorted({entry["file"] for entry in music})), reads=reads)


def _export_libraries(project: Project, fmt: str) -> dict[str, str]:
    """The versions of the libraries that write `fmt` (they go into its key); bad input naming the
    extra to install when one is missing."""
    from importlib.metadata import PackageNotFoundError, version

    from .export import LIBRARIES

    try:
        return {name: version(name) for name in LIBRARIES[fmt]}
    except PackageNotFoundError as exc:
        where = f"export.formats[{project.export.formats.index(fmt)}]"  # type: ignore[arg-type]
        raise DramaError(Problem(project.file, where, f"the Python package {exc.name} installed to "
                                 f"write {fmt!r}", "not installed",
                                 hint="pip install 'fanren[export]'")) from None


def _compile_checks(project: Project, engine: Engine, node: Any, prefix: str, sheets: Sheets) -> None:
    """One consistency node per character that some shot shows: its sheet and those keyframes.

    A shot's other characters' sheets are inputs too: they compete for the keyframe's regions.
    The sheet is the character's own (not a look's): a shot in a look is scored against it too.
    """
    for cid, character in project.characters.items():
        shots = [{"shot": shot.id, "characters": list(shot.characters or scene.characters)}
                 for scene, shot in project.shots() if cid in (shot.characters or scene.characters)]
        if not shots:
            continue
        cast = sorted({c for shot in shots for c in shot["characters"]})
        node(f"consistency:{cid}", "consistency", engine,
             {"character_id": cid, "name": character.name or cid, "shots": shots},
             inputs=tuple(sheets[(c, None)] for c in cast) + tuple(f"{prefix}keyframe:{s['shot']}" for s in shots))


def scene_music(project: Project) -> list[dict[str, Any]]:
    """The music under each scene that has some: its shots (in episode order), file and volume.

    A scene's shots rather than times: the episode reads the shots' durations from their outputs.
    """
    entries: list[dict[str, Any]] = []
    for scene in project.scenes:
        music = project.music_of(scene)
        if music is not None and scene.shots:
            entries.append({"shots": [shot.id for shot in scene.shots], "file": music.file,
                            "volume": music.volume})
    return entries


def _compile_shot(project: Project, engines: Engines, node: Any, prompts: Prompts, sheets: Sheets,
                  prefix: str, scene: Scene, shot: Shot, where: str, frame: list[int], size: list[int],
                  fps: int) -> None:
    drama = project.drama
    seed = shot.seed if shot.seed is not None else derive_seed(drama.seed, f"shot:{shot.id}")
    cast = [(cid, project.look_of(scene, shot, cid)) for cid in shot.characters or scene.characters]
    characters = [_character_vars(cid, project.characters[cid], look) for cid, look in cast]
    variables = {"scene": {"id": scene.id, "setting": scene.setting},
                 "shot": {"id": shot.id, "action": shot.action, "camera": shot.camera},
                 "characters": characters, "style": drama.style, "language": drama.language}

    node(f"keyframe:{shot.id}", "keyframe", engines.image, {
        "shot_id": shot.id, "scene_id": scene.id, "setting": scene.setting,
        "characters": characters, "action": shot.action, "camera": shot.camera,
        "style": drama.style, "prompt": prompts.render("keyframe.j2", where, **variables),
        "seed": seed, "size": frame, "language": drama.language,
    }, inputs=tuple(sheets[entry] for entry in cast))
    node(f"clip:{shot.id}", "clip", engines.video, {
        "shot_id": shot.id, "prompt": prompts.render("motion.j2", where, **variables),
        "seed": seed, "size": frame, "fps": fps,
    }, inputs=(f"{prefix}keyframe:{shot.id}",))

    spoken: list[tuple[str, str]] = []
    if shot.narration.strip():
        spoken.append((NARRATOR, shot.narration))
    spoken += [(line.who, line.text) for line in shot.lines]
    line_ids: list[str] = []
    for n, (who, text) in enumerate(spoken):
        voice = _voice_for(project, who)
        entry = voice.for_engine(engines.voice.name) if voice else None
        voice_params: dict[str, Any] = {"speed": voice.speed if voice else 1.0}
        if entry is not None:
            voice_params[engines.voice.name] = entry
        line_id = f"line:{shot.id}:{n}"
        source_files = engines.voice.source_files(entry) if isinstance(engines.voice, SpeechEngine) else []
        node(line_id, "line", engines.voice, {
            "text": text, "sentences": sentences(text), "speaker": who,
            "voice": voice_params, "language": drama.language,
        }, sources=tuple(source_files))
        line_ids.append(line_id)

    node(f"shot:{shot.id}", "shot", engines.mux, {
        "shot_id": shot.id, "size": size, "fps": drama.fps, "pause": drama.pause,
        "lead_in": LEAD_IN, "min_seconds": shot.duration, "fit": shot.fit or drama.fit,
        "max_slow": MAX_SLOW,
        # how a clip below the drama's fps (once slowed) reaches it; always "duplicate" for an
        # engine whose clips are not worth interpolating (Ken Burns)
        "motion": (shot.motion or drama.motion) if engines.video.interpolates else "duplicate",
        # a shot burns its own subtitles (in the episode's style), so the episode needs no re-encode
        "subtitles": drama.subtitles, "font": SUBTITLE_FONT, "language": drama.language,
        "lines": [{"node": lid, "who": who, "text": text}
                  for lid, (who, text) in zip(line_ids, spoken, strict=True)],
    }, inputs=(f"{prefix}clip:{shot.id}", *(prefix + lid for lid in line_ids)))


def _character_vars(cid: str, character: Character, look: str | None = None) -> dict[str, str]:
    """What prompts and keyframes know of a character: in a look, that look's description."""
    if look is None:
        return {"id": cid, "name": character.name or cid, "description": character.description}
    return {"id": cid, "name": character.name or cid, "description": character.looks[look].description,
            "look": look}


def _voice_for(project: Project, who: str) -> Voice | None:
    if who == NARRATOR:
        vid = project.narrator.voice
    else:
        vid = project.characters[who].voice
    return project.voices.get(vid) if vid else None


PROMPT_MEMO_VERSION = 1


@dataclass
class PromptMemo:
    """Prompts rendered by an earlier compile of the same drama, so that compiling it unchanged
    needs neither jinja2 nor a render (a no-op build of 1,800 shots renders 3,600 prompts).

    An entry is keyed by the template's name, its variables and the stamp of every file the
    rendering could read or depend on (the template folders' files, the packaged ones, jinja2 and
    the code that renders: path, inode, mtime, size): editing, adding or removing a template misses,
    and the prompt is rendered as without a memo. Only prompts that rendered are kept, so a
    template that fails fails again. The build keeps it in the cache (`read_prompt_memo`).
    """

    known: dict[str, str] = field(default_factory=dict)   # as read: key → prompt
    used: dict[str, str] = field(default_factory=dict)    # what this compile rendered or found


def prompt_memo_file(cache_root: Path, root: Path) -> Path:
    """Where the prompt memo of the drama (or series) in `root` is kept: one file per drama."""
    return cache_root / "prompts" / f"{xxhash.xxh3_128_hexdigest(str(Path(root).resolve()).encode())}.json"


def read_prompt_memo(file: Path) -> PromptMemo:
    """The memo in `file`; empty when missing or unreadable (a memo is a speed-up, never input)."""
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return PromptMemo()
    if not isinstance(raw, dict) or raw.get("version") != PROMPT_MEMO_VERSION \
            or not isinstance(raw.get("prompts"), dict):
        return PromptMemo()
    return PromptMemo(known={str(k): v for k, v in raw["prompts"].items() if isinstance(v, str)})


def write_prompt_memo(file: Path, memo: PromptMemo) -> None:
    """Keep what this compile used, if that differs from what was read (not fsynced: a memo)."""
    if memo.used == memo.known:
        return
    from .cache import atomic_write

    file.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(file, json.dumps({"version": PROMPT_MEMO_VERSION, "prompts": memo.used},
                                  ensure_ascii=False, separators=(",", ":")), durable=False)


def _templates_stamp(root: Path, folders: tuple[Path, ...]) -> str:
    """What a rendered prompt depends on besides its variables, as stats (no file is read)."""
    import importlib.util

    from . import templates_dir

    jinja = importlib.util.find_spec("jinja2")
    files = [Path(__file__), Path(__file__).with_name("text.py"),
             Path(jinja.origin) if jinja is not None and jinja.origin else None]
    stamps: list[Any] = [PROMPT_MEMO_VERSION, str(root), [str(f) for f in folders]]
    for folder in (*folders, templates_dir()):
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames.sort()
            files += [Path(dirpath, name) for name in sorted(filenames)]
    for file in files:
        try:
            st = os.stat(file) if file is not None else None
        except OSError:
            st = None
        stamps.append([str(file), *((st.st_ino, st.st_mtime_ns, st.st_size) if st else ())])
    return xxhash.xxh3_128_hexdigest(json.dumps(stamps, separators=(",", ":")).encode())


# Bounds on what one template may do: a prompt is a paragraph, not a book.
MAX_PROMPT = 100_000      # characters a template may render
MAX_ITERATIONS = 100_000  # range() elements one rendering may ask for, all calls together
MAX_NUMBER = 100_000      # largest integer argument a filter or method may be given


class Prompts:
    """jinja2 prompt templates: the drama's templates/ folder first, then the packaged ones.

    Sandboxed, with StrictUndefined so a misspelt variable is an error rather than an empty prompt.
    The rendered prompt goes into the key, so a template edit re-renders exactly the nodes whose
    prompt it changed. Every way a template can fail (syntax, a missing include, 1/0, an endless
    extends, a loop or a string too large) is bad input naming the template file and line; a
    template that is a symbolic link out of the drama folder is refused, as references are.
    """

    def __init__(self, root: Path, folders: tuple[Path, ...] | None = None,
                 memo: PromptMemo | None = None) -> None:
        self.root = root
        self.folders = folders if folders is not None else (root / "templates",)
        self.memo = memo
        self._templates: str | None = None  # the stamp of every template file, for the memo
        self._env: Any = None
        self._jinja: Any = None

    @property
    def env(self) -> Any:
        """The jinja2 environment, made (and jinja2 imported) at the first prompt the memo lacks."""
        if self._env is None:
            import jinja2

            from . import templates_dir

            self._jinja = jinja2
            self._env = _bounded_environment(jinja2.ChoiceLoader([
                *(_inside_loader(folder, self.root) for folder in self.folders),
                jinja2.FileSystemLoader(str(templates_dir()))]))
        return self._env

    def render(self, name: str, where: str, **variables: Any) -> str:
        if self.memo is None:
            return self._render(name, where, variables)
        if self._templates is None:
            self._templates = _templates_stamp(self.root, self.folders)
        key = xxhash.xxh3_128_hexdigest(json.dumps([self._templates, name, variables], sort_keys=True,
                                                   ensure_ascii=False, separators=(",", ":")).encode())
        prompt = self.memo.known.get(key)
        if prompt is None:
            prompt = self._render(name, where, variables)
        self.memo.used[key] = prompt
        return prompt

    def _render(self, name: str, where: str, variables: dict[str, Any]) -> str:
        env = self.env
        jinja2 = self._jinja
        env.iterations = 0
        try:
            template = env.get_template(name)
            rendered: list[str] = []
            size = 0
            for chunk in template.generate(**variables):
                size += len(chunk)
                if size > MAX_PROMPT:
                    raise jinja2.exceptions.SecurityError(
                        f"the prompt is longer than {MAX_PROMPT:,} characters")
                rendered.append(chunk)
            return " ".join(clean_text("".join(rendered)).split())
        except DramaError:
            raise
        except jinja2.TemplateSyntaxError as exc:
            raise DramaError(Problem(self._shown(exc.filename, name), f"line {exc.lineno}",
                                     "a valid jinja2 template", exc.message or "a syntax error",
                                     line=exc.lineno)) from None
        except jinja2.TemplateNotFound as exc:
            file, line = self._where(exc, name)
            raise DramaError(Problem(file, f"rendering for {where}", "a template that renders",
                                     f"no template named {exc.name!r}", line=line,
                                     hint="templates/ of the drama holds the ones it may include")) from None
        except Exception as exc:  # noqa: BLE001 -- whatever a template does wrong is bad input
            file, line = self._where(exc, name)
            if isinstance(exc, RecursionError):
                message = "a template that extends or includes itself (endless recursion)"
            elif isinstance(exc, MemoryError):
                message = "MemoryError: the template asked for more memory than there is"
            elif isinstance(exc, (jinja2.UndefinedError, jinja2.exceptions.SecurityError)):
                message = str(exc)
            else:
                message = f"{type(exc).__name__}: {exc}"
            raise DramaError(Problem(file, f"rendering for {where}", "a template that renders",
                                     message, line=line, hint="variables: scene, shot, characters, "
                                     "character, style, language")) from None

    def _shown(self, filename: str | None, name: str) -> str:
        return filename or self._filename(name)

    def _filename(self, name: str) -> str:
        try:
            return self.env.get_template(name).filename or name
        except Exception:  # noqa: BLE001 -- only for naming the file in a message
            return name

    def _where(self, exc: BaseException, name: str) -> tuple[str, int | None]:
        """The template file and line the error was raised at (jinja2 puts template lines into
        the traceback), else the template asked for."""
        import traceback

        frames = [f for f in traceback.extract_tb(exc.__traceback__)
                  if f.filename.endswith(".j2") or "/templates/" in f.filename]
        if frames:
            return frames[-1].filename, frames[-1].lineno
        return self._filename(name), None


def _bounded_environment(loader: Any) -> Any:
    """A SandboxedEnvironment whose range(), * and ** and filters cannot ask for unbounded work."""
    import functools

    import jinja2
    from jinja2.sandbox import SandboxedEnvironment

    def too_large(what: str) -> Exception:
        return jinja2.exceptions.SecurityError(f"{what} is too large for a prompt template")

    def check_numbers(values: Any) -> None:
        for value in values:
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_NUMBER:
                raise too_large(f"the number {value}")

    class Bounded(SandboxedEnvironment):  # type: ignore[misc]
        intercepted_binops = frozenset({"*", "**"})
        iterations = 0

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            if operator == "**":
                if isinstance(right, (int, float)) and abs(right) > 64 and abs(left) > 1:
                    raise too_large(f"{left!r} ** {right!r}")
            elif isinstance(left, (str, list, tuple)) or isinstance(right, (str, list, tuple)):
                seq, count = (left, right) if isinstance(left, (str, list, tuple)) else (right, left)
                if isinstance(count, int) and len(seq) * count > MAX_PROMPT:
                    raise too_large("a repeated string or list")
            return super().call_binop(context, operator, left, right)

        def call(self, context: Any, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
            check_numbers(args)
            check_numbers(kwargs.values())
            return super().call(context, obj, *args, **kwargs)

    env = Bounded(loader=loader, undefined=jinja2.StrictUndefined, autoescape=False,
                  keep_trailing_newline=False)

    def budgeted_range(*args: int) -> range:
        numbers = range(*args)
        env.iterations += len(numbers)
        if env.iterations > MAX_ITERATIONS:
            raise too_large(f"range() with {env.iterations:,} elements in one prompt")
        return numbers

    def bounded(filter_fn: Any) -> Any:
        @functools.wraps(filter_fn)
        def checked(*args: Any, **kwargs: Any) -> Any:
            check_numbers(args)
            check_numbers(kwargs.values())
            return filter_fn(*args, **kwargs)

        return checked

    env.globals["range"] = budgeted_range
    env.globals.pop("lipsum", None)  # lipsum(10**6) is a megabyte of Latin
    env.filters = {name: bounded(fn) for name, fn in env.filters.items()}
    return env


def _inside_loader(folder: Path, root: Path) -> Any:
    """The drama's templates/: a template file must stay inside the drama folder (no symbolic link
    out of it), as a reference image must, and be UTF-8; jinja2 already refuses '..' in names."""
    import jinja2

    class Inside(jinja2.FileSystemLoader):  # type: ignore[misc]
        def get_source(self, environment: Any, template: str) -> Any:
            try:
                source, filename, uptodate = super().get_source(environment, template)
            except UnicodeDecodeError:
                file = folder.joinpath(*jinja2.loaders.split_template_path(template))
                decode_utf8(file.read_bytes(), file)
                raise
            base = Path(root).resolve()
            if not Path(filename).resolve().is_relative_to(base):
                raise DramaError(Problem(Path(filename), "", "a template inside the drama folder",
                                         repr(f"templates/{template}"),
                                         hint="it is a symbolic link that leaves the folder"))
            return source, filename, uptodate

    return Inside(str(folder))
