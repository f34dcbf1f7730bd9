"""The example dramas, the `fanren init` scaffold and docs/drama-toml.md agree with the schema."""

from __future__ import annotations

import re
import tomllib
import types
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import pytest
import xxhash
from pydantic import BaseModel, TypeAdapter
from pydantic.fields import FieldInfo

from fanren.compile import compile_project, resolve_engines
from fanren.errors import UsageError
from fanren.project import NARRATOR, Project, Shot, load_project
from fanren.scaffold import DRAMA_TEMPLATE, GITIGNORE, scaffold
from fanren.text import sentences

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
DOC = REPO / "docs" / "drama-toml.md"

HAN = re.compile(r"[\u4e00-\u9fff]")
LATIN = re.compile(r"[A-Za-z]")


def cast(project: Project, shot_id: str) -> list[str]:
    scene, shot = next((sc, sh) for sc, sh in project.shots() if sh.id == shot_id)
    return shot.characters or scene.characters


# ── examples ─────────────────────────────────────────────────────────────────


def test_xianxia_example_validates_with_its_cast_scenes_and_shots() -> None:
    project = load_project(EXAMPLES / "xianxia")

    assert project.drama.title == "命灯"
    assert (project.drama.language, project.drama.aspect, project.drama.seed) == ("zh", "16:9", 20241)
    assert set(project.characters) == {"ayuan", "lu", "wensong"}
    assert [c.name for c in project.characters.values()] == ["阿沅", "陆既白", "闻松"]
    assert [scene.id for scene in project.scenes] == ["lamp_hall", "sword_tomb", "lamp_hall_dawn"]
    assert [len(scene.shots) for scene in project.scenes] == [4, 8, 2]
    assert project.shots()[0][1].id == "relit"
    assert all(scene.setting.isascii() for scene in project.scenes)
    assert all(shot.camera and shot.action.isascii() for _, shot in project.shots())


def test_xianxia_characters_have_english_descriptions_and_their_own_voices() -> None:
    project = load_project(EXAMPLES / "xianxia")

    assert project.narrator.voice == "storyteller"
    voices = [project.characters[cid].voice for cid in ("ayuan", "lu", "wensong")]
    assert voices == ["girl", "swordsman", "elder"]
    for character in project.characters.values():
        assert character.description.isascii() and len(character.description) > 80
    speeds = [project.voices[v].speed for v in ["storyteller", *voices]]  # type: ignore[index]
    assert speeds == [0.95, 1.08, 0.92, 0.85]
    for voice in project.voices.values():
        assert voice.for_engine("cosyvoice") in {"中文女", "中文男"}
        assert voice.for_engine("espeak") in {None, "cmn-latn-pinyin"}


def test_xianxia_speech_is_chinese_short_and_spoken_by_someone_in_the_shot() -> None:
    project = load_project(EXAMPLES / "xianxia")
    shots = [shot for _, shot in project.shots()]

    narrated = [shot for shot in shots if shot.narration]
    assert len(narrated) == 10
    for shot in narrated:
        assert HAN.search(shot.narration) and not LATIN.search(shot.narration), shot.id
        assert 1 <= len(sentences(shot.narration)) <= 3, shot.id
    lines = [(shot, line) for shot in shots for line in shot.lines]
    assert len(lines) == 11
    assert {line.who for _, line in lines} == {"ayuan", "lu", "wensong"}
    for shot, line in lines:
        assert HAN.search(line.text) and not LATIN.search(line.text), shot.id
        assert line.who in cast(project, shot.id), f"{shot.id}: {line.who} speaks but is not drawn"


def test_xianxia_shows_the_optional_shot_keys() -> None:
    project = load_project(EXAMPLES / "xianxia")
    by_id: dict[str, Shot] = {shot.id: shot for _, shot in project.shots()}

    assert (by_id["pull"].seed, by_id["pull"].fit) == (7, "loop")
    assert (by_id["her_lamp"].duration, by_id["her_lamp"].fit) == (6, "hold")
    assert by_id["ghost"].characters == [] and cast(project, "ghost") == ["ayuan", "lu"]


def test_english_example_is_a_vertical_four_shot_scene() -> None:
    project = load_project(EXAMPLES / "english")

    assert (project.drama.title, project.drama.language, project.drama.aspect) == ("Wrong Number", "en", "9:16")
    assert set(project.characters) == {"iris", "iris_older"}
    assert [scene.id for scene in project.scenes] == ["apartment"]
    assert [shot.id for _, shot in project.shots()] == ["call", "warning", "knock", "peephole"]
    last = project.shots()[-1][1]
    assert [line.who for line in last.lines] == ["iris_older", NARRATOR]
    for _, shot in project.shots():
        assert shot.narration.isascii() and all(line.text.isascii() for line in shot.lines)
    assert {v.for_engine("espeak") for v in project.voices.values()} == {"en-us", "en-gb"}


def test_xianxia_compiles_to_the_node_ids_the_doc_describes() -> None:
    project = load_project(EXAMPLES / "xianxia")
    graph = compile_project(project, resolve_engines(project, "draft"))

    shots = [shot for _, shot in project.shots()]
    spoken = sum(bool(shot.narration) + len(shot.lines) for shot in shots)
    # characters; keyframe, clip and shot of each shot; lines; subtitles, episode, storyboard
    assert len(graph) == 3 + 3 * len(shots) + spoken + 3
    assert graph["line:tablet:0"].params["text"] == shot_by_id(shots, "tablet").narration
    assert graph["line:tablet:0"].params["speaker"] == NARRATOR
    assert graph["line:tablet:1"].params["text"] == "死人的灯……怎么会再亮？"
    assert graph["line:elder_arrives:0"].params["speaker"] == "wensong"
    assert "line:elder_arrives:2" not in graph
    # seeds: derived from the drama seed and the id as the doc says, or pinned by the shot
    derived = xxhash.xxh64_intdigest(b"20241:shot:relit") % 2**31
    assert graph["keyframe:relit"].params["seed"] == graph["clip:relit"].params["seed"] == derived
    assert graph["keyframe:pull"].params["seed"] == graph["clip:pull"].params["seed"] == 7
    assert graph["character:lu"].params["seed"] == xxhash.xxh64_intdigest(b"20241:character:lu") % 2**31
    assert graph["keyframe:ghost"].inputs == ("character:ayuan", "character:lu")


def shot_by_id(shots: list[Shot], shot_id: str) -> Shot:
    return next(shot for shot in shots if shot.id == shot_id)


# ── scaffold ─────────────────────────────────────────────────────────────────


def test_scaffold_writes_a_drama_that_validates(tmp_path: Path) -> None:
    root = tmp_path / "青云志"
    written = scaffold(root)

    assert written == [root / "drama.toml", root / ".gitignore", root / "refs" / ".gitkeep"]
    assert (root / ".gitignore").read_text(encoding="utf-8") == ".fanren-cache/\nout/\n"
    assert (root / "refs" / ".gitkeep").read_bytes() == b""
    project = load_project(root)
    assert project.drama.title == "青云志"
    assert [shot.id for _, shot in project.shots()] == ["pebble", "whisper"]
    assert list(project.characters) == ["xiaoman"]
    assert [line.who for _, shot in project.shots() for line in shot.lines] == ["xiaoman"]


def test_scaffold_quotes_any_title(tmp_path: Path) -> None:
    title = '命灯 "第一集" \\ tab\there \x7f'
    scaffold(tmp_path, title)

    # quoted so that it loads; loading then drops the control character (DEL), as from any text
    assert load_project(tmp_path).drama.title == title.replace("\x7f", "")
    assert "\\u007f" in (tmp_path / "drama.toml").read_text(encoding="utf-8")


def test_scaffold_refuses_an_existing_drama(tmp_path: Path) -> None:
    (tmp_path / "drama.toml").write_text("# mine\n", encoding="utf-8")

    with pytest.raises(UsageError, match="drama.toml already exists"):
        scaffold(tmp_path, "x")
    assert (tmp_path / "drama.toml").read_text(encoding="utf-8") == "# mine\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["drama.toml"]


def test_scaffold_keeps_an_existing_gitignore_and_refs(tmp_path: Path) -> None:
    (tmp_path / ".gitignore").write_text("*.psd\nout/", encoding="utf-8")
    (tmp_path / "refs").mkdir()
    (tmp_path / "refs" / "face.png").write_bytes(b"png")

    written = scaffold(tmp_path, "t")

    assert written == [tmp_path / "drama.toml", tmp_path / ".gitignore"]
    assert (tmp_path / ".gitignore").read_text(encoding="utf-8") == "*.psd\nout/\n.fanren-cache/\n"
    assert scaffold(tmp_path / "again", "t")[1].read_text(encoding="utf-8") == GITIGNORE


def uncomment_all(template: str) -> str:
    """Every commented-out key and table header of the template, made live."""
    return re.sub(r"(?m)^# (?=\[|[a-z_]+ = )", "", template)


def test_scaffold_shows_every_key_and_its_commented_keys_are_valid(tmp_path: Path) -> None:
    (tmp_path / "refs").mkdir()
    (tmp_path / "refs" / "xiaoman.png").write_bytes(b"a picture")
    (tmp_path / "music").mkdir()
    (tmp_path / "music" / "theme.mp3").write_bytes(b"a tune")
    (tmp_path / "drama.toml").write_text(uncomment_all(DRAMA_TEMPLATE.substitute(title='"t"')),
                                         encoding="utf-8")

    project = load_project(tmp_path)

    unset = sorted(f"{path}.{name}" for path, (model, keys) in keys_given(project).items()
                   for name in set(model.model_fields) - keys)
    assert unset == []
    # the commented values of [drama] and [voices] are the defaults
    drama = project.drama
    assert (drama.fps, drama.pause, drama.subtitles, drama.fit) == (24, 0.4, "burn", "slow")
    assert project.voices["narrator"].speed == 1.0


def keys_given(project: Project) -> dict[str, tuple[type[BaseModel], set[str]]]:
    """Each kind of table (`.scenes.shots`, `.voices.*`) → its model and the keys any instance set."""
    given: dict[str, tuple[type[BaseModel], set[str]]] = {}

    def walk(path: str, value: Any) -> None:
        if isinstance(value, BaseModel):
            given.setdefault(path, (type(value), set()))[1].update(value.model_fields_set)
            for name in type(value).model_fields:
                walk(f"{path}.{name}", getattr(value, name))
        elif isinstance(value, list):
            for item in value:
                walk(path, item)
        elif isinstance(value, dict):
            for item in value.values():
                walk(f"{path}.*", item)

    walk("", project)
    return given


# ── docs/drama-toml.md ───────────────────────────────────────────────────────

HEADING = re.compile(r"^#{2,4} ")
TABLE_PATH = re.compile(r"`(\[\[?[^`]+?\]\]?|drama\.toml)`")
BOUND = re.compile(r"(≥|>|≤|<) (-?\d+(?:\.\d+)?)")
BOUND_NAMES = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}


def doc_tables() -> dict[str, list[list[str]]]:
    """TOML table path from a heading (`scenes.shots`, `voices.<id>`, `drama.toml` for the top
    level) → the rows of the markdown tables under that heading, as lists of cells."""
    tables: dict[str, list[list[str]]] = {}
    current: str | None = None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if HEADING.match(line):
            match = TABLE_PATH.search(line)
            current = match.group(1).strip("[]") if match else None
            if current is not None:
                assert current not in tables, f"two headings for {current}"
                tables[current] = []
        elif current is not None and line.startswith("|"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])]
            if cells[0] != "Key" and not set(cells[0]) <= set("-: "):
                tables[current].append(cells)
    return tables


def unwrap(tp: Any) -> Any:
    """Optional[X], Annotated[X, ...] and list[X] → X."""
    while True:
        origin = get_origin(tp)
        if origin is Annotated or origin is list:
            tp = get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            (tp,) = [a for a in get_args(tp) if a is not type(None)]
        else:
            return tp


def model_at(path: str) -> type[BaseModel]:
    tp: Any = Project
    if path != "drama.toml":
        for part in path.split("."):
            tp = unwrap(tp)
            if get_origin(tp) is dict:
                assert part.startswith("<"), f"{path}: {part} is a name you choose: write <id>"
                tp = get_args(tp)[1]
            elif part.startswith("<"):
                (tp,) = {unwrap(f.annotation) for f in tp.model_fields.values()}
            else:
                tp = tp.model_fields[part].annotation
    tp = unwrap(tp)
    assert isinstance(tp, type) and issubclass(tp, BaseModel), path
    return tp


def reachable_models() -> set[type[BaseModel]]:
    seen: set[type[BaseModel]] = set()
    todo: list[Any] = [Project]
    while todo:
        tp = unwrap(todo.pop())
        if get_origin(tp) is dict:
            todo.append(get_args(tp)[1])
        elif isinstance(tp, type) and issubclass(tp, BaseModel) and tp not in seen:
            seen.add(tp)
            todo += [f.annotation for f in tp.model_fields.values()]
    return seen


def type_word(field: FieldInfo) -> str | None:
    """The word the doc's Type column must use for this field (None for a literal)."""
    tp: Any = field.annotation
    while get_origin(tp) in (Union, types.UnionType, Annotated):
        tp = get_args(tp)[0] if get_origin(tp) is Annotated else next(
            a for a in get_args(tp) if a is not type(None))
    if get_origin(tp) is Literal:
        return None
    if get_origin(tp) is list:
        return "array"
    if get_origin(tp) is dict:
        return "table of strings" if get_args(tp)[1] is str else "table of tables"
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return "table"
    return {int: "integer", float: "number", str: "string"}[tp]


def literal_values(field: FieldInfo) -> set[str] | None:
    for tp in [field.annotation, *get_args(field.annotation)]:
        if get_origin(tp) is Literal:
            return set(get_args(tp))
    return None


def backticked(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def test_the_doc_documents_every_table_of_the_schema() -> None:
    documented = {path: model_at(path) for path in doc_tables()}

    assert len(set(documented.values())) == len(documented), "a table documented twice"
    assert set(documented.values()) == reachable_models()


@pytest.mark.parametrize("path", sorted(doc_tables()))
def test_the_doc_table_matches_the_model(path: str) -> None:
    model = model_at(path)
    rows = {backticked(cells[0])[0]: cells for cells in doc_tables()[path]}

    assert {k for k in rows if not k.startswith("<")} == set(model.model_fields)
    open_keys = [k for k in rows if k.startswith("<")]
    assert bool(open_keys) == (model.model_config.get("extra") == "allow"), open_keys
    for name, field in model.model_fields.items():
        _, kind, default, description = rows[name]
        where = f"{path}.{name}"
        assert description, where
        check_default(where, field, default)
        check_type(where, field, kind)


def check_default(where: str, field: FieldInfo, cell: str) -> None:
    if field.is_required():
        assert cell == "required", where
    elif field.default is None:
        assert cell == "*not set*", where
    else:
        (value,) = backticked(cell)
        parsed = tomllib.loads(f"v = {value}")["v"]
        if isinstance(field.default, BaseModel):
            adapter: TypeAdapter[Any] = TypeAdapter(type(field.default))
            assert adapter.validate_python(parsed) == field.default, where
        else:
            assert (parsed, type(parsed)) == (field.default, type(field.default)), where


def check_type(where: str, field: FieldInfo, cell: str) -> None:
    word = type_word(field)
    values = literal_values(field)
    if values is not None:
        assert {tomllib.loads(f"v = {v}")["v"] for v in backticked(cell)} == values, where
    else:
        assert word is not None and word in cell, f"{where}: {cell!r} should say {word!r}"
    bounds = {(BOUND_NAMES[name], str(value)) for m in field.metadata
              for name in BOUND_NAMES if (value := getattr(m, name, None)) is not None}
    assert set(BOUND.findall(cell)) == bounds, where
    min_length = [m.min_length for m in field.metadata if hasattr(m, "min_length")]
    assert ("non-empty" in cell) == (min_length == [1]), where
    patterns = [m.pattern for m in field.metadata if getattr(m, "pattern", None)]
    assert [p for p in backticked(cell) if p.startswith("^")] == patterns, where
