"""What the speech-server clients share: one POST with a whole-request deadline, multipart forms,
retries, and the checks on the audio a server sends back.

Standard library only (urllib): a speech client needs nothing more, and fanren's core stays light.
Failures come out as one of two exceptions so an engine decides nothing about sockets:
`TransientError` (worth another attempt: refused connection, timeout, 5xx, a stream cut off, audio
that fails the engine's checks) and `PermanentError` (asking again cannot help: 4xx, a reply of the
wrong kind). `with_retries` runs an attempt until it succeeds or the retries are spent.
"""

from __future__ import annotations

import difflib
import hashlib
import http.client
import ipaddress
import time
import urllib.error
import urllib.parse
import urllib.request
import wave
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

MAX_BACKOFF = 30.0      # seconds: the longest wait between two attempts
READ_CHUNK = 1 << 16
DETAIL_CHARS = 300      # how much of a server's error body goes into a message
# A reply shorter than this per spoken character is a cut stream, not speech: the fastest voices
# at speed 4 still take ~0.03 s per Latin letter and ~0.05 s per CJK character.
MIN_SECONDS_PER_CHARACTER = 0.015


@dataclass(frozen=True)
class RetryPolicy:
    """How long one attempt may take and how often to try: profile options that change no bytes.

    Bad options raise ValueError: the compiler reports it at profiles.<name>.voice in drama.toml.
    """

    timeout: float
    retries: int
    backoff: float  # seconds before the first retry; doubled for each one after

    KEYS = ("timeout", "retries", "backoff")

    @classmethod
    def from_options(cls, options: Mapping[str, object], timeout: float) -> RetryPolicy:
        def number(key: str, default: float) -> float:
            value = options.get(key, default)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"option {key} must be a number >= 0, not {value!r}")
            return float(value)

        retries = number("retries", 3)
        if retries != int(retries):
            raise ValueError(f"option retries must be a whole number, not {retries:g}")
        seconds = number("timeout", timeout)
        if seconds == 0:
            raise ValueError("option timeout must be more than 0 seconds")
        return cls(timeout=seconds, retries=int(retries), backoff=number("backoff", 1.0))


def check_url(url: object, option: str) -> str:
    """`url` without a trailing slash, or ValueError if it is not an http(s) URL."""
    parts = urllib.parse.urlsplit(str(url))
    if not isinstance(url, str) or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"option {option} must be an http:// or https:// URL, not {url!r}")
    return url.rstrip("/")


def check_option_names(options: Mapping[str, object], known: frozenset[str]) -> None:
    """ValueError naming the first unknown option, with the closest known one."""
    for name in sorted(set(options) - known):
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(sorted(known))}"
        raise ValueError(f"unknown option {name!r} ({hint})")


class TransientError(Exception):
    """A failure another attempt may not repeat."""


class PermanentError(Exception):
    """A failure that asking again cannot fix."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]  # names in lower case
    body: bytes


@dataclass(frozen=True)
class FilePart:
    filename: str
    content: bytes
    content_type: str = "application/octet-stream"


def encode_multipart(fields: Mapping[str, str], files: Mapping[str, FilePart]) -> tuple[bytes, str]:
    """A multipart/form-data body and its Content-Type header.

    The boundary is derived from the content, so the same form always gives the same bytes.
    """
    parts: list[tuple[bytes, bytes]] = []
    for name, value in fields.items():
        head = f'Content-Disposition: form-data; name="{_quote(name)}"\r\n'
        parts.append((head.encode("utf-8"), value.encode("utf-8")))
    for name, part in files.items():
        head = (f'Content-Disposition: form-data; name="{_quote(name)}"; '
                f'filename="{_quote(part.filename)}"\r\n'
                f"Content-Type: {part.content_type}\r\n")
        parts.append((head.encode("utf-8"), part.content))
    digest = hashlib.sha256(b"\0".join(h + c for h, c in parts)).hexdigest()[:32]
    boundary = f"fanren-{digest}".encode("ascii")
    while any(boundary in h or boundary in c for h, c in parts):
        boundary += b"x"
    body = b"".join(b"--" + boundary + b"\r\n" + head + b"\r\n" + content + b"\r\n"
                    for head, content in parts)
    body += b"--" + boundary + b"--\r\n"
    return body, f"multipart/form-data; boundary={boundary.decode('ascii')}"


def _quote(name: str) -> str:
    # Browsers percent-encode these three in a form-data name or filename; so does python-multipart.
    return name.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


def post(url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> Reply:
    """POST `body` and read the whole reply within `timeout` seconds.

    A 2xx reply is returned; anything else raises TransientError or PermanentError with a message
    that can be shown to a user (it never contains the request headers).
    """
    deadline = time.monotonic() + timeout
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with _opener(url).open(request, timeout=timeout) as response:
            data = _read_until(response, deadline, timeout)
            return Reply(response.status, {k.lower(): v for k, v in response.headers.items()}, data)
    except urllib.error.HTTPError as error:
        raise _status_error(error) from None
    except urllib.error.URLError as error:
        raise _connection_error(error.reason, timeout) from None
    except (OSError, http.client.HTTPException) as error:
        raise _connection_error(error, timeout) from None


def _read_until(response: http.client.HTTPResponse, deadline: float, timeout: float) -> bytes:
    """The whole body, or TransientError if it is cut off or takes longer than the deadline.

    The socket timeout only bounds each read; a server that trickles bytes needs the deadline.
    """
    chunks: list[bytes] = []
    received = 0
    while True:
        try:
            chunk = response.read(READ_CHUNK)
        except http.client.IncompleteRead as error:
            raise TransientError(f"the reply broke off after {received + len(error.partial)} bytes") from None
        except TimeoutError:
            raise TransientError(f"the reply stalled for more than {timeout:g} s "
                                 f"after {received} bytes") from None
        except OSError as error:
            raise TransientError(f"the reply broke off after {received} bytes ({_reason(error)})") from None
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        received += len(chunk)
        if time.monotonic() > deadline:
            raise TransientError(f"the reply took longer than {timeout:g} s ({received} bytes so far)")


def _status_error(error: urllib.error.HTTPError) -> Exception:
    try:
        detail = error.read(DETAIL_CHARS * 4).decode("utf-8", errors="replace").strip()
    except (OSError, http.client.HTTPException):
        detail = ""
    message = f"HTTP {error.code} {error.reason}"
    if detail:
        message += f": {' '.join(detail.split())[:DETAIL_CHARS]}"
    if error.code >= 500 or error.code in (408, 429):
        return TransientError(message)
    return PermanentError(message, error.code)


def _connection_error(reason: object, timeout: float) -> TransientError:
    if isinstance(reason, TimeoutError):
        return TransientError(f"no answer within {timeout:g} s")
    if isinstance(reason, ConnectionRefusedError):
        return TransientError("connection refused (is the server running?)")
    return TransientError(_reason(reason))


def _reason(reason: object) -> str:
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror.lower()
    return str(reason) or type(reason).__name__


def _opener(url: str) -> urllib.request.OpenerDirector:
    # A speech server on this machine must not go through http_proxy: proxies set for package
    # registries would otherwise swallow requests to 127.0.0.1 unless no_proxy lists it.
    if _is_loopback(urllib.parse.urlsplit(url).hostname or ""):
        return urllib.request.build_opener(urllib.request.ProxyHandler({}))
    return urllib.request.build_opener()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def with_retries(attempt: Callable[[], T], retries: int, backoff: float,
                 sleep: Callable[[float], None] = time.sleep) -> T:
    """Run `attempt` until it succeeds; after a TransientError wait backoff, 2·backoff, … (capped).

    After `retries` retries the last TransientError is raised again, with the number of attempts.
    PermanentError is raised at once.
    """
    for n in range(retries + 1):
        try:
            return attempt()
        except TransientError as error:
            if n == retries:
                raise TransientError(f"{error} ({n + 1} attempt{'s' if n else ''})") from None
            sleep(min(backoff * 2 ** n, MAX_BACKOFF))
    raise AssertionError("unreachable")


# ── the audio that comes back ────────────────────────────────────────────────


@dataclass(frozen=True)
class Audio:
    """Mono 16-bit little-endian PCM at `rate` samples per second."""

    rate: int
    pcm: bytes

    @property
    def seconds(self) -> float:
        return len(self.pcm) / 2 / self.rate

    def write(self, path: Path) -> None:
        with wave.open(str(path), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(self.rate)
            out.writeframes(self.pcm)


def silence(seconds: float, rate: int) -> Audio:
    return Audio(rate, b"\x00\x00" * round(seconds * rate))


def check_plausible(audio: Audio, text: str, speed: float) -> None:
    """TransientError when the audio is too short to be `text` spoken (an empty or cut stream)."""
    if not audio.pcm:
        raise TransientError("the server sent no audio")
    characters = spoken_characters(text)
    minimum = characters * MIN_SECONDS_PER_CHARACTER / max(speed, 1.0)
    if audio.seconds < minimum:
        raise TransientError(f"only {audio.seconds:.3f} s of audio for {characters} spoken characters "
                             f"(at least {minimum:.2f} s expected; was the stream cut off?)")


def spoken_characters(text: str) -> int:
    """Letters, digits and CJK characters: what takes time to say."""
    return sum(1 for ch in text if ch.isalnum())


# A sentence of punctuation only ("……" split off a line) has nothing to say: it becomes this pause
# rather than a request whose reply would be empty or noise.
PAUSE_SECONDS = 0.3
