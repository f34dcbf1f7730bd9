"""A client for any OpenAI-compatible chat-completions endpoint (OpenAI, vLLM, Ollama, llama.cpp, …).

Requests go through fanren.http, like the speech engines'. It asks for JSON the strictest way the
server accepts: a `json_schema` response format, else `json_object`, else none (the prompt still
asks for JSON); a server that rejects one is asked the next way and remembered. Rate limits, 5xx
answers and dropped connections are retried a few times (after Retry-After when the server sends
one); anything else becomes an EngineError that says what to fix and never holds the API key.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import EngineError
from ..http import HTTPFailure, TransientError, mask, post, request_secrets, with_retries

DEFAULT_BASE_URL = "https://api.openai.com/v1"
DEFAULT_MODEL = "gpt-4o-mini"
DEFAULT_KEY_ENV = "OPENAI_API_KEY"

RESPONSE_FORMATS = ("json_schema", "json_object", "none")
_TRANSIENT = {429, 500, 502, 503, 504}
DEFAULT_TIMEOUT = 300.0  # seconds for a whole answer: a large model writing 30 shots takes minutes


@dataclass(frozen=True)
class ChatEndpoint:
    base_url: str = DEFAULT_BASE_URL
    model: str = DEFAULT_MODEL
    api_key: str | None = None
    api_key_env: str = DEFAULT_KEY_ENV  # named in messages about the key
    timeout: float = DEFAULT_TIMEOUT     # seconds for one whole answer, however the server sends it
    attempts: int = 3                   # answers asked for per chunk before giving up
    chunk_chars: int | None = None      # characters of text per request; default 30 shots' worth

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"


@dataclass(frozen=True)
class Completion:
    content: str
    truncated: bool  # the model hit its output limit mid-answer


class ChatClient:
    def __init__(self, endpoint: ChatEndpoint, transient_retries: int = 2, backoff: float = 1.0) -> None:
        self.endpoint = endpoint
        self.transient_retries = transient_retries
        self.backoff = backoff
        self.response_format = RESPONSE_FORMATS[0]
        self.requests = 0

    def complete(self, messages: Sequence[dict[str, str]], schema: dict[str, Any], name: str) -> Completion:
        """The model's answer to `messages`, asked to follow the JSON `schema`."""
        while True:
            body: dict[str, Any] = {"model": self.endpoint.model, "messages": list(messages), "temperature": 0}
            if self.response_format == "json_schema":
                body["response_format"] = {"type": "json_schema",
                                           "json_schema": {"name": name, "strict": True, "schema": schema}}
            elif self.response_format == "json_object":
                body["response_format"] = {"type": "json_object"}
            status, payload = self._post(body)
            if status == 200:
                return self._completion(payload)
            if status in (400, 422) and self.response_format != "none" and _about_format(payload):
                self.response_format = RESPONSE_FORMATS[RESPONSE_FORMATS.index(self.response_format) + 1]
                continue
            raise self._error(self._refusal(status, payload))

    def _post(self, body: dict[str, Any]) -> tuple[int, bytes]:
        """The status and body of the server's answer, after retrying what is worth retrying."""
        data = json.dumps(body, ensure_ascii=False).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.endpoint.api_key:
            headers["Authorization"] = f"Bearer {self.endpoint.api_key}"

        def attempt() -> tuple[int, bytes]:
            self.requests += 1
            reply = post(self.endpoint.url, data, headers, self.endpoint.timeout)
            return reply.status, reply.body

        try:
            return with_retries(attempt, self.transient_retries, self.backoff, retry_if=_worth_retrying)
        except HTTPFailure as failure:
            if failure.status is not None:
                return failure.status, failure.body  # the answer is explained by complete()
            raise self._error(self._unreachable(failure)) from None

    def _error(self, message: str) -> EngineError:
        # fanren.http masks the key in what it reports; a server can also echo it in a 200 answer
        # or one this client quotes, so every message leaves through the same mask.
        return EngineError(mask(message, [self.endpoint.api_key or "", *request_secrets(self.endpoint.url, {})]))

    def _unreachable(self, failure: HTTPFailure) -> str:
        url = self.endpoint.url
        if failure.kind == "unreachable":
            return f"could not reach {url}: {failure.detail} (is the server running? check --base-url)"
        if failure.kind == "timeout":
            return (f"the server at {url} sent no complete answer within {self.endpoint.timeout:g} s "
                    "(a slow model may need a longer --timeout)")
        if failure.kind == "broken":
            return f"the server at {url} closed the connection: {failure}"
        return f"the request to {url} failed: {failure}"

    def _completion(self, payload: bytes) -> Completion:
        try:
            answer = json.loads(payload)
            choice = answer["choices"][0]
            content = choice["message"].get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise self._error(f"the server at {self.endpoint.url} did not answer in the chat-completions "
                              f"format: {_excerpt(payload)}") from None
        return Completion(str(content), choice.get("finish_reason") == "length")

    def _refusal(self, status: int, payload: bytes) -> str:
        url, message = self.endpoint.url, _server_message(payload)
        if status in (401, 403):
            key = (f"${self.endpoint.api_key_env} is not set" if not self.endpoint.api_key
                   else f"check the key in ${self.endpoint.api_key_env}")
            return f"the server at {url} refused the request (HTTP {status}: {message}); {key}"
        if status == 404:
            return (f"{url} answered HTTP 404 ({message}): check --base-url (most servers want it to end "
                    f"in /v1) and --model ({self.endpoint.model!r})")
        return f"the server at {url} answered HTTP {status}: {message}"


def _about_format(payload: bytes) -> bool:
    """Whether a 400 answer complains about the response format rather than the request as a whole."""
    text = _server_message(payload).lower()
    return "format" in text or "schema" in text


def _server_message(payload: bytes) -> str:
    try:
        error = json.loads(payload).get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
    except (ValueError, AttributeError):
        pass
    return _excerpt(payload)


def _excerpt(payload: bytes, limit: int = 300) -> str:
    text = payload.decode("utf-8", errors="replace").strip()
    return repr(text if len(text) <= limit else text[:limit] + "…")


def _worth_retrying(failure: TransientError) -> bool:
    """Rate limits, 5xx and dropped connections. Not a refused connection (nothing is listening at
    --base-url) nor a timeout (the same request would take as long again)."""
    return failure.status in _TRANSIENT or failure.kind == "broken"
