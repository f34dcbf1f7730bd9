"""Who is in the chapter and who says each quoted line, found from the text by rules.

Characters come from `--characters` ("林远,林母", "lin=林远,林母", or with the text's other names for
a character: "hanli=韩立|韩师弟|二愣子"), else from the names that
stand where speakers stand — at the start of the clause around a quote, or after a speech verb —
and recur in the chapter. A quote's speaker is the character its tag names; when no tag names
one, a paragraph whose narrative names a single person gives it to that person (the convention
of one speaker per paragraph); otherwise the line goes to the narrator rather than to a guess.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import UsageError
from ..project import NARRATOR
from .outline import SceneText, Segment

MAX_DETECTED = 8  # more recurring names than this are mostly not people
MAX_DETECTED_BOOK = 16  # a whole book has a larger cast; its most mentioned names are the people


@dataclass(frozen=True)
class Person:
    id: str
    name: str
    aliases: tuple[str, ...] = ()  # other names the text calls them by: a mention of one is a mention of them

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name, *self.aliases)


def character_id(name: str) -> str:
    """A character id from a name: 'Old Chen' → 'old-chen', '林远' → 'linyuan' (pinyin).

    Ids appear in node ids (`character:<id>`), so they are ASCII; a name with nothing to spell
    in ASCII gets a short hash of itself.
    """
    name = name.strip()
    spelled = name if name.isascii() else _romanize(name)
    slug = re.sub(r"[^a-z0-9]+", "-", spelled.lower()).strip("-")
    if slug:
        return slug
    return "c-" + hashlib.blake2b(name.encode("utf-8"), digest_size=4).hexdigest()


def _romanize(name: str) -> str:
    from pypinyin import lazy_pinyin  # its dictionaries take a quarter of a second to load

    return "".join(lazy_pinyin(name))


def _unique(person_id: str, taken: set[str]) -> str:
    """Two names can spell alike (林远, 林原 → linyuan): the later one gets '-2', '-3', …"""
    candidate, n = person_id, 1
    while candidate in taken or candidate == NARRATOR:
        n += 1
        candidate = f"{person_id}-{n}"
    return candidate


def parse_characters(spec: str) -> list[Person]:
    """'林远, mother=林母, hanli=韩立|韩师弟' → [Person('linyuan', '林远'), Person('mother', '林母'),
    Person('hanli', '韩立', ('韩师弟',))]: after an optional id, the name, then its aliases after '|'."""
    people: list[Person] = []
    for item in re.split(r"[,，、;；]", spec):
        item = item.strip()
        if not item:
            continue
        given_id, _, names = item.rpartition("=")
        given_id = given_id.strip()
        name, *aliases = [n.strip() for n in re.split(r"[|｜]", names)]
        if not name:
            raise UsageError(f"--characters: {item!r} has no name (expected 'name', 'id=name' or "
                             "'id=name|alias|alias')")
        if "" in aliases:
            raise UsageError(f"--characters: {item!r} has an empty alias (expected 'id=name|alias|alias')")
        if given_id and not _GIVEN_ID.match(given_id):
            raise UsageError(f"--characters: the id {given_id!r} may hold only ASCII letters, digits, "
                             "'_', '-' and '.'")
        if given_id == NARRATOR:
            raise UsageError(f"--characters: {NARRATOR!r} is reserved for the narrator; choose another id")
        own = [name, *aliases]
        for k, listed in enumerate(own):
            if listed in own[:k] or any(listed in p.names for p in people):
                raise UsageError(f"--characters: {listed!r} is listed twice")
        if any(p.id == given_id for p in people):
            raise UsageError(f"--characters: the id {given_id!r} is given to two characters")
        person_id = given_id or _unique(character_id(name), {p.id for p in people})
        people.append(Person(person_id, name, tuple(aliases)))
    if not people:
        raise UsageError("--characters: no names given (expected e.g. --characters \"林远,林母\")")
    return people


_GIVEN_ID = re.compile(r"^[A-Za-z0-9_\-.]+$")


# ── finding names in text ────────────────────────────────────────────────────


def names_in(text: str, people: Sequence[Person]) -> list[tuple[int, str]]:
    """(offset, character id) of each mention by name or alias, in order; a longer name wins over
    one inside it (韩师弟 over 韩)."""
    taken = [False] * len(text)
    found: list[tuple[int, str]] = []
    named = sorted(((name, person.id) for person in people for name in person.names), key=lambda n: -len(n[0]))
    for name, person_id in named:
        for match in _name_pattern(name).finditer(text):
            span = range(match.start(), match.end())
            if not any(taken[i] for i in span):
                for i in span:
                    taken[i] = True
                found.append((match.start(), person_id))
    return sorted(found)


def _name_pattern(name: str) -> re.Pattern[str]:
    if name.isascii():
        return re.compile(rf"\b{re.escape(name)}\b")
    return re.compile(re.escape(name))


_SENTENCE_END = re.compile(r"[。！？!?；;]|\.(?=\s|$)")
_CLAUSE_END = re.compile(r"[。！？!?；;，,：:]|\.(?=\s|$)")

SPEECH_VERBS_ZH = ("说", "道", "问", "喊", "叫", "答", "应", "骂", "嚷", "嘀咕", "吩咐", "叮嘱", "笑")
SPEECH_VERBS_EN = ("said", "says", "asked", "asks", "replied", "answered", "shouted", "cried", "called",
                   "whispered", "muttered", "murmured", "added", "told", "snapped", "laughed")


def _has_speech_verb(text: str, language: str) -> bool:
    if language == "zh":
        return any(v in text for v in SPEECH_VERBS_ZH)
    return re.search(rf"\b({'|'.join(SPEECH_VERBS_EN)})\b", text, re.IGNORECASE) is not None


def _last_sentence(text: str) -> str:
    body = text.rstrip()
    cut = 0
    for match in _SENTENCE_END.finditer(body[:-1] if body else body):
        cut = match.end()
    return body[cut:]


def _first_clause(text: str) -> str:
    match = _CLAUSE_END.search(text)
    return text if match is None else text[: match.end()]


def speaker(segments: Sequence[Segment], index: int, people: Sequence[Person], language: str) -> str:
    """The id of whoever says `segments[index]` (a speech segment), or 'narrator' when unsure."""
    before = segments[index - 1].text if index > 0 and not segments[index - 1].speech else ""
    after = segments[index + 1].text if index + 1 < len(segments) and not segments[index + 1].speech else ""
    tag_before = _last_sentence(before)
    if tag_before.rstrip()[-1:] in ("：", ":", "，", ","):
        named = names_in(tag_before, people)
        if named:
            return named[0][1]
    tag_after = _first_clause(after)
    named = names_in(tag_after, people)
    if named and (named[0][0] == 0 or _has_speech_verb(tag_after, language)):
        return named[0][1]
    named = names_in(tag_before, people)
    if named and _has_speech_verb(tag_before, language):
        return named[0][1]
    # a paragraph belongs to one speaker: a beat that names only one person names the speaker
    narrative = " ".join(s.text for s in segments if not s.speech)
    named_ids = {cid for _, cid in names_in(narrative, people)}
    if len(named_ids) == 1:
        return named_ids.pop()
    return NARRATOR


# ── detecting characters when none are given ─────────────────────────────────

_STOP_FIRST_ZH = set("他她它我你您这那也又就便只却还都对向把被给和与跟在是了着的地得不没有此随然于突忽接"
                     "刚说听看想正将已从当让叫等一")
_STOP_WORDS_ZH = {"众人", "大家", "两人", "二人", "三人", "有人", "对方", "自己", "少年", "老人"}
_STOP_WORDS_EN = {"He", "She", "They", "It", "I", "We", "You", "The", "A", "An", "His", "Her", "Their",
                  "But", "And", "Then", "When", "So", "Yes", "No", "Oh", "Well", "Now", "There", "This",
                  "That", "What", "Why", "How", "Who", "If", "As", "At", "In", "On", "For"}
_HANZI_RUN = re.compile(r"^[\u4e00-\u9fff]{2,3}")
_CAPITALIZED = re.compile(r"\b([A-Z][a-z]+(?: [A-Z][a-z]+)?)\b")


def detect_characters(scenes: Sequence[SceneText], language: str) -> list[Person]:
    """Recurring names in the speaker's place around quotes, in order of first mention."""
    text = "\n".join(p.text for scene in scenes for p in scene.paragraphs)
    candidates = speaker_candidates(scenes, language, Mentions(text))
    names = [name for name in dict.fromkeys(candidates) if _mentions(name, text) >= 2]
    names.sort(key=lambda name: _first_mention(name, text))
    return _people(names[:MAX_DETECTED])


class Mentions:
    """How often a name occurs in a text, counted once per name (a book is scanned per name, not
    per quote)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.counts: dict[str, int] = {}

    def __call__(self, name: str) -> int:
        if name not in self.counts:
            self.counts[name] = _mentions(name, self.text)
        return self.counts[name]


def detect_book_characters(candidates: Sequence[str], mentions: Mentions) -> list[Person]:
    """A whole book's cast from the speaker candidates of all its chapters: the MAX_DETECTED_BOOK
    names the book mentions most (at least twice), in order of first mention."""
    names = sorted((name for name in dict.fromkeys(candidates) if mentions(name) >= 2), key=lambda n: -mentions(n))
    chosen = sorted(names[:MAX_DETECTED_BOOK], key=lambda name: _first_mention(name, mentions.text))
    return _people(chosen)


# Forms of address after a surname that name one person of a sect (韩师弟, 厉师兄): read as that
# person when exactly one character of the cast has the surname.
ADDRESS_ZH = ("师兄", "师弟", "师姐", "师妹", "师叔", "师伯", "师侄")


def with_address_aliases(people: Sequence[Person], mentions: Mentions) -> list[Person]:
    """The cast with `<surname><form of address>` (韩师弟) as an alias of the one character of that
    surname, wherever the text uses it. A detected "character" that is such an address (or its
    first two letters, 韩师) is that character and leaves the cast; with no one, or two characters,
    of its surname it stays as found."""
    def is_address(name: str) -> bool:
        return not name.isascii() and (name[1:] in ADDRESS_ZH or name[1:] == "师")

    by_surname: dict[str, list[Person]] = {}
    for person in people:
        if not person.name.isascii() and not is_address(person.name):
            by_surname.setdefault(person.name[0], []).append(person)
    found: list[Person] = []
    for person in people:
        owners = by_surname.get(person.name[0], []) if not person.name.isascii() else []
        if is_address(person.name):
            if len(owners) != 1:
                found.append(person)
            continue
        if len(owners) == 1:
            forms = [person.name[0] + form for form in ADDRESS_ZH]
            person = Person(person.id, person.name,
                            (*person.aliases, *(f for f in forms if f not in person.names and mentions(f))))
        found.append(person)
    return found


def _people(names: Sequence[str]) -> list[Person]:
    people: list[Person] = []
    for name in names:
        people.append(Person(_unique(character_id(name), {p.id for p in people}), name))
    return people


def speaker_candidates(scenes: Sequence[SceneText], language: str, mentions: Mentions) -> list[str]:
    """Names standing where speakers stand (the clause around a quote), in order, with repeats;
    `mentions` counts in the text where a Chinese name's length is judged (the chapter, or the book)."""
    candidates: list[str] = []
    for scene in scenes:
        for paragraph in scene.paragraphs:
            for k, segment in enumerate(paragraph.segments):
                if not segment.speech:
                    continue
                tags = []
                if k > 0 and not paragraph.segments[k - 1].speech:
                    tags.append(_last_sentence(paragraph.segments[k - 1].text))
                if k + 1 < len(paragraph.segments) and not paragraph.segments[k + 1].speech:
                    tags.append(_first_clause(paragraph.segments[k + 1].text))
                for tag in tags:
                    candidates += _candidates_zh(tag, mentions) if language == "zh" else _candidates_en(tag)
    return candidates


def _candidates_zh(tag: str, mentions: Mentions) -> list[str]:
    clause = tag.strip()
    match = _HANZI_RUN.match(clause)
    if match is None or clause[0] in _STOP_FIRST_ZH:
        return []
    two, three = match.group()[:2], match.group()[:3]
    # a three-character name appears only as itself; a two-character one also on its own
    if len(three) == 3 and mentions(three) == mentions(two):
        best = three
    else:
        best = two
    return [] if best in _STOP_WORDS_ZH else [best]


def _candidates_en(tag: str) -> list[str]:
    found = []
    clause = tag.strip()
    verbs = "|".join(SPEECH_VERBS_EN)
    after_verb = re.search(rf"\b(?:{verbs})\s+([A-Z][a-z]+(?: [A-Z][a-z]+)?)", clause)
    if after_verb:
        found.append(after_verb.group(1))
    at_start = _CAPITALIZED.match(clause)
    if at_start:
        found.append(at_start.group(1))
    return [name for name in found if name.split()[0] not in _STOP_WORDS_EN]


def _mentions(name: str, text: str) -> int:
    if name.isascii():
        return sum(1 for _ in _name_pattern(name).finditer(text))
    return text.count(name)


def _first_mention(name: str, text: str) -> int:
    match = _name_pattern(name).search(text)
    return match.start() if match else len(text)
