"""The `openai` split engine: a chat model groups the chapter into scenes and shots.

The model never retypes the chapter. It reads the chapter as numbered segments (sentences and
quoted speech, cut by the same rules as the offline engine) and answers with segment numbers:
which segments make each shot, who speaks which segment, and English prompts for the image
model (setting, action, camera, character descriptions). The narration and lines are then taken
from the chapter itself, so they stay in its language, word for word.

Every answer is checked — JSON, the answer's schema, every segment in exactly one shot and in
order, known speakers, and the scenes as drama.toml's own schema sees them — and an answer that
fails is sent back with the list of problems, a bounded number of times. Long chapters go in
chunks of about thirty shots; a running character registry goes with each chunk, so a person keeps
one id across the chapter.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import DramaError, EngineError
from ..project import NARRATOR, key_path, validate_project
from .cast import Person
from .chat import ChatClient, ChatEndpoint, Completion
from .outline import outline
from .rules import DEFAULT_MAX_SHOT_CHARS, Unit, units_of
from .story import CharacterDraft, SceneDraft, ShotDraft, Story, Voiced, narration_and_lines

SHOTS_PER_CHUNK = 30
_ID = re.compile(r"^[A-Za-z0-9_-]+$")
_EXCERPT = 40


# ── the answer the model gives ───────────────────────────────────────────────


class _Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AnswerCharacter(_Answer):
    id: str
    name: str
    description: str
    aliases: list[str] = []  # the text's other names for them (韩师弟, 二愣子)


class AnswerSpeaker(_Answer):
    segment: int
    who: str


class AnswerShot(_Answer):
    first: int
    last: int
    action: str
    camera: str = ""
    characters: list[str] = []
    speakers: list[AnswerSpeaker] = []


class AnswerScene(_Answer):
    continues_previous: bool = False
    setting: str
    shots: list[AnswerShot]


class ChunkAnswer(_Answer):
    characters: list[AnswerCharacter] = []
    scenes: list[AnswerScene]


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    # strict structured output wants every property required and no others allowed
    return {"type": "object", "additionalProperties": False, "required": list(properties),
            "properties": properties}


_STRING = {"type": "string"}
_INTEGER = {"type": "integer"}
ANSWER_SCHEMA = _object({
    "characters": {"type": "array", "items": _object({"id": _STRING, "name": _STRING, "description": _STRING,
                                                      "aliases": {"type": "array", "items": _STRING}})},
    "scenes": {"type": "array", "items": _object({
        "continues_previous": {"type": "boolean"},
        "setting": _STRING,
        "shots": {"type": "array", "items": _object({
            "first": _INTEGER,
            "last": _INTEGER,
            "action": _STRING,
            "camera": _STRING,
            "characters": {"type": "array", "items": _STRING},
            "speakers": {"type": "array", "items": _object({"segment": _INTEGER, "who": _STRING})},
        })},
    })},
})


# ── segments and chunks ──────────────────────────────────────────────────────


@dataclass(frozen=True)
class Numbered:
    n: int
    unit: Unit
    paragraph: int
    scene: int


@dataclass(frozen=True)
class Chunk:
    segments: tuple[Numbered, ...]

    @property
    def first(self) -> int:
        return self.segments[0].n

    @property
    def last(self) -> int:
        return self.segments[-1].n


def numbered_segments(chapter: str, language: str, limit: int) -> list[Numbered]:
    found: list[Numbered] = []
    paragraph_index = 0
    for scene_index, scene in enumerate(outline(chapter, language)):
        for paragraph in scene.paragraphs:
            for unit in units_of(paragraph, [], language, limit):
                found.append(Numbered(len(found), unit, paragraph_index, scene_index))
            paragraph_index += 1
    return found


def chunks(segments: Sequence[Numbered], chunk_chars: int) -> list[Chunk]:
    """Runs of whole paragraphs of about `chunk_chars`, cut at a scene break where one is near."""
    paragraphs: list[list[Numbered]] = []
    for segment in segments:
        if paragraphs and paragraphs[-1][0].paragraph == segment.paragraph:
            paragraphs[-1].append(segment)
        else:
            paragraphs.append([segment])
    found: list[list[Numbered]] = [[]]
    size = 0
    for paragraph in paragraphs:
        paragraph_size = sum(s.unit.size for s in paragraph)
        new_scene = bool(found[-1]) and found[-1][-1].scene != paragraph[0].scene
        # a scene break in the last third of a chunk ends it there, so chunks follow scenes
        if found[-1] and (size + paragraph_size > chunk_chars or (new_scene and size * 3 >= chunk_chars * 2)):
            found.append([])
            size = 0
        found[-1].extend(paragraph)
        size += paragraph_size
    return [Chunk(tuple(c)) for c in found if c]


# ── the registry of characters ───────────────────────────────────────────────


@dataclass(frozen=True)
class Registry:
    """Characters known so far, in order of first appearance; ids never change once given."""

    characters: dict[str, CharacterDraft] = field(default_factory=dict)

    def describe(self) -> str:
        if not self.characters:
            return "(none yet)"
        return "\n".join(f"- {c.id}: {c.name}" + (f" (also {', '.join(c.aliases)})" if c.aliases else "")
                         + f" — {c.description or '(no description yet: give one)'}"
                         for c in self.characters.values())

    def merged(self, answered: Sequence[AnswerCharacter]) -> tuple[Registry, dict[str, str]]:
        """The registry with an answer's characters added, and what each reference may be resolved to.

        A known id keeps its entry (a missing description is filled in, new aliases are added); a new
        id under a known name or alias is the known character; references may use an id, a name or an
        alias. An alias that already names another character is dropped: a name means one person.
        """
        characters = dict(self.characters)
        by_name = {n: c.id for c in characters.values() for n in (c.name, *c.aliases)}
        refer = {cid: cid for cid in characters}
        for c in answered:
            name, description = c.name.strip(), c.description.strip()
            cid = c.id if c.id in characters else by_name.get(name, c.id)
            refer[c.id] = cid
            known = characters.get(cid) or CharacterDraft(cid, name, description)
            by_name.setdefault(name, cid)
            aliases = [a for a in dict.fromkeys(a.strip() for a in c.aliases)
                       if a and by_name.setdefault(a, cid) == cid and a != known.name]
            characters[cid] = CharacterDraft(cid, known.name, known.description or description,
                                             tuple(dict.fromkeys((*known.aliases, *aliases))))
        return Registry(characters), {**{n: i for n, i in by_name.items() if n}, **refer}


# ── prompts ──────────────────────────────────────────────────────────────────

_SYSTEM = """\
You turn a chapter of a novel into a storyboard for an AI-rendered short drama: scenes (one place
and time each) and shots (one picture each, with the chapter's text spoken over it).

The chapter comes as numbered segments. Never rewrite or repeat their text: answer with numbers.
1. Every segment belongs to exactly one shot, in order: the first shot starts at the first segment
   you are given, each next shot starts right after the previous one ends, and the last shot ends
   at the last segment you are given. "first" and "last" are segment numbers, both included.
2. A shot is one visual moment: a few consecutive segments, about {limit} characters of text or less.
3. Start a new scene where the place or time changes. Set "continues_previous" to true only on your
   first scene, and only when it goes on in the scene the previous part ended in.
4. "speakers": each segment a character says aloud (most are marked "speech"), with that character's
   id. Every other segment is read by the narrator: do not list it.
5. "characters": every person who appears and is not known yet, once: an id of lowercase ASCII
   letters, digits or "-" (pinyin for Chinese names: 林远 → linyuan), the name as the text writes
   it, the other names the text calls them by in "aliases" (a nickname, a form of address such as
   韩师弟 for 韩立; [] if none), and an English description of their looks for an image model (age,
   build, face, hair, clothes). Give a description for known characters that have none, and list a
   known character again with the known id when the text calls them by a new alias; use known ids
   as they are.
   A shot's "characters" lists the ids of the people visible in it.
6. "setting", "action", "camera" are English prompts for an image model, concrete and visual:
   setting = the place, time of day, light and weather; action = who does what in this picture;
   camera = the framing (wide shot, medium shot, close-up, over-the-shoulder, ...).
Answer with JSON only, following this JSON schema:
{schema}"""


def system_prompt(limit: int) -> str:
    return _SYSTEM.format(limit=limit, schema=json.dumps(ANSWER_SCHEMA, separators=(",", ":")))


def chunk_prompt(chunk: Chunk, registry: Registry, previous_setting: str | None) -> str:
    out = ["Known characters (use these ids):", registry.describe(), ""]
    if previous_setting is None:
        out.append("This is the start of the chapter: there is no previous scene to continue.")
    else:
        out.append(f"The previous part ended in the scene with setting: {previous_setting!r}.")
    out += ["", f"Segments {chunk.first} to {chunk.last}:"]
    before: Numbered | None = None
    for segment in chunk.segments:
        if before is not None and segment.scene != before.scene:
            out.append("(scene break in the text)")
        elif before is not None and segment.paragraph != before.paragraph:
            out.append("")
        mark = "chapter heading: " if segment.unit.heading else "speech: " if segment.unit.speech else ""
        out.append(f"[{segment.n}] {mark}{segment.unit.text}")
        before = segment
    return "\n".join(out)


def feedback(problems: Sequence[str], chunk: Chunk, truncated: bool) -> str:
    lines = ["Your answer cannot be used:"] + [f"- {p}" for p in problems]
    if truncated:
        lines.append("- the answer was cut off at your output limit: use fewer words in the prompts")
    lines.append(f"Answer again with the complete corrected JSON for segments {chunk.first} to {chunk.last}.")
    return "\n".join(lines)


# ── checking an answer ───────────────────────────────────────────────────────


@dataclass(frozen=True)
class Checked:
    """A usable answer (its scenes, the registry it leaves) or the problems to send back."""

    scenes: list[SceneDraft]
    registry: Registry
    problems: list[str]
    continues: bool = False  # the first scene goes on in the previous chunk's last scene


def parse_answer(content: str) -> tuple[Any, str | None]:
    """The JSON in a model's answer (code fences allowed), or the reason it is not JSON."""
    text = content.strip()
    fenced = re.match(r"^```(?:json)?\s*\n(.*?)\n?```$", text, re.DOTALL)
    if fenced:
        text = fenced.group(1)
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        return None, f"the answer is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"


def check_answer(content: str, chunk: Chunk, registry: Registry, first_chunk: bool,
                 language: str) -> Checked:
    raw, error = parse_answer(content)
    if error is not None:
        return Checked([], registry, [error])
    try:
        answer = ChunkAnswer.model_validate(raw)
    except ValidationError as exc:
        return Checked([], registry, [f"{key_path(e['loc']) or 'the answer'}: {e['msg'].lower()}"
                                      for e in exc.errors()])
    after, refer = registry.merged(answer.characters)
    problems = _coverage_problems(answer, chunk) + _reference_problems(answer, refer, first_chunk)
    if problems:
        return Checked([], registry, problems)
    scenes = _scenes(answer, {s.n: s.unit for s in chunk.segments}, refer)
    problems = _drama_problems(scenes, after, language)
    if problems:
        return Checked([], registry, problems)
    return Checked(scenes, after, [], answer.scenes[0].continues_previous)


def _coverage_problems(answer: ChunkAnswer, chunk: Chunk) -> list[str]:
    texts = {s.n: s.unit.text for s in chunk.segments}
    problems: list[str] = []
    expected = chunk.first

    def missing(start: int, end: int) -> str:
        shown = " ".join(f"[{n}] {_excerpt(texts[n])}" for n in range(start, end + 1))
        return f"segments {start} to {end} are in no shot: {shown}" if start < end else \
            f"segment {start} is in no shot: {shown}"

    if not answer.scenes:
        return ["scenes: expected at least one scene"]
    for i, scene in enumerate(answer.scenes):
        if not scene.shots:
            problems.append(f"scenes[{i}].shots: expected at least one shot")
        for j, shot in enumerate(scene.shots):
            at = f"scenes[{i}].shots[{j}]"
            if shot.last < shot.first:
                problems.append(f"{at}: last ({shot.last}) comes before first ({shot.first})")
                continue
            if shot.first > expected:
                problems.append(missing(expected, min(shot.first - 1, chunk.last)))
            elif shot.first < expected:
                problems.append(f"{at}: starts at segment {shot.first}, which is already in an earlier shot "
                                f"(it should start at {expected})")
            if shot.last > chunk.last:
                problems.append(f"{at}: ends at segment {shot.last}, past the last segment {chunk.last}")
            for k, speaker in enumerate(shot.speakers):
                if not shot.first <= speaker.segment <= shot.last:
                    problems.append(f"{at}.speakers[{k}]: segment {speaker.segment} is not in this shot "
                                    f"({shot.first} to {shot.last})")
            expected = max(expected, shot.last + 1)
    if expected <= chunk.last:
        problems.append(missing(expected, chunk.last))
    return problems


def _reference_problems(answer: ChunkAnswer, refer: dict[str, str], first_chunk: bool) -> list[str]:
    problems: list[str] = []
    for k, c in enumerate(answer.characters):
        if not _ID.match(c.id):
            problems.append(f"characters[{k}].id: {c.id!r} is not an id of ASCII letters, digits or '-'")
        if c.id == NARRATOR:
            problems.append(f"characters[{k}].id: {NARRATOR!r} is reserved for the narrator")
        if not c.name.strip():
            problems.append(f"characters[{k}].name: expected the name as the text writes it")
        if not c.description.strip():
            problems.append(f"characters[{k}].description: expected an English description of their looks")
    for i, scene in enumerate(answer.scenes):
        if scene.continues_previous and i > 0:
            problems.append(f"scenes[{i}].continues_previous: only the first scene of an answer may continue "
                            "the previous part's scene")
        elif scene.continues_previous and first_chunk:
            problems.append(f"scenes[{i}].continues_previous: this is the start of the chapter; there is no "
                            "previous scene to continue")
        for j, shot in enumerate(scene.shots):
            at = f"scenes[{i}].shots[{j}]"
            for k, cid in enumerate(shot.characters):
                if cid not in refer:
                    problems.append(f"{at}.characters[{k}]: {cid!r} is not a known character id; "
                                    "add it to characters or use a known id")
            for k, speaker in enumerate(shot.speakers):
                if speaker.who != NARRATOR and speaker.who not in refer:
                    problems.append(f"{at}.speakers[{k}].who: {speaker.who!r} is not a known character id")
    return problems


def _scenes(answer: ChunkAnswer, units: dict[int, Unit], refer: dict[str, str]) -> list[SceneDraft]:
    scenes = []
    for scene in answer.scenes:
        shots = []
        for shot in scene.shots:
            speakers = {s.segment: refer.get(s.who, NARRATOR) for s in shot.speakers}
            parts = tuple(Voiced(speakers.get(n, NARRATOR), units[n].text)
                          for n in range(shot.first, shot.last + 1))
            characters = [refer[c] for c in shot.characters]
            characters += [who for who in speakers.values() if who != NARRATOR]
            shots.append(ShotDraft(parts, shot.action.strip(), shot.camera.strip(),
                                   tuple(dict.fromkeys(characters))))
        scenes.append(SceneDraft(scene.setting.strip(), tuple(shots)))
    return scenes


def _drama_problems(scenes: list[SceneDraft], registry: Registry, language: str) -> list[str]:
    """The answer's scenes as drama.toml's own schema sees them (empty prompts, bad references, …)."""
    raw = {
        "drama": {"title": "check", "language": language},
        "characters": {c.id: {"name": c.name, "description": c.description or c.name}
                       for c in registry.characters.values()},
        "scenes": [{"id": f"scene{i}", "setting": scene.setting,
                    "shots": [_shot_table(f"shot{i}-{j}", shot, language) for j, shot in enumerate(scene.shots)]}
                   for i, scene in enumerate(scenes)],
    }
    try:
        validate_project(raw, Path("."))
    except DramaError as exc:
        return [f"{p.key_path}: expected {p.expected}" + (f", got {p.got}" if p.got else "")
                for p in exc.problems]
    return []


def _shot_table(shot_id: str, shot: ShotDraft, language: str) -> dict[str, Any]:
    narration, lines = narration_and_lines(shot.parts, language)
    return {"id": shot_id, "characters": list(shot.characters), "action": shot.action, "camera": shot.camera,
            "narration": narration, "lines": lines}


def _excerpt(text: str) -> str:
    return repr(text if len(text) <= _EXCERPT else text[:_EXCERPT - 1] + "…")


# ── the engine ───────────────────────────────────────────────────────────────


def split_with_llm(chapter: str, title: str, language: str, people: Sequence[Person] | None,
                   endpoint: ChatEndpoint, max_shot_chars: int | None = None,
                   client: ChatClient | None = None) -> Story:
    client = client or ChatClient(endpoint)
    story, _ = split_chapter_with_llm(chapter, title, language, registry_of(people or []), endpoint, client,
                                      max_shot_chars)
    return story


def registry_of(people: Sequence[Person]) -> Registry:
    """The registry a split starts from: the characters given with --characters, not described yet."""
    return Registry({p.id: CharacterDraft(p.id, p.name, "", p.aliases) for p in people})


def split_chapter_with_llm(chapter: str, title: str, language: str, registry: Registry, endpoint: ChatEndpoint,
                           client: ChatClient, max_shot_chars: int | None = None) -> tuple[Story, Registry]:
    """One chapter, starting from the characters known so far (a book's earlier chapters): its Story
    (with the characters its shots show) and the registry it leaves for the next chapter."""
    limit = max_shot_chars or DEFAULT_MAX_SHOT_CHARS[language]
    segments = numbered_segments(chapter, language, limit)
    scenes: list[SceneDraft] = []
    for index, chunk in enumerate(chunks(segments, endpoint.chunk_chars or SHOTS_PER_CHUNK * limit)):
        previous = scenes[-1].setting if scenes else None
        checked = _ask(client, endpoint, chunk, registry, previous, index == 0, limit, language)
        registry = checked.registry
        answered = checked.scenes
        if scenes and checked.continues:
            scenes[-1] = SceneDraft(scenes[-1].setting, scenes[-1].shots + answered[0].shots)
            answered = answered[1:]
        scenes += answered
    used = {cid for scene in scenes for shot in scene.shots for cid in shot.characters}
    characters = tuple(CharacterDraft(c.id, c.name, c.description or c.name, c.aliases)
                       for c in registry.characters.values() if c.id in used)
    return Story(title, language, characters, tuple(scenes)), registry


def _ask(client: ChatClient, endpoint: ChatEndpoint, chunk: Chunk, registry: Registry,
         previous_setting: str | None, first_chunk: bool, limit: int, language: str) -> Checked:
    messages = [{"role": "system", "content": system_prompt(limit)},
                {"role": "user", "content": chunk_prompt(chunk, registry, previous_setting)}]
    problems: list[str] = []
    for _ in range(endpoint.attempts):
        completion: Completion = client.complete(messages, ANSWER_SCHEMA, "storyboard")
        checked = check_answer(completion.content, chunk, registry, first_chunk, language)
        if not checked.problems:
            return checked
        problems = checked.problems
        messages += [{"role": "assistant", "content": completion.content},
                     {"role": "user", "content": feedback(problems, chunk, completion.truncated)}]
    shown = "\n".join(f"  {p}" for p in problems[:8])
    raise EngineError(f"the model {endpoint.model!r} at {endpoint.url} gave no usable answer for segments "
                      f"{chunk.first} to {chunk.last} in {endpoint.attempts} attempts; the last one had:\n{shown}\n"
                      "try a stronger model, or the offline engine (--engine rules)")
