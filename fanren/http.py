"""fanren's one HTTP client: every engine that talks to a server (CosyVoice, OpenAI-compatible speech,
OpenAI-compatible chat for `fanren split`, ComfyUI) sends its requests through `post()` and `get()` here.

httpx speaks the protocol; it rejects a body shorter than its Content-Length or a chunked stream cut
before its last chunk. This module adds what fanren needs on top of it, in one place:

- A deadline for the whole exchange. httpx's timeouts bound each connect, write and read, so a
  server that trickles two bytes a second never trips them; `post()` also ends the exchange when
  `timeout` seconds have passed since it began, whatever the server is doing.
- Failures as two exceptions, so no engine decides anything about sockets: `TransientError`
  (another attempt may succeed: refused or broken connections, timeouts, 408, 429, 5xx) and
  `PermanentError` (asking again cannot help: other statuses, malformed URLs). Both carry the HTTP
  status and the server's answer, masked.
- `with_retries`: runs an attempt until it succeeds, waiting backoff, 2·backoff, … or what the
  server's Retry-After asks, never more than MAX_BACKOFF. (httpx's own transport retries cover
  failed connects only, so they are not used.)
- Secrets never leave: `mask()` replaces a request's credentials in any text. Every message and
  error body that `post()` produces has been through it, and engines use it for the messages they
  compose around those.

httpx is imported when the first request is sent, so commands that send none (`fanren status`, a
no-op build) never load it.
"""

from __future__ import annotations

import email.utils
import ipaddress
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Self, TypeVar

if TYPE_CHECKING:
    import httpx

T = TypeVar("T")

MAX_BACKOFF = 30.0   # seconds: the longest wait between two attempts, whatever Retry-After asks
DETAIL_CHARS = 300   # how much of a server's error body goes into a message
MASK = "***"
# Request headers whose values are credentials (OpenAI and vLLM use Authorization, Azure api-key,
# Anthropic-style servers x-api-key).
SECRET_HEADERS = frozenset({"authorization", "proxy-authorization", "api-key", "x-api-key"})
MIN_SECRET_CHARS = 4  # masking shorter values would garble ordinary words and prove nothing
TRANSIENT_STATUSES = frozenset({408, 429, 500, 502, 503, 504})

# What went wrong, for callers that treat failures differently (the chat client does not retry a
# refused connection; the speech engines do, a server may still be starting).
Kind = Literal["unreachable", "timeout", "broken", "status", "reply"]


class HTTPFailure(Exception):
    """A request that gave no usable reply. The message never holds a secret of the request."""

    def __init__(self, message: str, *, kind: Kind = "reply", status: int | None = None, body: bytes = b"",
                 detail: str = "", retry_after: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.status = status            # the HTTP status, when the server answered
        self.body = body                # the server's answer, secrets masked
        self.detail = detail or message  # the underlying error in its own words (masked)
        self.retry_after = retry_after  # seconds the server asked us to wait
        self.attempts: int | None = None  # set by with_retries when it gives up

    def __str__(self) -> str:
        if self.attempts is None:
            return self.message
        return f"{self.message} ({self.attempts} attempt{'s' if self.attempts > 1 else ''})"


class TransientError(HTTPFailure):
    """A failure another attempt may not repeat."""


class PermanentError(HTTPFailure):
    """A failure that asking again cannot fix."""


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]  # names in lower case
    body: bytes


# ── secrets ──────────────────────────────────────────────────────────────────


def mask(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret in it replaced by ***."""
    # Longest first: a key that is part of a longer secret ("Bearer sk-…") goes with it.
    for secret in sorted({s for s in secrets if len(s) >= MIN_SECRET_CHARS}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def request_secrets(url: str, headers: Mapping[str, str]) -> list[str]:
    """The credentials a request carries: secret headers (and the token after "Bearer "), a URL password."""
    found: list[str] = []
    for name, value in headers.items():
        if name.lower() in SECRET_HEADERS:
            found.append(value)
            _, _, credential = value.partition(" ")
            found.append(credential.strip())
    password = urllib.parse.urlsplit(url).password
    if password:
        found += [password, urllib.parse.unquote(password)]
    return found


def _mask_bytes(data: bytes, secrets: Iterable[str]) -> bytes:
    for secret in sorted({s for s in secrets if len(s) >= MIN_SECRET_CHARS}, key=len, reverse=True):
        data = data.replace(secret.encode("utf-8"), MASK.encode("ascii"))
    return data


def excerpt(data: bytes, limit: int = DETAIL_CHARS) -> str:
    """The start of a server's answer as one line of text."""
    text = " ".join(data.decode("utf-8", errors="replace").split())
    return text if len(text) <= limit else text[:limit] + "…"


# ── one request ──────────────────────────────────────────────────────────────


def post(url: str, body: bytes, headers: Mapping[str, str], timeout: float,
         secrets: Iterable[str] = ()) -> Reply:
    """POST `body` and read the whole reply within `timeout` seconds of starting.

    Returns a 2xx reply. Anything else raises TransientError or PermanentError with a message fit
    to show a user: it never holds the request's headers, and the request's credentials (and any
    of `secrets`) are masked in it and in the error's body.
    """
    return _exchange("POST", url, body, headers, timeout, secrets)


def get(url: str, headers: Mapping[str, str], timeout: float, secrets: Iterable[str] = ()) -> Reply:
    """GET `url` and read the whole reply within `timeout` seconds of starting; failures as post()'s."""
    return _exchange("GET", url, None, headers, timeout, secrets)


def _exchange(method: str, url: str, body: bytes | None, headers: Mapping[str, str], timeout: float,
              secrets: Iterable[str]) -> Reply:
    import httpx

    hidden = [*request_secrets(url, headers), *secrets]
    deadline = _Deadline(timeout)
    received = 0
    try:
        with deadline, _client(url).stream(method, url, content=body, headers=dict(headers),
                                           timeout=timeout, extensions={"trace": deadline.trace}) as response:
            deadline.answered = True
            chunks: list[bytes] = []
            for chunk in response.iter_bytes():
                chunks.append(chunk)
                received += len(chunk)
                if deadline.expired:
                    break
        if deadline.expired:
            raise deadline.failure(received)
    except httpx.HTTPError as error:
        if deadline.expired:
            raise deadline.failure(received) from None
        raise _transport_failure(error, url, timeout, deadline.answered, received, hidden) from None
    data = b"".join(chunks)
    reply = Reply(response.status_code, {k.lower(): v for k, v in response.headers.items()}, data)
    if 200 <= reply.status < 300:
        return reply
    raise _status_failure(reply, response.reason_phrase, hidden)


def _status_failure(reply: Reply, reason: str, secrets: list[str]) -> HTTPFailure:
    body = _mask_bytes(reply.body, secrets)
    message = mask(f"HTTP {reply.status} {reason}".strip(), secrets)
    if detail := mask(excerpt(body), secrets):
        message += f": {detail}"
    if 300 <= reply.status < 400 and "location" in reply.headers:
        location = mask(reply.headers["location"], secrets)
        message += f" (redirects are not followed: use the URL it points to, {location})"
    kind_of = TransientError if reply.status in TRANSIENT_STATUSES else PermanentError
    return kind_of(message, kind="status", status=reply.status, body=body,
                   retry_after=_retry_after(reply.headers.get("retry-after")))


def _transport_failure(error: httpx.HTTPError, url: str, timeout: float, answered: bool, received: int,
                       secrets: list[str]) -> HTTPFailure:
    import httpx

    detail = mask(str(error) or type(error).__name__, secrets)
    if isinstance(error, httpx.TimeoutException):
        if answered:
            return TransientError(f"the reply stalled for more than {timeout:g} s after {received} bytes",
                                  kind="timeout", detail=detail)
        return TransientError(f"no answer within {timeout:g} s", kind="timeout", detail=detail)
    if isinstance(error, httpx.ConnectError):
        if isinstance(error.__context__, ConnectionRefusedError) or "refused" in detail.lower():
            return TransientError("connection refused (is the server running?)", kind="unreachable",
                                  detail=detail)
        return TransientError(f"could not connect ({detail})", kind="unreachable", detail=detail)
    if isinstance(error, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
        if answered:
            # h11 raises this for a body shorter than its Content-Length or a chunked stream cut
            # before its last chunk: a truncated reply is never taken for a whole one.
            return TransientError(f"the reply broke off after {received} bytes ({detail})", kind="broken",
                                  detail=detail)
        return TransientError(f"the server closed the connection without answering ({detail})",
                              kind="broken", detail=detail)
    if isinstance(error, httpx.TransportError):
        return TransientError(detail, kind="broken", detail=detail)
    # An InvalidURL, UnsupportedProtocol or a decoding error: the same request fails the same way.
    return PermanentError(mask(f"{detail} ({url})", secrets), kind="reply", detail=detail)


class _Deadline:
    """Ends an exchange that runs past `seconds` by shutting its socket down.

    httpx's timeouts bound each read, so a server that keeps sending a byte now and then never
    trips them. The socket comes from httpx's trace extension as the connection opens (keep-alive
    is off, so every request opens one); a timer shuts it down at the deadline, which ends any read
    or write blocked on it, and `post()` turns what follows into one message.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self.answered = False  # the status line and headers have arrived
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> Self:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

    def trace(self, event: str, info: dict[str, Any]) -> None:
        if event not in ("connection.connect_tcp.complete", "connection.start_tls.complete"):
            return
        stream = info.get("return_value")
        sock = stream.get_extra_info("socket") if stream is not None else None
        with self._lock:
            self._socket = sock
            expired = self.expired
        if expired and sock is not None:
            _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            sock = self._socket
        if sock is not None:
            _shut(sock)

    def failure(self, received: int) -> TransientError:
        if self.answered:
            return TransientError(f"the reply took longer than {self.seconds:g} s ({received} bytes so far)",
                                  kind="timeout")
        return TransientError(f"no answer within {self.seconds:g} s", kind="timeout")


def _shut(sock: socket.socket) -> None:
    try:
        # socket.socket's own method: an SSLSocket's shutdown() would also drop its TLS state
        # under the thread that is reading from it.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # already closed: the exchange ended on its own


_clients: dict[bool, httpx.Client] = {}
_clients_lock = threading.Lock()


def _client(url: str) -> httpx.Client:
    """One client for servers on this machine, one for the rest; shared by all threads."""
    import httpx

    # A server on this machine must not go through http_proxy: proxies set for package
    # registries would otherwise swallow requests to 127.0.0.1 unless no_proxy lists it.
    local = _is_loopback(urllib.parse.urlsplit(url).hostname or "")
    with _clients_lock:
        if local not in _clients:
            _clients[local] = httpx.Client(
                trust_env=not local, follow_redirects=False,
                # No keep-alive: each request opens its own connection, so the deadline always
                # holds the socket it may have to shut, and no stale connection fails a request.
                limits=httpx.Limits(max_keepalive_connections=0))
        return _clients[local]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds: a number, or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


# ── attempts ─────────────────────────────────────────────────────────────────


def with_retries(attempt: Callable[[], T], retries: int, backoff: float,
                 sleep: Callable[[float], None] = time.sleep,
                 retry_if: Callable[[TransientError], bool] = lambda error: True) -> T:
    """Run `attempt` until it succeeds; after a TransientError wait and try again.

    The wait is what the server's Retry-After asks, else backoff, 2·backoff, …; never more than
    MAX_BACKOFF. After `retries` retries, or a TransientError that `retry_if` declines, that error
    is raised with its number of attempts. PermanentError is raised at once.
    """
    for n in range(retries + 1):
        try:
            return attempt()
        except TransientError as error:
            if n == retries or not retry_if(error):
                error.attempts = n + 1
                raise
            wait = error.retry_after if error.retry_after is not None else backoff * 2 ** n
            sleep(min(wait, MAX_BACKOFF))
    raise AssertionError("unreachable")
