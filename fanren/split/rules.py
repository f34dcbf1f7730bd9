"""The `rules` split engine: offline, deterministic, no model.

Scenes come from the outline. Within a scene, each paragraph is cut into sentences and quoted
speech; sentences longer than the shot limit are cut at clause punctuation. A paragraph of at
least half the limit starts its own shot(s), cut as evenly as the limit allows; a shorter one
(a line of dialogue, mostly) joins the shot before it when it fits. So an edit re-groups shots
only up to the next long paragraph, and every other shot keeps its text and its id.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..project import NARRATOR
from ..text import sentences
from .cast import Person, detect_characters, names_in, speaker
from .coverage import spoken_length
from .outline import Paragraph, SceneText, outline
from .story import CharacterDraft, SceneDraft, ShotDraft, Story, Voiced

DEFAULT_MAX_SHOT_CHARS = {"zh": 50, "en": 120}  # letters or Hanzi: about ten seconds of speech

_ACTION_CHARS = {"zh": 30, "en": 100}
_SETTING_CHARS = {"zh": 40, "en": 120}
_CLAUSE_MARKS = "，、；：,;:—"
_PLACE_WORDS_ZH = re.compile("村|山|屋|房|院|城|镇|街|树林|森林|林子|河|湖|海|殿|堂|庙|门口|路|谷|洞|峰|崖|府|楼|阁|店|"
                             "田|江|桥|井|寺|宫|空地|广场|市集")
_PLACE_WORDS_EN = re.compile(
    r"\b(village|town|city|room|house|hall|forest|woods?|river|lake|sea|shore|mountain|hill|street|road|"
    r"temple|courtyard|kitchen|garden|field|cave|shop|inn|valley|bridge|tower|castle|well|yard|market|"
    r"square|station|harbou?r|office|school|door|gate)s?\b", re.IGNORECASE)
_DP_MAX_UNITS = 60  # the even-cut search is cubic; a paragraph with more sentences is cut greedily


@dataclass(frozen=True)
class Unit:
    """A sentence (or a piece of one) and who speaks it."""

    text: str
    who: str
    speech: bool
    heading: bool = False

    @property
    def size(self) -> int:
        return spoken_length(self.text)


def split_by_rules(chapter: str, title: str, language: str, people: Sequence[Person] | None,
                   max_shot_chars: int | None = None) -> Story:
    limit = max_shot_chars or DEFAULT_MAX_SHOT_CHARS[language]
    scenes = outline(chapter, language)
    cast = list(people) if people is not None else detect_characters(scenes, language)
    names = {p.id: p.name for p in cast}
    drafts = []
    for scene in scenes:
        shots = [_shot(units, cast, names, language) for units in _shots_of(scene, cast, language, limit)]
        drafts.append(SceneDraft(_setting(scene, cast, language), tuple(shots)))
    used = {cid for scene in drafts for shot in scene.shots for cid in shot.characters}
    characters = tuple(CharacterDraft(p.id, p.name, p.name, p.aliases) for p in cast if p.id in used)
    return Story(title, language, characters, tuple(drafts))


def title_of(scenes: Sequence[SceneText], fallback: str) -> str:
    """The first chapter heading, else `fallback` (the file's name)."""
    for scene in scenes:
        if scene.heading:
            return scene.heading
    return fallback


# ── units and shots ──────────────────────────────────────────────────────────


def units_of(paragraph: Paragraph, cast: Sequence[Person], language: str, limit: int) -> list[Unit]:
    if paragraph.heading:
        return [Unit(paragraph.text, NARRATOR, False, heading=True)]
    units = []
    for k, segment in enumerate(paragraph.segments):
        who = speaker(paragraph.segments, k, cast, language) if segment.speech else NARRATOR
        for sentence in sentences(segment.text):
            units += [Unit(piece, who, segment.speech) for piece in fit(sentence, limit, language)]
    return units


def fit(sentence: str, limit: int, language: str) -> list[str]:
    """A sentence cut into pieces of at most `limit` counted characters: at clause marks, else hard."""
    if spoken_length(sentence) <= limit:
        return [sentence]
    clauses = [c for c in re.split(rf"(?<=[{_CLAUSE_MARKS}])", sentence) if c]
    pieces: list[str] = []
    for clause in clauses:
        if pieces and spoken_length(pieces[-1] + clause) <= limit:
            pieces[-1] += clause
        else:
            pieces += _hard_cut(clause, limit, language)
    return pieces


def _hard_cut(text: str, limit: int, language: str) -> list[str]:
    """A clause over the limit in even pieces: between words where there are spaces, else anywhere."""
    size = spoken_length(text)
    if size <= limit:
        return [text]
    tokens = re.findall(r"\S+\s*", text) if language != "zh" and " " in text.strip() else list(text)
    pieces_needed = -(-size // limit)
    pieces = _cut_tokens(tokens, -(-size // pieces_needed))
    return pieces if len(pieces) <= pieces_needed else _cut_tokens(tokens, limit)


def _cut_tokens(tokens: list[str], target: int) -> list[str]:
    pieces = [""]
    for token in tokens:
        # punctuation counts for nothing, so it always stays with the words before it
        if pieces[-1] and spoken_length(pieces[-1] + token) > target:
            pieces.append("")
        pieces[-1] += token
    return pieces


def _shots_of(scene: SceneText, cast: Sequence[Person], language: str, limit: int) -> list[list[Unit]]:
    shots: list[list[Unit]] = []
    joinable = False  # may the next short paragraph join the last shot?
    for paragraph in scene.paragraphs:
        units = units_of(paragraph, cast, language, limit)
        if not units:
            continue
        size = sum(u.size for u in units)
        if paragraph.heading:
            shots.append(units)
            joinable = False
            continue
        if joinable and 2 * size < limit and sum(u.size for u in shots[-1]) + size <= limit:
            shots[-1].extend(units)
            continue
        shots += even_cut(units, limit)
        joinable = True
    return shots


def even_cut(units: list[Unit], limit: int) -> list[list[Unit]]:
    """The fewest groups of at most `limit` (a unit over it stands alone), as even as possible."""
    sizes = [u.size for u in units]
    greedy = _greedy(sizes, limit)
    if len(greedy) <= 1 or len(units) > _DP_MAX_UNITS:
        return _groups(units, greedy)
    return _groups(units, _even(sizes, limit, len(greedy)))


def _greedy(sizes: list[int], limit: int) -> list[int]:
    counts: list[int] = []
    total = 0
    for size in sizes:
        if counts and total + size <= limit:
            counts[-1] += 1
            total += size
        else:
            counts.append(1)
            total = size
    return counts


def _even(sizes: list[int], limit: int, groups: int) -> list[int]:
    """Group counts for `groups` groups within `limit` minimising the sum of squared group sizes."""
    n = len(sizes)
    prefix = [0]
    for size in sizes:
        prefix.append(prefix[-1] + size)
    inf = float("inf")
    cost = [[inf] * (groups + 1) for _ in range(n + 1)]
    cut = [[0] * (groups + 1) for _ in range(n + 1)]
    cost[0][0] = 0
    for g in range(1, groups + 1):
        for i in range(1, n + 1):
            for j in range(g - 1, i):
                size = prefix[i] - prefix[j]
                if size > limit and i - j > 1:
                    continue
                candidate = cost[j][g - 1] + size * size
                if candidate < cost[i][g]:
                    cost[i][g] = candidate
                    cut[i][g] = j
    counts = []
    i = n
    for g in range(groups, 0, -1):
        j = cut[i][g]
        counts.append(i - j)
        i = j
    return counts[::-1]


def _groups(units: list[Unit], counts: list[int]) -> list[list[Unit]]:
    out, start = [], 0
    for count in counts:
        out.append(units[start:start + count])
        start += count
    return out


# ── what a shot shows ────────────────────────────────────────────────────────


def _shot(units: list[Unit], cast: Sequence[Person], names: dict[str, str], language: str) -> ShotDraft:
    characters: list[str] = []
    for unit in units:
        mentioned = [cid for _, cid in names_in(unit.text, cast)]
        for cid in ([unit.who] if unit.who != NARRATOR else []) + mentioned:
            if cid not in characters:
                characters.append(cid)
    parts = tuple(Voiced(u.who, u.text) for u in units)
    return ShotDraft(parts, _action(units, names, language), _camera(units, characters), tuple(characters))


def _action(units: list[Unit], names: dict[str, str], language: str) -> str:
    narrative = [u.text for u in units if not u.speech]
    if narrative:
        return shorten(narrative[0], _ACTION_CHARS[language])
    speakers = list(dict.fromkeys(names[u.who] for u in units if u.who in names))
    if speakers:
        return "、".join(speakers) + "说话" if language == "zh" else " and ".join(speakers) + " speaking"
    return shorten(units[0].text, _ACTION_CHARS[language])


def _camera(units: list[Unit], characters: list[str]) -> str:
    if units[0].heading:
        return ""
    if all(u.speech for u in units):
        return "close-up"
    return "medium shot" if characters else "wide shot"


def _setting(scene: SceneText, cast: Sequence[Person], language: str) -> str:
    """The first sentence of the scene that names a place (a character's name never counts)."""
    narrative = [sentence for p in scene.paragraphs if not p.heading
                 for s in p.segments if not s.speech for sentence in sentences(s.text)]
    for sentence in narrative:
        if _names_a_place(sentence, cast, language):
            return shorten(sentence, _SETTING_CHARS[language])
    if narrative:
        return shorten(narrative[0], _SETTING_CHARS[language])
    return shorten(scene.paragraphs[0].text, _SETTING_CHARS[language])


def _names_a_place(sentence: str, cast: Sequence[Person], language: str) -> bool:
    for person in cast:
        for name in person.names:
            sentence = sentence.replace(name, " ")
    pattern = _PLACE_WORDS_ZH if language == "zh" else _PLACE_WORDS_EN
    return pattern.search(sentence) is not None


def shorten(text: str, limit: int) -> str:
    """A prompt-sized head of `text`: cut at the last clause mark before `limit`, end marks dropped."""
    text = text.strip()
    if len(text) > limit:
        head = text[:limit]
        marks = [head.rfind(m) for m in _CLAUSE_MARKS + "，,"]
        cut = max(marks)
        if cut < limit // 3:
            space = head.rfind(" ")
            cut = space if space > limit // 3 else limit
        text = head[:cut]
    return text.rstrip(" 。！？!?.，,、；;：:…—\"“”「」『』") or text
