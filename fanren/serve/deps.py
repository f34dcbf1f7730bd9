"""What routes depend on: the settings, the store, the runner, and the caller's API key (with its quotas)."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request

from ..executors import ExecutorOptions
from .runner import Runner
from .store import ApiKey, Store, next_reset

log = logging.getLogger("fanren.serve")


class RateLimit:
    """At most `per_minute` requests a minute per key (a sliding window, in memory): past it, 429."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._seen: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def wait_for(self, key_id: str, now: float | None = None) -> float:
        """0 if this request may go on (and counts it), else the seconds until it may."""
        if self.per_minute <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        with self._lock:
            seen = self._seen.setdefault(key_id, deque())
            while seen and seen[0] <= now - 60:
                seen.popleft()
            if len(seen) >= self.per_minute:
                return seen[0] + 60 - now
            seen.append(now)
            return 0.0


@dataclass(frozen=True)
class Settings:
    data: Path
    profile: str = "final"
    max_queue: int = 100          # queued + running jobs of all keys
    max_queue_per_key: int = 20
    max_upload: int = 256 << 20   # bytes of one request body
    jobs: int = 2                 # CPU nodes a build runs at once
    requests_per_minute: int = 0  # per key; 0: no limit
    executor: ExecutorOptions | None = None  # where GPU nodes run (fanren/executors); None: in-process


def get_settings(request: Request) -> Settings:
    return request.app.state.settings  # type: ignore[no-any-return]


def get_rate_limit(request: Request) -> RateLimit:
    return request.app.state.rate_limit  # type: ignore[no-any-return]


def get_store(request: Request) -> Store:
    return request.app.state.store  # type: ignore[no-any-return]


def get_runner(request: Request) -> Runner:
    return request.app.state.runner  # type: ignore[no-any-return]


def unauthorized(detail: str) -> HTTPException:
    return HTTPException(401, detail, headers={"WWW-Authenticate": 'Bearer realm="fanren", X-API-Key'})


async def current_key(store: Annotated[Store, Depends(get_store)],
                      rate: Annotated[RateLimit, Depends(get_rate_limit)],
                x_api_key: Annotated[str | None, Header(description="the API key")] = None,
                authorization: Annotated[str | None, Header(description="Bearer <API key>")] = None) -> ApiKey:
    """The caller's key: X-API-Key or Authorization: Bearer. Missing, unknown, revoked, expired: 401.

    Runs on the event loop, not a worker thread: one indexed SQLite read (WAL: never blocked by the
    runner's writes) costs less than the hop to the thread pool.
    """
    token = x_api_key
    if token is None and authorization is not None:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            token = value.strip()
    if not token:
        raise unauthorized("missing API key: send it as X-API-Key or Authorization: Bearer")
    key = store.authenticate(token)
    if key is None:
        raise unauthorized("invalid API key")
    state = key.state()
    if state != "active":
        log.info("refused key %s: %s", key.id, state)
        raise unauthorized(f"API key {state}")
    wait = rate.wait_for(key.id)
    if wait > 0:
        raise HTTPException(429, f"rate limit: {rate.per_minute} requests a minute for this key; retry after "
                                 f"{math.ceil(wait)} s", headers={"Retry-After": str(math.ceil(wait))})
    return key


Key = Annotated[ApiKey, Depends(current_key)]
StoreDep = Annotated[Store, Depends(get_store)]
RunnerDep = Annotated[Runner, Depends(get_runner)]
SettingsDep = Annotated[Settings, Depends(get_settings)]


def quota_refusal(store: Store, key: ApiKey) -> HTTPException | None:
    """403 naming the exhausted quota and when it resets (the next midnight UTC), or None."""
    usage = store.usage(key.id)
    resets = next_reset().strftime("%Y-%m-%dT%H:%M:%SZ")
    if key.jobs_per_day is not None and usage.jobs >= key.jobs_per_day:
        return HTTPException(403, f"quota exceeded: jobs-per-day ({usage.jobs} of {key.jobs_per_day} used today);"
                                  f" it resets at {resets}", headers={"X-Quota-Reset": resets})
    if key.gpu_seconds_per_day is not None and usage.gpu_seconds >= key.gpu_seconds_per_day:
        return HTTPException(403, f"quota exceeded: gpu-seconds-per-day ({usage.gpu_seconds:.1f} of "
                                  f"{key.gpu_seconds_per_day:g} used today); it resets at {resets}",
                             headers={"X-Quota-Reset": resets})
    return None


def check_profile(key: ApiKey, profile: str) -> None:
    if key.profiles is not None and profile not in key.profiles:
        raise HTTPException(403, f"this key may render the profiles {', '.join(key.profiles)}, not {profile!r}")
