"""fanren.http against real HTTP servers on 127.0.0.1: deadlines, truncated bodies, retries, secrets."""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from speech_servers import trickle_reply

from fanren.http import (
    MAX_BACKOFF,
    PermanentError,
    TransientError,
    get,
    mask,
    post,
    request_secrets,
    with_retries,
)

KEY = "sk-test-echoed-0123456789SECRET"

Answer = Callable[[BaseHTTPRequestHandler], None]


class Server:
    """Answers each POST with the next scripted answer; records the headers of every request."""

    def __init__(self) -> None:
        self.script: deque[Answer] = deque()
        self.headers: list[dict[str, str]] = []
        self.stopping = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                server.headers.append({k.lower(): v for k, v in self.headers.items()})
                server.script.popleft()(self)

            def do_GET(self) -> None:
                server.headers.append({k.lower(): v for k, v in self.headers.items()})
                server.script.popleft()(self)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.http.daemon_threads = True
        self.thread = threading.Thread(target=self.http.serve_forever, args=(0.02,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.http.server_address[1]}/speak"


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server()
    s.thread.start()
    yield s
    s.stopping.set()
    s.http.shutdown()
    s.http.server_close()


def answer(status: int, body: bytes, headers: dict[str, str] | None = None,
           declared: int | None = None) -> Answer:
    """A reply with `body`; `declared` sends another Content-Length (a longer one cuts the body short)."""
    def send(request: BaseHTTPRequestHandler) -> None:
        request.send_response(status)
        for name, value in (headers or {}).items():
            request.send_header(name, value)
        request.send_header("Content-Length", str(len(body) if declared is None else declared))
        request.end_headers()
        request.wfile.write(body)
        if declared is not None:
            request.close_connection = True
    return send


def echo_authorization(status: int) -> Answer:
    """An error whose body repeats the Authorization header it got, as some servers do."""
    def send(request: BaseHTTPRequestHandler) -> None:
        sent = request.headers.get("Authorization", "")
        body = json.dumps({"error": {"message": f"rejected credentials: {sent}"}}).encode()
        answer(status, body, {"Content-Type": "application/json"})(request)
    return send


def trickle(server: Server) -> Answer:
    """A whole reply, status line first, two bytes every half second, until the client leaves."""
    def send(request: BaseHTTPRequestHandler) -> None:
        trickle_reply(request, b"\0" * 64, "application/octet-stream", server.stopping, 0.5)
    return send


# ── one request ──────────────────────────────────────────────────────────────


def test_a_2xx_reply_comes_back_whole_with_lower_case_headers(server: Server) -> None:
    server.script.append(answer(200, b"\x01\x02" * 5000, {"Content-Type": "audio/L16", "X-Rate": "24000"}))
    reply = post(server.url, b"{}", {"Content-Type": "application/json"}, 5)
    assert (reply.status, reply.body) == (200, b"\x01\x02" * 5000)
    assert reply.headers["content-type"] == "audio/L16" and reply.headers["x-rate"] == "24000"


@pytest.mark.timeout(20)
def test_get_has_the_same_deadline_and_failures(server: Server) -> None:
    server.script.append(answer(200, b'{"ok": true}', {"Content-Type": "application/json"}))
    assert get(server.url, {}, 5).body == b'{"ok": true}'
    server.script.append(answer(404, b"404: Not Found"))
    with pytest.raises(PermanentError) as missing:
        get(server.url, {}, 5)
    assert (str(missing.value), missing.value.status) == ("HTTP 404 Not Found: 404: Not Found", 404)
    server.script.append(trickle(server))
    with pytest.raises(TransientError) as slow:
        get(server.url, {}, 1.5)
    assert str(slow.value) == "no answer within 1.5 s"


@pytest.mark.timeout(20)
def test_a_trickling_server_is_cut_off_at_the_deadline(server: Server) -> None:
    # ~140 bytes at 4 bytes/s would take 35 s; each read arrives well within the timeout.
    server.script.append(trickle(server))
    with pytest.raises(TransientError) as error:
        post(server.url, b"{}", {}, 1.5)
    assert str(error.value) == "no answer within 1.5 s"
    assert error.value.kind == "timeout"


def test_a_body_shorter_than_its_content_length_is_refused(server: Server) -> None:
    server.script.append(answer(200, b"\x00\x01" * 100, declared=1000))
    with pytest.raises(TransientError) as error:
        post(server.url, b"{}", {}, 5)
    assert str(error.value).startswith("the reply broke off after 200 bytes (")
    assert error.value.kind == "broken"


def test_statuses_split_into_transient_and_permanent(server: Server) -> None:
    server.script.extend([answer(503, b"overloaded", {"Retry-After": "7"}), answer(404, b"no such route")])
    with pytest.raises(TransientError) as busy:
        post(server.url, b"{}", {}, 5)
    assert (str(busy.value), busy.value.status, busy.value.retry_after) == (
        "HTTP 503 Service Unavailable: overloaded", 503, 7.0)
    with pytest.raises(PermanentError) as missing:
        post(server.url, b"{}", {}, 5)
    assert (str(missing.value), missing.value.status, missing.value.body) == (
        "HTTP 404 Not Found: no such route", 404, b"no such route")


# ── secrets ──────────────────────────────────────────────────────────────────


@pytest.mark.parametrize("status", [401, 500])
def test_a_server_echoing_the_key_never_gets_it_into_a_message_or_body(server: Server, status: int) -> None:
    server.script.append(echo_authorization(status))
    with pytest.raises((PermanentError, TransientError)) as error:
        post(server.url, b"{}", {"Authorization": f"Bearer {KEY}"}, 5)
    assert server.headers[0]["authorization"] == f"Bearer {KEY}"  # it was sent
    assert str(error.value) == f"HTTP {status} {'Unauthorized' if status == 401 else 'Internal Server Error'}: " \
                               '{"error": {"message": "rejected credentials: ***"}}'
    assert KEY.encode() not in error.value.body and KEY not in error.value.detail


def test_mask_covers_headers_tokens_and_url_passwords() -> None:
    secrets = request_secrets("https://user:p%40ss-word@example.org/v1",
                              {"Authorization": f"Bearer {KEY}", "api-key": "azure-key-42", "Accept": "audio/wav"})
    text = f"Bearer {KEY} / {KEY} / azure-key-42 / p@ss-word / p%40ss-word / audio/wav"
    assert mask(text, secrets) == "*** / *** / *** / *** / *** / audio/wav"
    assert mask("a key of abc", ["abc"]) == "a key of abc"  # too short to mean anything


# ── attempts ─────────────────────────────────────────────────────────────────


def test_retries_wait_what_retry_after_asks_then_back_off_capped() -> None:
    waits: list[float] = []
    failures = deque([TransientError("busy", retry_after=2.5), TransientError("down"), TransientError("down"),
                      TransientError("busy", retry_after=3600)])

    def attempt() -> str:
        if failures:
            raise failures.popleft()
        return "spoken"

    assert with_retries(attempt, retries=4, backoff=0.5, sleep=waits.append) == "spoken"
    assert waits == [2.5, 1.0, 2.0, MAX_BACKOFF]


def test_the_last_failure_says_how_many_attempts_and_permanent_ones_stop_at_once() -> None:
    calls: list[int] = []

    def refused() -> None:
        calls.append(1)
        raise TransientError("connection refused (is the server running?)", kind="unreachable")

    with pytest.raises(TransientError) as error:
        with_retries(refused, retries=2, backoff=0, sleep=lambda s: None)
    assert str(error.value) == "connection refused (is the server running?) (3 attempts)"
    with pytest.raises(TransientError):
        with_retries(refused, retries=2, backoff=0, sleep=lambda s: None,
                     retry_if=lambda e: e.kind != "unreachable")
    assert len(calls) == 4

    def forbidden() -> None:
        calls.append(1)
        raise PermanentError("HTTP 403 Forbidden", status=403)

    with pytest.raises(PermanentError):
        with_retries(forbidden, retries=5, backoff=0, sleep=lambda s: None)
    assert len(calls) == 5
