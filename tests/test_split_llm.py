"""The `openai` split engine against a real chat-completions server on 127.0.0.1 with scripted answers.

The server speaks the protocol over real HTTP (ThreadingHTTPServer on an ephemeral port) and
records every request, so these tests see exactly what fanren sends: the prompt, the schema, the
feedback after a bad answer, and how it falls back when a server rejects a response format.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import fanren

from fanren.errors import EngineError
from fanren.project import NARRATOR, load_project
from fanren.split.cast import Person
from fanren.split.chat import ChatClient, ChatEndpoint
from fanren.split.command import split_command
from fanren.split.llm import ANSWER_SCHEMA, split_with_llm
from fanren.split.story import CharacterDraft, Story

# Segments: [0] heading 第二章 古井 · [1] 夜里，古井边起了雾。 · [2] 林远提着灯笼走近井口：
#           [3] speech 有人吗？ · [4] 井底传来一个苍老的声音： · [5] speech 是我。
WELL = "第二章 古井\n\n　　夜里，古井边起了雾。\n　　林远提着灯笼走近井口：“有人吗？”\n　　井底传来一个苍老的声音：「是我。」\n"

LIN = {"id": "linyuan", "name": "林远", "description": "a lean fourteen-year-old village boy in a patched grey tunic"}
SHI = {"id": "shibo", "name": "石伯", "description": "an old man with a white beard, unseen in the dark"}


def shot(first: int, last: int, action: str = "Fog rises around the old well", camera: str = "wide shot",
         characters: list[str] | None = None, speakers: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {"first": first, "last": last, "action": action, "camera": camera,
            "characters": characters or [], "speakers": speakers or []}


def answer(*shots: dict[str, Any], characters: list[dict[str, str]] | None = None,
           setting: str = "an old stone well in a misty village at night", continues: bool = False) -> str:
    return json.dumps({"characters": [LIN, SHI] if characters is None else characters,
                       "scenes": [{"continues_previous": continues, "setting": setting, "shots": list(shots)}]},
                      ensure_ascii=False)


GOOD = answer(
    shot(0, 1),
    shot(2, 3, "Lin Yuan holds a lantern over the well", "medium shot", ["linyuan"],
         [{"segment": 3, "who": "linyuan"}]),
    shot(4, 5, "A voice rises from the dark well", "close-up", [], [{"segment": 5, "who": "shibo"}]),
)
DROPPED = answer(shot(0, 1), shot(2, 3, characters=["linyuan"]), shot(5, 5, speakers=[{"segment": 5, "who": "shibo"}]))


# ── a chat-completions server ────────────────────────────────────────────────


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]

    @property
    def format(self) -> str | None:
        kind = self.body.get("response_format", {}).get("type")
        return str(kind) if kind is not None else None

    @property
    def messages(self) -> list[dict[str, str]]:
        return list(self.body["messages"])


Reply = Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]


def completion(content: str, finish_reason: str = "stop") -> tuple[int, dict[str, Any]]:
    return 200, {"id": "chatcmpl-test", "object": "chat.completion", "model": "test-model",
                 "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                              "finish_reason": finish_reason}]}


class ChatServer:
    """POST /v1/chat/completions answered from a script; every request is recorded."""

    def __init__(self) -> None:
        self.script: deque[Reply] = deque()
        self.received: list[Received] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.received.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                if self.path != "/v1/chat/completions":
                    status, payload = 404, {"error": {"message": f"no route {self.path}"}}
                elif server.script:
                    status, payload = server.script.popleft()(body)
                else:
                    status, payload = 500, {"error": {"message": "no scripted answer left"}}
                data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.http.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http.server_address[1]}/v1"

    def answers(self, *contents: str) -> None:
        for content in contents:
            self.script.append(_replying(content))

    def then(self, reply: Reply) -> None:
        self.script.append(reply)


def _replying(content: str) -> Reply:
    return lambda body: completion(content)


@pytest.fixture
def server() -> Iterator[ChatServer]:
    chat = ChatServer()
    chat.thread.start()
    yield chat
    chat.http.shutdown()
    chat.http.server_close()


def endpoint(server: ChatServer, **options: Any) -> ChatEndpoint:
    return ChatEndpoint(base_url=server.url, model="test-model", api_key="test-key", **options)


def split(server: ChatServer, text: str = WELL, people: list[Person] | None = None, **options: Any) -> Story:
    return split_with_llm(text, "古井", "zh", people, endpoint(server, **options),
                          client=ChatClient(endpoint(server, **options), backoff=0))


def feedback(request: Received) -> list[str]:
    assert request.messages[-1]["role"] == "user"
    return request.messages[-1]["content"].splitlines()


# ── tests ────────────────────────────────────────────────────────────────────


def test_a_valid_answer_becomes_a_drama_that_speaks_the_chapter(server: ChatServer, tmp_path: Path) -> None:
    server.answers(GOOD)
    chapter = tmp_path / "well.txt"
    chapter.write_text(WELL, encoding="utf-8")
    result = CliRunner(env={"FANREN_TEST_KEY": "secret"}).invoke(split_command, [
        str(chapter), "-o", str(tmp_path / "drama"), "--engine", "openai", "--base-url", server.url,
        "--model", "test-model", "--api-key-env", "FANREN_TEST_KEY"])
    assert result.exit_code == 0, result.output
    project = load_project(tmp_path / "drama")
    assert {cid: (c.name, c.description) for cid, c in project.characters.items()} == {
        "linyuan": ("林远", LIN["description"]), "shibo": ("石伯", SHI["description"])}
    assert [scene.setting for scene in project.scenes] == ["an old stone well in a misty village at night"]
    got = [(s.action, s.camera, s.characters, s.narration, [(line.who, line.text) for line in s.lines])
           for _, s in project.shots()]
    assert got == [
        ("Fog rises around the old well", "wide shot", [], "第二章 古井夜里，古井边起了雾。", []),
        ("Lin Yuan holds a lantern over the well", "medium shot", ["linyuan"], "林远提着灯笼走近井口：",
         [("linyuan", "有人吗？")]),
        ("A voice rises from the dark well", "close-up", ["shibo"], "井底传来一个苍老的声音：", [("shibo", "是我。")]),
    ]
    [request] = server.received
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer secret"
    assert request.body["model"] == "test-model" and request.body["temperature"] == 0
    assert request.body["response_format"] == {"type": "json_schema", "json_schema": {
        "name": "storyboard", "strict": True, "schema": ANSWER_SCHEMA}}
    assert [m["role"] for m in request.messages] == ["system", "user"]
    prompt = request.messages[1]["content"].splitlines()
    assert prompt[:2] == ["Known characters (use these ids):", "(none yet)"]
    assert prompt[prompt.index("Segments 0 to 5:") + 1:] == [
        "[0] chapter heading: 第二章 古井", "", "[1] 夜里，古井边起了雾。", "",
        "[2] 林远提着灯笼走近井口：", "[3] speech: 有人吗？", "", "[4] 井底传来一个苍老的声音：", "[5] speech: 是我。"]


def test_invalid_json_is_sent_back_and_retried(server: ChatServer) -> None:
    server.answers("Sure! Here is the storyboard: {scenes: ...", GOOD)
    story = split(server)
    assert len(story.shots()) == 3
    _, second = server.received
    assert [m["role"] for m in second.messages] == ["system", "user", "assistant", "user"]
    assert second.messages[2]["content"] == "Sure! Here is the storyboard: {scenes: ..."
    assert feedback(second) == [
        "Your answer cannot be used:",
        "- the answer is not valid JSON (Expecting value at line 1, column 1)",
        "Answer again with the complete corrected JSON for segments 0 to 5.",
    ]


def test_schema_violations_are_listed_with_their_key_paths(server: ChatServer) -> None:
    broken = json.loads(GOOD)
    del broken["scenes"][0]["shots"][1]["action"]
    broken["scenes"][0]["shots"][2]["first"] = "four"
    broken["scenes"][0]["mood"] = "eerie"
    server.answers(json.dumps(broken), GOOD)
    split(server)
    assert feedback(server.received[1])[1:-1] == [
        "- scenes[0].shots[1].action: field required",
        "- scenes[0].shots[2].first: input should be a valid integer, unable to parse string as an integer",
        "- scenes[0].mood: extra inputs are not permitted",
    ]


def test_the_drama_schema_and_unknown_speakers_are_checked_too(server: ChatServer) -> None:
    empty_action = answer(shot(0, 1, action=" "), shot(2, 3, speakers=[{"segment": 3, "who": "wangwu"}]),
                          shot(4, 5))
    server.answers(empty_action, answer(shot(0, 1, action=""), shot(2, 3), shot(4, 5)), GOOD)
    split(server)
    assert feedback(server.received[1])[1:-1] == [
        "- scenes[0].shots[1].speakers[0].who: 'wangwu' is not a known character id"]
    # only once the references hold is the answer checked as drama.toml: an empty prompt is caught there
    assert feedback(server.received[2])[1:-1] == [
        "- scenes[0].shots[0].action: expected a non-empty string, got ''"]


def test_a_dropped_sentence_is_named_and_the_retry_keeps_every_sentence(server: ChatServer) -> None:
    server.answers(DROPPED, GOOD)
    story = split(server)
    assert feedback(server.received[1])[1:-1] == ["- segment 4 is in no shot: [4] '井底传来一个苍老的声音：'"]
    assert "".join(shot.text for shot in story.shots()) == (
        "第二章 古井夜里，古井边起了雾。林远提着灯笼走近井口：有人吗？井底传来一个苍老的声音：是我。")


def test_overlaps_and_overruns_are_named(server: ChatServer) -> None:
    server.answers(answer(shot(0, 2), shot(2, 4), shot(5, 7)), GOOD)
    split(server)
    assert feedback(server.received[1])[1:-1] == [
        "- scenes[0].shots[1]: starts at segment 2, which is already in an earlier shot (it should start at 3)",
        "- scenes[0].shots[2]: ends at segment 7, past the last segment 5",
    ]


def test_a_model_that_keeps_dropping_text_fails_the_command_clearly(server: ChatServer, tmp_path: Path) -> None:
    server.answers(DROPPED, DROPPED, DROPPED)
    chapter = tmp_path / "well.txt"
    chapter.write_text(WELL, encoding="utf-8")
    result = CliRunner().invoke(split_command, [str(chapter), "-o", str(tmp_path / "drama"), "--engine", "openai",
                                                "--base-url", server.url, "--model", "test-model"])
    assert result.exit_code == 1
    assert result.output == (
        f"error: the model 'test-model' at {server.url}/chat/completions gave no usable answer for segments "
        "0 to 5 in 3 attempts; the last one had:\n"
        "  segment 4 is in no shot: [4] '井底传来一个苍老的声音：'\n"
        "try a stronger model, or the offline engine (--engine rules)\n")
    assert len(server.received) == 3
    assert not (tmp_path / "drama" / "drama.toml").exists()
    assert "authorization" not in server.received[0].headers  # no key in the environment: none sent


def test_long_chapters_go_in_chunks_with_one_registry(server: ChatServer) -> None:
    text = ('The well stood at the end of the lane. Mara set her lantern on the stone rim.\n'
            '"Is anyone down there?" Mara called.\n\n'
            'A voice answered from the dark. "Only me, child."\n')
    mara = {"id": "mara", "name": "Mara", "description": "a girl of seventeen in a soot-stained apron"}
    server.answers(answer(shot(0, 1, "Mara sets a lantern on the rim of a well", characters=["mara"]),
                          shot(2, 3, "Mara calls down into the well", speakers=[{"segment": 2, "who": "mara"}]),
                          characters=[mara], setting="a lane ending at an old stone well, dusk"))

    def second(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        prompt = body["messages"][1]["content"]
        assert "- mara: Mara — a girl of seventeen in a soot-stained apron" in prompt
        assert "The previous part ended in the scene with setting: 'a lane ending at an old stone well, dusk'." in prompt
        assert "Segments 4 to 5:" in prompt
        # the model invents a second id for the same person: it is folded into the known one
        return completion(answer(shot(4, 5, "A voice rises from the well", characters=["mara-lin"]),
                                 characters=[{"id": "mara-lin", "name": "Mara", "description": "a girl"}],
                                 setting="ignored: this scene continues", continues=True))

    server.then(second)
    story = split_with_llm(text, "The Well", "en", [Person("mara", "Mara")], endpoint(server, chunk_chars=90))
    assert len(server.received) == 2
    assert "- mara: Mara — (no description yet: give one)" in server.received[0].messages[1]["content"]
    assert [c.id for c in story.characters] == ["mara"]
    assert story.characters[0].description == "a girl of seventeen in a soot-stained apron"
    assert [(scene.setting, len(scene.shots)) for scene in story.scenes] == [
        ("a lane ending at an old stone well, dusk", 3)]
    assert [shot.characters for shot in story.shots()] == [("mara",), ("mara",), ("mara",)]
    assert [[(p.who, p.text) for p in shot.parts] for shot in story.shots()][1:] == [
        [("mara", "Is anyone down there?"), (NARRATOR, "Mara called.")],
        [(NARRATOR, "A voice answered from the dark."), (NARRATOR, "Only me, child.")]]


def test_continuing_a_scene_at_the_start_of_the_chapter_is_refused(server: ChatServer) -> None:
    server.answers(answer(shot(0, 5), continues=True), GOOD)
    split(server)
    assert feedback(server.received[1])[1:-1] == [
        "- scenes[0].continues_previous: this is the start of the chapter; there is no previous scene to continue"]


def test_a_server_without_json_schema_is_asked_for_json_object_then_plain(server: ChatServer) -> None:
    def rejects(*formats: str | None) -> Reply:
        def reply(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            kind = body.get("response_format", {}).get("type")
            if kind in formats:
                return 400, {"error": {"message": f"response_format type {kind} is not supported"}}
            return completion(GOOD)
        return reply

    client = ChatClient(endpoint(server))
    server.then(rejects("json_schema"))
    server.then(rejects("json_schema"))
    server.then(rejects("json_schema"))
    for _ in range(2):
        client.complete([{"role": "user", "content": "hi"}], ANSWER_SCHEMA, "storyboard")
    assert [r.format for r in server.received] == ["json_schema", "json_object", "json_object"]

    server.received.clear()
    plain = ChatClient(endpoint(server))
    server.then(rejects("json_schema", "json_object"))
    server.then(rejects("json_schema", "json_object"))
    server.then(rejects("json_schema", "json_object"))
    assert plain.complete([{"role": "user", "content": "hi"}], ANSWER_SCHEMA, "storyboard").content == GOOD
    assert [r.format for r in server.received] == ["json_schema", "json_object", None]


def test_fenced_json_is_accepted_and_a_cut_off_answer_is_explained(server: ChatServer) -> None:
    server.then(lambda body: completion(GOOD[:40], finish_reason="length"))
    server.answers(f"```json\n{GOOD}\n```")
    story = split(server)
    assert len(story.shots()) == 3
    assert "- the answer was cut off at your output limit: use fewer words in the prompts" in feedback(server.received[1])


def test_transient_errors_are_retried_and_others_explained(server: ChatServer) -> None:
    server.then(lambda body: (503, {"error": {"message": "overloaded"}}))
    server.answers(GOOD)
    assert len(split(server).shots()) == 3
    assert len(server.received) == 2

    server.then(lambda body: (401, {"error": {"message": "invalid api key"}}))
    keyless = ChatEndpoint(base_url=server.url, model="m", api_key=None, api_key_env="MY_KEY")
    with pytest.raises(EngineError) as refused:
        ChatClient(keyless).complete([], ANSWER_SCHEMA, "storyboard")
    assert str(refused.value) == (f"the server at {server.url}/chat/completions refused the request "
                                  "(HTTP 401: invalid api key); $MY_KEY is not set")

    wrong_path = ChatEndpoint(base_url=server.url.removesuffix("/v1"), model="m")
    with pytest.raises(EngineError) as missing:
        ChatClient(wrong_path).complete([], ANSWER_SCHEMA, "storyboard")
    assert str(missing.value).startswith(f"{wrong_path.url} answered HTTP 404 (no route /chat/completions): "
                                         "check --base-url (most servers want it to end in /v1)")

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    closed = ChatEndpoint(base_url=f"http://127.0.0.1:{port}/v1", model="m")
    with pytest.raises(EngineError) as unreachable:
        ChatClient(closed).complete([], ANSWER_SCHEMA, "storyboard")
    assert str(unreachable.value) == (f"could not reach http://127.0.0.1:{port}/v1/chat/completions: "
                                      "[Errno 111] Connection refused (is the server running? check --base-url)")


# ── secrets and deadlines ───────────────────────────────────────────────────

KEY = "sk-split-0123456789abcdefSECRET"


def echoing_the_key(server: ChatServer, status: int) -> Reply:
    """An answer that repeats the Authorization header the request came with, as some servers do."""
    def reply(body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        sent = server.received[-1].headers.get("authorization", "")
        if status == 200:  # a 200 that is not a chat completion: quoted in the error
            return 200, {"detail": f"proxy saw {sent}"}
        return status, {"error": {"message": f"Incorrect API key provided: {sent}"}}
    return reply


@pytest.mark.parametrize("status", [401, 500, 200])
def test_a_server_echoing_the_key_never_gets_it_printed(server: ChatServer, tmp_path: Path, status: int) -> None:
    for _ in range(3):  # a 500 is asked three times
        server.then(echoing_the_key(server, status))
    chapter = tmp_path / "well.txt"
    chapter.write_text(WELL, encoding="utf-8")
    result = fanren("split", chapter, "-o", tmp_path / "drama", "--engine", "openai", "--base-url", server.url,
                    "--model", "test-model", "--api-key-env", "FANREN_TEST_KEY", env={"FANREN_TEST_KEY": KEY})
    assert result.code == 1
    assert server.received[0].headers["authorization"] == f"Bearer {KEY}"  # the key was sent …
    assert KEY not in result.stdout + result.stderr  # … and never shown
    assert "***" in result.stderr
    assert result.stderr.startswith(f"error: the server at {server.url}/chat/completions ")


def test_the_key_is_in_no_log_either(server: ChatServer, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, httpx's and httpcore's included
    server.then(echoing_the_key(server, 401))
    chapter = tmp_path / "well.txt"
    chapter.write_text(WELL, encoding="utf-8")
    result = CliRunner(env={"FANREN_TEST_KEY": KEY}).invoke(split_command, [
        str(chapter), "-o", str(tmp_path / "drama"), "--engine", "openai", "--base-url", server.url,
        "--api-key-env", "FANREN_TEST_KEY"])
    assert result.exit_code == 1
    assert "Incorrect API key provided: ***" in result.output
    assert caplog.records  # httpx did log the exchange
    assert KEY not in result.output + caplog.text


class TricklingServer:
    """Sends a whole chat completion, status line first, two bytes every half second."""

    def __init__(self) -> None:
        stopping = self.stopping = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                data = json.dumps(completion(GOOD)[1]).encode("utf-8")
                reply = b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(data), data)
                for start in range(0, len(reply), 2):
                    try:
                        self.wfile.write(reply[start:start + 2])
                        self.wfile.flush()
                    except OSError:
                        return
                    if stopping.wait(0.5):
                        return

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}/v1"
        threading.Thread(target=self.http.serve_forever, args=(0.02,), daemon=True).start()


@pytest.mark.timeout(60)
def test_a_trickling_server_is_cut_off_at_the_timeout(tmp_path: Path) -> None:
    trickling = TricklingServer()
    chapter = tmp_path / "well.txt"
    chapter.write_text(WELL, encoding="utf-8")
    try:
        result = CliRunner().invoke(split_command, [
            str(chapter), "-o", str(tmp_path / "drama"), "--engine", "openai", "--base-url", trickling.url,
            "--timeout", "1.5"])
    finally:
        trickling.stopping.set()
        trickling.http.shutdown()
        trickling.http.server_close()
    assert result.exit_code == 1
    assert result.output == (f"error: the server at {trickling.url}/chat/completions sent no complete answer "
                             "within 1.5 s (a slow model may need a longer --timeout)\n")


def test_timeout_must_be_positive(tmp_path: Path) -> None:
    chapter = tmp_path / "well.txt"
    chapter.write_text(WELL, encoding="utf-8")
    result = CliRunner().invoke(split_command, [str(chapter), "--engine", "openai", "--timeout", "0"])
    assert result.exit_code == 2
    assert "Invalid value for '--timeout': 0.0 is not in the range x>0." in result.output


def test_the_registry_folds_a_known_alias_into_its_character() -> None:
    from fanren.split.llm import AnswerCharacter, Registry, registry_of

    known = registry_of([Person("hanli", "韩立", ("韩师弟",))])
    after, refer = known.merged([
        AnswerCharacter(id="erlengzi", name="二愣子", description="a boy", aliases=[]),
        AnswerCharacter(id="hanli", name="韩立", description="a thin boy", aliases=["二愣子", "韩师弟", "韩跑跑"]),
        AnswerCharacter(id="han", name="韩师弟", description="", aliases=[]),
    ])
    # 二愣子 came first as a character of its own, so it stays one: an alias never takes a known name
    assert after == Registry({
        "hanli": CharacterDraft("hanli", "韩立", "a thin boy", ("韩师弟", "韩跑跑")),
        "erlengzi": CharacterDraft("erlengzi", "二愣子", "a boy"),
    })
    assert (refer["han"], refer["韩跑跑"], refer["二愣子"]) == ("hanli", "hanli", "erlengzi")
