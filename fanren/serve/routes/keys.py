"""The caller's own key: its limits and today's usage."""

from __future__ import annotations

from fastapi import APIRouter

from ..deps import Key, StoreDep
from ..models import KeyInfo
from ..store import next_reset

router = APIRouter(tags=["keys"])


@router.get("/key", response_model=KeyInfo)
def my_key(key: Key, store: StoreDep) -> KeyInfo:
    """Who the key is, its quotas, what it used today (UTC) and when that resets."""
    usage = store.usage(key.id)
    return KeyInfo(id=key.id, name=key.name, profiles=list(key.profiles) if key.profiles else None,
                   jobs_per_day=key.jobs_per_day, gpu_seconds_per_day=key.gpu_seconds_per_day,
                   jobs_today=usage.jobs, gpu_seconds_today=round(usage.gpu_seconds, 3),
                   resets_at=next_reset().strftime("%Y-%m-%dT%H:%M:%SZ"))
