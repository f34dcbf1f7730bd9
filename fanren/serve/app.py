"""The FastAPI application: routers per resource under /api/v1, the store and the runner in app.state.

Bad input never takes the server down: malformed JSON and wrong types are 422, bodies over
--max-upload are 413 before they are read into memory, and an unexpected error in one request is a
500 for that request alone (logged with the key id, never the key).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .. import __version__
from .deps import RateLimit, Settings
from .routes import batches, jobs, keys, videos
from .runner import Runner
from .store import Store

log = logging.getLogger("fanren.serve")


DRAIN = 256 << 20


class BodyTooLarge(Exception):
    pass


class LimitBody:
    """413 for a body over `limit` bytes: at once from Content-Length, else while it streams in."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            await _drain(receive)
            await _too_large(send, self.limit)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    if message.get("more_body", False):
                        await _drain(receive)
                    raise BodyTooLarge()
            return message

        try:
            await self.app(scope, limited, send)
        except BodyTooLarge:   # raised outside the routes' exception handlers
            await _too_large(send, self.limit)


async def _drain(receive: Receive) -> None:
    """Read and drop what the client is still sending (up to DRAIN bytes), so that it reads our 413
    instead of a reset connection."""
    dropped = 0
    while dropped < DRAIN:
        message = await receive()
        if message["type"] != "http.request":
            return
        dropped += len(message.get("body", b""))
        if not message.get("more_body", False):
            return


async def _too_large(send: Send, limit: int) -> None:
    response = JSONResponse({"detail": f"request body over {limit >> 20} MiB (--max-upload)"}, status_code=413)
    await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:
    return {"type": "http.disconnect"}


def create_app(settings: Settings) -> FastAPI:
    store = Store(settings.data / "fanren.db")
    runner = Runner(store, settings.data, jobs=settings.jobs, executor=settings.executor)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runner.start()
        try:
            yield
        finally:
            runner.stop()

    app = FastAPI(title="fanren", version=__version__, lifespan=lifespan,
                  description="The build of AI short dramas as a service: API keys, quotas, a persistent job "
                              "queue and warm models. See docs/serve.md.")
    app.state.settings, app.state.store, app.state.runner = settings, store, runner
    app.state.rate_limit = RateLimit(settings.requests_per_minute)
    for router in (videos.router, jobs.router, batches.router, keys.router):
        app.include_router(router, prefix="/api/v1")

    @app.exception_handler(BodyTooLarge)
    async def too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        return JSONResponse({"detail": f"request body over {settings.max_upload >> 20} MiB (--max-upload)"},
                            status_code=413)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error in %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error; the server log has the details"}, status_code=500)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, Any]:
        return {"ok": True, "profile": settings.profile}

    return LimitBody(app, settings.max_upload)  # type: ignore[return-value]
