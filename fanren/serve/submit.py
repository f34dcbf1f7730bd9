"""Accepting work: idempotency, quotas, queue limits, the job's folder, then the queue. Shared by every route
that submits (the seed endpoint, dramas, novels, batches).

    Idempotency-Key seen before ─▶ the job it made (a different request with it: 422)
    quota used up               ─▶ 403 naming the quota and when it resets
    queue full                  ─▶ 429 + Retry-After
    bad input                   ─▶ 422 with the CLI's message (file, key path, did-you-mean)
    otherwise                   ─▶ jobs/<id>/ written, the job queued, 202 + Location
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import HTTPException

from ..errors import FanrenError
from .deps import Settings, check_profile, quota_refusal
from .runner import Runner
from .store import ApiKey, Duplicate, Job, Limits, Refused, Store, new_id
from .uploads import UploadError

log = logging.getLogger("fanren.serve")

RETRY_AFTER = 5  # seconds a client waits before retrying a submit the full queue refused


class Submission:
    """One submit: what the route parsed, and how to write the job's folder."""

    def __init__(self, kind: str, profile: str, spec: dict[str, Any], prepare: Callable[[Path], None],
                 digest: str) -> None:
        self.kind, self.profile, self.spec, self.prepare, self.digest = kind, profile, spec, prepare, digest


def request_digest(*parts: bytes | str) -> str:
    """What identifies a request for Idempotency-Key: its fields, not its multipart boundary."""
    h = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return h.hexdigest()


def replayed(store: Store, key: ApiKey, idempotency_key: str | None, digest: str) -> Job | None:
    """The job an earlier submit with this Idempotency-Key made, or None. Another request with it: 422."""
    if idempotency_key is None:
        return None
    for job in store.jobs(key.id, limit=1, idempotency_key=idempotency_key):
        if job.request_digest != digest:
            raise HTTPException(422, "Idempotency-Key was already used for a different request")
        return job
    return None


def submit(store: Store, runner: Runner, settings: Settings, key: ApiKey, submission: Submission,
           idempotency_key: str | None = None, batch_id: str | None = None) -> tuple[Job, bool]:
    """(job, created). Raises HTTPException for every refusal; nothing is left behind by one."""
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= 255:
        raise HTTPException(422, "Idempotency-Key: expected 1 to 255 characters")
    earlier = replayed(store, key, idempotency_key, submission.digest)
    if earlier is not None:
        return earlier, False
    check_profile(key, submission.profile)
    refusal = quota_refusal(store, key)
    if refusal is not None:
        raise refusal
    check_queue(store, settings, key)
    job_id = new_id("job")
    folder = runner.job_folder(job_id)
    try:
        submission.prepare(folder / "drama")
    except UploadError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise HTTPException(413 if exc.too_large else 422, str(exc)) from None
    except FanrenError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise HTTPException(422, relative(exc.show().removeprefix("error: "), folder / "drama")) from None
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    limits = Limits(key.jobs_per_day, settings.max_queue, settings.max_queue_per_key)
    try:
        job = store.add_job(key.id, submission.kind, submission.profile, submission.spec, job_id=job_id,
                            batch_id=batch_id, idempotency_key=idempotency_key, request_digest=submission.digest,
                            limits=limits)
    except Duplicate as exc:   # the same Idempotency-Key raced us: its job stands, ours is dropped
        shutil.rmtree(folder, ignore_errors=True)
        if exc.job.request_digest != submission.digest:
            raise HTTPException(422, "Idempotency-Key was already used for a different request") from None
        return exc.job, False
    except Refused as exc:
        shutil.rmtree(folder, ignore_errors=True)
        raise refused(exc) from None
    log.info("job %s (key %s, %s, profile %s) queued", job.id, key.id, job.kind, job.profile)
    runner.wake()
    return job, True


def check_queue(store: Store, settings: Settings, key: ApiKey) -> None:
    """The cheap look before writing a job's folder; add_job checks again, atomically."""
    count = store.count_active()
    if count >= settings.max_queue:
        raise refused(Refused("queue", count, settings.max_queue))
    mine = store.count_active(key.id)
    if mine >= settings.max_queue_per_key:
        raise refused(Refused("key-queue", mine, settings.max_queue_per_key))


def refused(exc: Refused) -> HTTPException:
    if exc.reason == "jobs-per-day":
        from .store import next_reset

        resets = next_reset().strftime("%Y-%m-%dT%H:%M:%SZ")
        return HTTPException(403, f"quota exceeded: jobs-per-day ({exc.used} of {exc.limit} used today); "
                                  f"it resets at {resets}", headers={"X-Quota-Reset": resets})
    whose = "the server's queue" if exc.reason == "queue" else "this key's queue"
    return HTTPException(429, f"{whose} is full ({exc.used} of {exc.limit} jobs queued or running); "
                              f"retry after {RETRY_AFTER} s", headers={"Retry-After": str(RETRY_AFTER)})


def relative(message: str, root: Path) -> str:
    """Messages name files inside the job's folder: the client knows them by their path in the upload."""
    return message.replace(str(root) + "/", "").replace(str(root), ".")
