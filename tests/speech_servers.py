"""Real HTTP servers on 127.0.0.1 that speak the speech protocols fanren's voice engines use.

`CosyVoiceServer` answers like CosyVoice's runtime/python/fastapi/server.py: the same endpoints
(GET or POST), the same form fields read from multipart or urlencoded bodies, FastAPI's 422 for a
missing field (an empty string counts as missing), and a chunked stream of raw 16-bit mono PCM
with no header. `OpenAISpeechServer` answers POST /v1/audio/speech with a WAV, by default with
the streaming header OpenAI sends (RIFF and data sizes of 0xFFFFFFFF).

Both record every request as it arrived and can be told to fail the next requests the ways real
servers fail: `server.fail_next("500", "hang", "empty", "odd", "cut", "short", "truncated", "noise",
"trickle")` (each worth another attempt) or `server.fail_next("html")` (not).
"""

from __future__ import annotations

import json
import math
import random
import socket
import struct
import threading
import time
import urllib.parse
import zlib
from collections import deque
from dataclasses import dataclass, field
from email.parser import BytesParser
from email.policy import HTTP
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

SECONDS_PER_CHARACTER = 0.08  # how long the fake voices take per character of text
CHUNK = 4096                  # bytes per chunk of the streamed reply
HANG_SECONDS = 5.0            # a hanging request gives up after this (or when the server stops)
TRICKLE_BYTES_PER_SECOND = 2  # how fast a trickling server sends its whole reply, headers included
# Faults a client should retry: a 500, no answer, an empty stream, a stream ending mid-sample, a
# chunked stream cut off, a complete but far too short one, a body shorter than its Content-Length,
# random bytes instead of speech, and a reply sent two bytes a second.
FAULTS = ("500", "hang", "empty", "odd", "cut", "short", "truncated", "noise", "trickle")
# Faults that asking again cannot fix: a 200 answer that is an HTML page, not audio.
PERMANENT_FAULTS = ("html",)


@dataclass
class Received:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]                 # names in lower case
    body: bytes
    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, tuple[str, bytes]] = field(default_factory=dict)  # name → (filename, content)
    json: Any = None


def tone(text: str, rate: int, seconds: float) -> bytes:
    """The fake speech for `text`: a sine whose pitch depends on the text, as 16-bit mono PCM."""
    frequency = 150 + zlib.crc32(text.encode("utf-8")) % 300
    n = round(seconds * rate)
    samples = (round(8000 * math.sin(2 * math.pi * frequency * i / rate)) for i in range(n))
    return struct.pack(f"<{n}h", *samples)


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: connecting to it is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class SpeechServer:
    """A ThreadingHTTPServer on an ephemeral port in a background thread."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self._faults: deque[str] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    @property
    def url(self) -> str:
        host, port = self._http.server_address[:2]
        return f"http://{host!s}:{port}"

    def fail_next(self, *faults: str) -> None:
        unknown = set(faults) - set(FAULTS) - set(PERMANENT_FAULTS)
        if unknown:
            raise ValueError(f"unknown fault(s) {sorted(unknown)}; known: {FAULTS + PERMANENT_FAULTS}")
        with self._lock:
            self._faults.extend(faults)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()  # releases hanging requests
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(timeout=5)

    # ── what a request gets ─────────────────────────────────────────────────

    def _record(self, received: Received) -> str | None:
        """Keep the request; return the fault it is to meet, if any."""
        with self._lock:
            self.received.append(received)
            return self._faults.popleft() if self._faults else None

    def handle(self, request: BaseHTTPRequestHandler, received: Received) -> None:
        raise NotImplementedError

    def answer_fault(self, request: BaseHTTPRequestHandler, fault: str, audio: bytes,
                     content_type: str, headers: dict[str, str] | None = None) -> None:
        if fault == "hang":
            self._stopping.wait(HANG_SECONDS)
            request.close_connection = True
            return
        if fault == "500":
            send_body(request, 500, b"Internal Server Error", "text/plain; charset=utf-8")
            return
        if fault == "html":
            send_body(request, 200, b"<html><body><h1>Welcome to nginx!</h1></body></html>",
                      "text/html; charset=utf-8")
            return
        if fault == "truncated":
            # Content-Length promises the whole audio; the connection closes after half of it.
            request.send_response(200)
            request.send_header("Content-Type", content_type)
            request.send_header("Content-Length", str(len(audio)))
            request.end_headers()
            request.wfile.write(audio[:len(audio) // 2])
            request.close_connection = True
            return
        if fault == "trickle":
            self._trickle(request, audio, content_type)
            return
        if fault == "noise":
            # Random bytes where the samples should be (a WAV keeps its header).
            keep = audio.index(b"data") + 8 if audio.startswith(b"RIFF") else 0
            audio = audio[:keep] + random.Random(len(audio)).randbytes(len(audio) - keep)
        elif fault == "empty":
            audio = b""
        elif fault == "odd":
            audio += b"\x01"
        elif fault == "short":
            audio = audio[:20]
        stream(request, audio, content_type, headers, cut=fault == "cut")


    def _trickle(self, request: BaseHTTPRequestHandler, audio: bytes, content_type: str) -> None:
        """The whole reply, status line first, at TRICKLE_BYTES_PER_SECOND until the client leaves."""
        trickle_reply(request, audio, content_type, self._stopping, 2 / TRICKLE_BYTES_PER_SECOND)


def trickle_reply(request: BaseHTTPRequestHandler, body: bytes, content_type: str, stopping: threading.Event,
                  every: float) -> None:
    """A 200 reply, status line first, two bytes every `every` seconds until the client leaves or
    `stopping` is set."""
    reply = (b"HTTP/1.1 200 OK\r\nContent-Type: " + content_type.encode("ascii")
             + b"\r\nContent-Length: " + str(len(body)).encode("ascii") + b"\r\n\r\n" + body)
    request.close_connection = True
    for start in range(0, len(reply), 2):
        try:
            request.wfile.write(reply[start:start + 2])
            request.wfile.flush()
        except OSError:
            return  # the client gave up
        if stopping.wait(every):
            return


def send_body(request: BaseHTTPRequestHandler, status: int, body: bytes, content_type: str) -> None:
    request.send_response(status)
    request.send_header("Content-Type", content_type)
    request.send_header("Content-Length", str(len(body)))
    request.end_headers()
    request.wfile.write(body)


def stream(request: BaseHTTPRequestHandler, body: bytes, content_type: str,
           headers: dict[str, str] | None = None, cut: bool = False) -> None:
    """A 200 reply in chunked transfer encoding, as StreamingResponse sends it.

    With `cut`, the connection closes after the first half, before the last chunk.
    """
    request.send_response(200)
    request.send_header("Content-Type", content_type)
    request.send_header("Transfer-Encoding", "chunked")
    for name, value in (headers or {}).items():
        request.send_header(name, value)
    request.end_headers()
    end = len(body) // 2 if cut else len(body)
    for start in range(0, end, CHUNK):
        piece = body[start:min(start + CHUNK, end)]
        request.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
        request.wfile.flush()
    if cut:
        request.close_connection = True
        return
    request.wfile.write(b"0\r\n\r\n")


def _handler_for(server: SpeechServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self._serve()

        def do_GET(self) -> None:
            self._serve()

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length) if length else b""
            headers = {k.lower(): v for k, v in self.headers.items()}
            received = Received(self.command, self.path, headers, body)
            server.handle(self, received)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    return Handler


def parse_form(received: Received) -> None:
    """Fill `fields` and `files` from a multipart or urlencoded body, as FastAPI reads a form."""
    content_type = received.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        message = BytesParser(policy=HTTP).parsebytes(
            b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + received.body)
        for part in message.iter_parts():
            name = str(part.get_param("name", header="content-disposition"))
            filename = part.get_filename()
            content = part.get_payload(decode=True)
            assert isinstance(content, bytes)
            if filename is not None:
                received.files[name] = (filename, content)
            else:
                received.fields[name] = content.decode(part.get_content_charset() or "utf-8")
    elif content_type.startswith("application/x-www-form-urlencoded"):
        form = urllib.parse.parse_qs(received.body.decode("utf-8"), keep_blank_values=True)
        for name, values in form.items():
            received.fields[name] = values[-1]


# ── CosyVoice ───────────────────────────────────────────────────────────────

# The form each endpoint of runtime/python/fastapi/server.py declares: (fields, files).
COSYVOICE_FORMS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "/inference_sft": (("tts_text", "spk_id"), ()),
    "/inference_zero_shot": (("tts_text", "prompt_text"), ("prompt_wav",)),
    "/inference_cross_lingual": (("tts_text",), ("prompt_wav",)),
    "/inference_instruct": (("tts_text", "spk_id", "instruct_text"), ()),
    "/inference_instruct2": (("tts_text", "instruct_text"), ("prompt_wav",)),
}


class CosyVoiceServer(SpeechServer):
    def __init__(self, sample_rate: int = 22050, announce_rate: int | None = None) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.announce_rate = announce_rate  # older server.py sent X-Custom-Header-sampleRate

    def pcm_for(self, text: str) -> bytes:
        return tone(text, self.sample_rate, SECONDS_PER_CHARACTER * len(text))

    def handle(self, request: BaseHTTPRequestHandler, received: Received) -> None:
        path = urllib.parse.urlsplit(received.path).path
        form = COSYVOICE_FORMS.get(path)
        if form is None:
            self._record(received)
            send_body(request, 404, b'{"detail":"Not Found"}', "application/json")
            return
        parse_form(received)
        fault = self._record(received)
        missing = [name for name in form[0] if not received.fields.get(name)]
        missing += [name for name in form[1] if name not in received.files]
        if missing:
            detail = [{"type": "missing", "loc": ["body", name], "msg": "Field required", "input": None}
                      for name in missing]
            send_body(request, 422, json.dumps({"detail": detail}).encode(), "application/json")
            return
        headers = {"X-Custom-Header-sampleRate": str(self.announce_rate)} if self.announce_rate else {}
        audio = self.pcm_for(received.fields["tts_text"])
        if fault is not None:
            self.answer_fault(request, fault, audio, "application/octet-stream", headers)
            return
        stream(request, audio, "application/octet-stream", headers)


# ── OpenAI-compatible speech ────────────────────────────────────────────────

@dataclass(frozen=True)
class WavShape:
    """How the server encodes its WAV replies."""

    channels: int = 1
    bits: int = 16
    float: bool = False
    streaming_header: bool = True   # RIFF and data sizes 0xFFFFFFFF, as OpenAI streams them
    extensible: bool = False        # WAVE_FORMAT_EXTENSIBLE fmt chunk
    extra_chunk: bool = False       # a LIST chunk before the data, as some servers write


class OpenAISpeechServer(SpeechServer):
    def __init__(self, sample_rate: int = 24000, api_key: str | None = None, shape: WavShape = WavShape(),
                 answer_mp3: bool = False) -> None:
        super().__init__()
        self.sample_rate = sample_rate
        self.api_key = api_key
        self.shape = shape
        self.answer_mp3 = answer_mp3  # a server that ignores response_format

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def pcm_for(self, text: str, speed: float = 1.0) -> bytes:
        return tone(text, self.sample_rate, SECONDS_PER_CHARACTER * len(text) / speed)

    def handle(self, request: BaseHTTPRequestHandler, received: Received) -> None:
        if received.method != "POST" or urllib.parse.urlsplit(received.path).path != "/v1/audio/speech":
            self._record(received)
            send_body(request, 404, b'{"detail":"Not Found"}', "application/json")
            return
        received.json = json.loads(received.body or b"null")
        fault = self._record(received)
        if self.api_key is not None and received.headers.get("authorization") != f"Bearer {self.api_key}":
            sent = received.headers.get("authorization", "").removeprefix("Bearer ")
            # OpenAI echoes (part of) the key it refused; this one echoes all of it.
            error = {"error": {"message": f"Incorrect API key provided: {sent}.",
                               "type": "invalid_request_error", "code": "invalid_api_key"}}
            send_body(request, 401, json.dumps(error).encode(), "application/json")
            return
        request_json = received.json if isinstance(received.json, dict) else {}
        missing = [k for k in ("model", "input", "voice") if not request_json.get(k)]
        if missing:
            error = {"error": {"message": f"missing {', '.join(missing)}", "type": "invalid_request_error"}}
            send_body(request, 400, json.dumps(error).encode(), "application/json")
            return
        pcm = self.pcm_for(request_json["input"], float(request_json.get("speed", 1.0)))
        if self.answer_mp3:
            stream(request, b"ID3\x04\x00\x00\x00\x00\x00\x00" + pcm[:1000], "audio/mpeg")
            return
        wav = encode_wav(pcm, self.sample_rate, self.shape)
        if fault is not None:
            self.answer_fault(request, fault, wav, "audio/wav")
            return
        stream(request, wav, "audio/wav")


def encode_wav(pcm16: bytes, rate: int, shape: WavShape) -> bytes:
    """Mono 16-bit PCM re-encoded as `shape` asks."""
    samples = struct.unpack(f"<{len(pcm16) // 2}h", pcm16)
    if shape.float:
        kind = "f" if shape.bits == 32 else "d"
        one = struct.pack(f"<{len(samples)}{kind}", *(s / 32767.0 for s in samples))
        width = shape.bits // 8
    elif shape.bits == 8:
        one = bytes((s >> 8) + 128 for s in samples)
        width = 1
    elif shape.bits == 16:
        one, width = pcm16, 2
    elif shape.bits == 24:
        one = b"".join((s * 256).to_bytes(3, "little", signed=True) for s in samples)
        width = 3
    else:
        one = struct.pack(f"<{len(samples)}i", *(s * 65536 for s in samples))
        width = 4
    # The voice is in the first channel, the others are silent: a mono mix halves it in stereo.
    quiet = (b"\x80" if shape.bits == 8 else b"\x00") * width * (shape.channels - 1)
    frames = b"".join(one[i:i + width] + quiet for i in range(0, len(one), width))
    tag = 3 if shape.float else 1
    block = width * shape.channels
    if shape.extensible:
        guid_tail = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
        fmt = struct.pack("<HHIIHHHHI", 0xFFFE, shape.channels, rate, rate * block, block, shape.bits, 22,
                          shape.bits, 0) + struct.pack("<H", tag) + guid_tail
    else:
        fmt = struct.pack("<HHIIHH", tag, shape.channels, rate, rate * block, block, shape.bits)
    chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt
    if shape.extra_chunk:
        info = b"INFOISFT\x05\x00\x00\x00fake\x00\x00"
        chunks += b"LIST" + struct.pack("<I", len(info)) + info
        chunks += b"junk" + struct.pack("<I", 3) + b"abc\x00"  # an odd size: padded to even
    data_size = 0xFFFFFFFF if shape.streaming_header else len(frames)
    riff_size = 0xFFFFFFFF if shape.streaming_header else 4 + len(chunks) + 8 + len(frames)
    header = b"RIFF" + struct.pack("<I", riff_size) + b"WAVE" + chunks
    return header + b"data" + struct.pack("<I", data_size) + frames


def wait_for(predicate: Any, seconds: float = 2.0) -> bool:
    """Poll `predicate` until it is true or `seconds` pass (for requests still in flight)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())
