"""ComfyUI's HTTP and websocket protocol (server.py and execution.py of comfyanonymous/ComfyUI).

One prompt's life:
1. POST /upload/image (multipart: image, type=input, subfolder, overwrite) → {"name", "subfolder", "type"}
2. open the websocket /ws?clientId=<id> first, so no message about the prompt is missed
3. POST /prompt {"prompt": workflow, "client_id": id} → {"prompt_id", "number", "node_errors"};
   a workflow that fails validation → 400 {"error": {type, message, details}, "node_errors":
   {node id: {"errors": [{type, message, details, extra_info}], "class_type", "dependent_outputs"}}}
4. websocket messages {"type", "data"}: status, execution_start, execution_cached {nodes},
   executing {node} (node null: the prompt is done), progress {value, max, node}, executed
   {node, output}, execution_success, execution_error {node_id, node_type, exception_message,
   exception_type, traceback}, execution_interrupted; binary messages are previews (ignored).
   Without a websocket (the `websockets` package missing, a proxy that refuses the upgrade, a
   connection that drops) GET /history/<prompt_id> is polled instead.
5. GET /history/<prompt_id> → {prompt_id: {"outputs": {node id: {"images": [{filename, subfolder,
   type}], "gifs": [...], "animated": [...]}}, "status": {"status_str", "completed", "messages"}}}
6. GET /view?filename=&subfolder=&type=output → the file's bytes
"""

from __future__ import annotations

import contextlib
import json
import mimetypes
import time
import urllib.parse
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ...errors import EngineError
from ...http import HTTPFailure, PermanentError, get, mask, post, request_secrets
from ..voice.http import FilePart, encode_multipart

# Between two GET /history when there is no websocket: the first soon (a fast prompt is done in a
# fraction of a second), doubling to at most 1 s (a clip takes minutes).
FIRST_POLL_SECONDS, MAX_POLL_SECONDS = 0.05, 1.0
REQUEST_SECONDS = 60.0    # one HTTP exchange (an upload, a download) may take this long
UPLOAD_FOLDER = "fanren"  # the subfolder of ComfyUI's input folder that uploads go to


class ComfyUIFailure(EngineError):
    """The server could not render the workflow; the message says why, in the server's words."""


@dataclass
class Execution:
    """What is known about one queued prompt."""

    prompt_id: str
    cached: set[str] = field(default_factory=set)
    done: set[str] = field(default_factory=set)
    error: dict[str, Any] | None = None
    interrupted: dict[str, Any] | None = None
    finished: bool = False


class ComfyUIClient:
    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self.secrets = request_secrets(url, {})
        self.client_id = uuid.uuid4().hex  # names this client's websocket; never hashed

    def _http(self, call: Callable[[], Any], what: str) -> Any:
        try:
            return call()
        except HTTPFailure as error:
            raise ComfyUIFailure(f"{what}: {error}") from None

    def _json(self, body: bytes, what: str) -> Any:
        try:
            return json.loads(body)
        except ValueError:
            raise ComfyUIFailure(f"{what}: the reply is not JSON ({body[:80]!r})") from None

    def upload_image(self, file: Path, name: str) -> str:
        """Upload `file` into the input folder as `name`; the value a LoadImage node takes for it."""
        body, content_type = encode_multipart(
            {"type": "input", "subfolder": UPLOAD_FOLDER, "overwrite": "true"},
            {"image": FilePart(name, file.read_bytes(), mimetypes.guess_type(name)[0] or "image/png")})
        reply = self._http(lambda: post(self.url + "/upload/image", body, {"Content-Type": content_type},
                                        REQUEST_SECONDS), "POST /upload/image")
        saved = self._json(reply.body, "POST /upload/image")
        if not isinstance(saved, dict) or not isinstance(saved.get("name"), str):
            raise ComfyUIFailure(f"POST /upload/image: expected {{\"name\", \"subfolder\", \"type\"}}, got {saved!r}")
        subfolder = str(saved.get("subfolder") or "")
        return f"{subfolder}/{saved['name']}" if subfolder else saved["name"]

    def queue(self, workflow: Mapping[str, Any]) -> str:
        """POST /prompt; the prompt id, or ComfyUIFailure with the server's validation errors."""
        body = json.dumps({"prompt": workflow, "client_id": self.client_id}).encode("utf-8")
        try:
            reply = post(self.url + "/prompt", body, {"Content-Type": "application/json"}, REQUEST_SECONDS)
        except PermanentError as error:
            if error.status == 400:
                raise ComfyUIFailure(rejection(error.body, workflow)) from None
            raise ComfyUIFailure(f"POST /prompt: {error}") from None
        except HTTPFailure as error:
            raise ComfyUIFailure(f"POST /prompt: {error}") from None
        queued = self._json(reply.body, "POST /prompt")
        if not isinstance(queued, dict) or not isinstance(queued.get("prompt_id"), str):
            raise ComfyUIFailure(f"POST /prompt: expected {{\"prompt_id\", \"number\", \"node_errors\"}}, got "
                                 f"{str(queued)[:200]}")
        return queued["prompt_id"]

    def history(self, prompt_id: str) -> dict[str, Any] | None:
        """The prompt's history entry, or None while it is queued or running."""
        reply = self._http(lambda: get(f"{self.url}/history/{urllib.parse.quote(prompt_id)}", {}, REQUEST_SECONDS),
                           "GET /history")
        entries = self._json(reply.body, "GET /history")
        entry = entries.get(prompt_id) if isinstance(entries, dict) else None
        return entry if isinstance(entry, dict) else None

    def view(self, file: Mapping[str, Any]) -> bytes:
        query = urllib.parse.urlencode({"filename": file.get("filename", ""), "subfolder": file.get("subfolder", ""),
                                        "type": file.get("type", "output")})
        reply = self._http(lambda: get(f"{self.url}/view?{query}", {}, REQUEST_SECONDS),
                           f"GET /view of {file.get('filename')!r}")
        return bytes(reply.body)

    # ── following one prompt ─────────────────────────────────────────────────

    def run(self, workflow: Mapping[str, Any], progress: Callable[[float, str], None],
            log: Callable[[str], None]) -> dict[str, Any]:
        """Queue `workflow`, follow it to its end, and return its history entry."""
        deadline = time.monotonic() + self.timeout
        with contextlib.ExitStack() as stack:
            socket = self._connect(log)
            if socket is not None:
                stack.enter_context(socket)  # closes it however this ends
            prompt_id = self.queue(workflow)
            log(f"queued prompt {prompt_id}")
            execution = Execution(prompt_id)
            if socket is not None:
                self._follow(socket, execution, len(workflow), deadline, progress, log)
        if execution.error is not None:
            raise ComfyUIFailure(execution_error(execution.error))
        if execution.interrupted is not None:
            raise ComfyUIFailure(interruption(execution.interrupted))
        wait = FIRST_POLL_SECONDS
        while True:
            entry = self.history(prompt_id)
            if entry is not None and _completed(entry):
                return _succeeded(entry, prompt_id)
            if time.monotonic() >= deadline:
                raise ComfyUIFailure(f"the prompt {prompt_id} did not finish within {self.timeout:g} s "
                                     "(the profile's timeout option)")
            time.sleep(min(wait, max(0.0, deadline - time.monotonic())))
            wait = min(2 * wait, MAX_POLL_SECONDS)

    def _connect(self, log: Callable[[str], None]) -> Any:
        """The websocket, or None: then the history is polled."""
        try:
            from websockets.sync.client import connect
        except ImportError:
            log("no websocket client (pip install 'fanren[comfyui]'): polling /history")
            return None
        parts = urllib.parse.urlsplit(self.url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        address = urllib.parse.urlunsplit((scheme, parts.netloc, parts.path + "/ws",
                                           urllib.parse.urlencode({"clientId": self.client_id}), ""))
        try:
            return connect(address, open_timeout=min(10.0, self.timeout), proxy=None, max_size=None)
        except Exception as error:  # noqa: BLE001 - any failed handshake falls back to polling
            log(mask(f"no websocket at {address} ({type(error).__name__}: {error}): polling /history",
                     self.secrets))
            return None

    def _follow(self, socket: Any, execution: Execution, nodes: int, deadline: float,
                progress: Callable[[float, str], None], log: Callable[[str], None]) -> None:
        """Read the websocket until the prompt ends (or the socket drops: the caller polls then)."""
        current = ""
        while not execution.finished and time.monotonic() < deadline:
            try:
                message = socket.recv(timeout=min(5.0, max(0.01, deadline - time.monotonic())))
            except TimeoutError:
                continue
            except Exception as error:  # noqa: BLE001 - a dropped websocket: poll the history instead
                log(f"the websocket closed ({type(error).__name__}): polling /history")
                return
            if isinstance(message, bytes):
                continue  # a preview image
            try:
                event = json.loads(message)
            except ValueError:
                continue
            kind, data = event.get("type"), event.get("data") or {}
            if not isinstance(data, dict) or data.get("prompt_id", execution.prompt_id) != execution.prompt_id:
                continue
            if kind == "execution_cached":
                execution.cached.update(str(n) for n in data.get("nodes", []))
            elif kind == "executing":
                if current:
                    execution.done.add(current)
                if data.get("node") is None:
                    execution.finished = True
                current = str(data.get("node") or "")
            elif kind == "progress" and data.get("max"):
                share = float(data.get("value", 0)) / float(data["max"])
                finished = len(execution.done | execution.cached)
                progress(min(0.99, (finished + share) / max(1, nodes)),
                         f"node {data.get('node', current)}: {data.get('value')}/{data['max']}")
            elif kind == "executed":
                execution.done.add(str(data.get("node")))
            elif kind == "execution_success":
                execution.finished = True
            elif kind == "execution_error":
                execution.error, execution.finished = data, True
            elif kind == "execution_interrupted":
                execution.interrupted, execution.finished = data, True


def _completed(entry: Mapping[str, Any]) -> bool:
    status = entry.get("status")
    # Servers from before 2024 wrote no status: an entry in the history is a finished prompt.
    return not isinstance(status, dict) or bool(status.get("completed")) or status.get("status_str") == "error"


def _succeeded(entry: dict[str, Any], prompt_id: str) -> dict[str, Any]:
    """The entry of a prompt that ran to its end; ComfyUIFailure for one that failed (seen by polling)."""
    status = entry.get("status")
    if isinstance(status, dict) and status.get("status_str") == "error":
        for message in status.get("messages") or []:
            if isinstance(message, list) and len(message) == 2 and message[0] == "execution_error":
                raise ComfyUIFailure(execution_error(message[1]))
            if isinstance(message, list) and len(message) == 2 and message[0] == "execution_interrupted":
                raise ComfyUIFailure(interruption(message[1]))
        raise ComfyUIFailure(f"the prompt {prompt_id} failed (its history says status error)")
    return entry


def rejection(body: bytes, workflow: Mapping[str, Any]) -> str:
    """A 400 from POST /prompt in words: the error and every node's errors."""
    try:
        reply = json.loads(body)
    except ValueError:
        return f"POST /prompt: HTTP 400: {body[:300].decode('utf-8', 'replace')}"
    error = reply.get("error") if isinstance(reply, dict) else None
    parts = []
    if isinstance(error, dict):
        # With node errors the details only repeat them; without, they say which node ("Node ID '#8'").
        details = error.get("details") if not reply.get("node_errors") else ""
        parts.append(str(error.get("message", "")) + (f" ({details})" if details else ""))
    elif error:
        parts.append(str(error))
    node_errors = reply.get("node_errors") if isinstance(reply, dict) else None
    if isinstance(node_errors, dict):
        for node in sorted(node_errors, key=lambda n: (len(n), n)):
            entry = node_errors[node] or {}
            class_type = entry.get("class_type") or workflow.get(node, {}).get("class_type", "?")
            for problem in entry.get("errors", []):
                detail = f": {problem['details']}" if problem.get("details") else ""
                parts.append(f"node {node} ({class_type}): {problem.get('message', '')}{detail}")
    return "the server refused the workflow: " + "; ".join(p for p in parts if p)


def execution_error(data: Mapping[str, Any]) -> str:
    return (f"node {data.get('node_id')} ({data.get('node_type')}) failed: "
            f"{data.get('exception_type', 'error')}: {str(data.get('exception_message', '')).strip()}")


def interruption(data: Mapping[str, Any]) -> str:
    return (f"the prompt was interrupted at node {data.get('node_id')} ({data.get('node_type')}): someone pressed "
            "Cancel in ComfyUI or called POST /interrupt")
