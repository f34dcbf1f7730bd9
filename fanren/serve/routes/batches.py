"""Batches: many dramas in one request, each its own job, listed together."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from ...errors import FanrenError
from ..deps import Key, RunnerDep, SettingsDep, StoreDep, quota_refusal
from ..models import BatchAccepted, ErrorBody, JobList
from ..store import new_id
from ..submit import Submission, relative, submit
from ..uploads import UploadError
from ..views import summary
from .jobs import SUBMIT_ERRORS, _form, _profile, drama_submission

router = APIRouter(prefix="/batches", tags=["batches"])
MAX_BATCH = 100


def _check_all(submissions: list[tuple[str, Submission]]) -> None:
    """Every drama of the batch is checked before any is queued: one bad drama refuses the batch."""
    with tempfile.TemporaryDirectory(prefix="fanren-batch-") as scratch:
        for n, (name, submission) in enumerate(submissions):
            folder = Path(scratch) / str(n)
            try:
                submission.prepare(folder)
            except UploadError as exc:
                raise HTTPException(413 if exc.too_large else 422, f"{name}: {exc}") from None
            except FanrenError as exc:
                raise HTTPException(422, f"{name}: " + relative(exc.show().removeprefix("error: "), folder)) from None
            finally:
                shutil.rmtree(folder, ignore_errors=True)


@router.post("", status_code=202, response_model=BatchAccepted, responses=SUBMIT_ERRORS, openapi_extra={
    "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {"type": "object", "properties": {
        "archives": {"type": "array", "items": {"type": "string", "format": "binary"}},
        "profile": {"type": "string"}}}}}}})
async def submit_batch(request: Request, response: Response, key: Key, store: StoreDep, runner: RunnerDep,
                       settings: SettingsDep, idempotency_key: Annotated[str | None, Header()] = None
                       ) -> BatchAccepted:
    """Build many dramas (file fields `archives`, one per drama): one job each, all checked first."""
    form = await _form(request)
    profile = _profile(form, settings.profile)
    files = [f for f in form.getlist("archives") if isinstance(f, UploadFile)]
    if not files:
        raise HTTPException(422, "send one file field `archives` per drama")
    if len(files) > MAX_BATCH:
        raise HTTPException(413, f"at most {MAX_BATCH} dramas in one batch")
    submissions = [(f.filename or f"archives[{n}]", drama_submission(await f.read(), profile))
                   for n, f in enumerate(files)]

    def accept() -> BatchAccepted:
        if idempotency_key:   # a retried batch: the jobs its first submit made
            first = store.jobs(key.id, limit=1, idempotency_key=f"{idempotency_key}#0")
            if first and first[0].batch_id:
                jobs = store.jobs(key.id, limit=MAX_BATCH, batch_id=first[0].batch_id)[::-1]
                return BatchAccepted(batch_id=first[0].batch_id, jobs=[summary(j) for j in jobs])
        refusal = quota_refusal(store, key)
        if refusal is not None:
            raise refusal
        if key.jobs_per_day is not None and store.usage(key.id).jobs + len(submissions) > key.jobs_per_day:
            raise HTTPException(403, f"quota exceeded: jobs-per-day ({store.usage(key.id).jobs} of "
                                     f"{key.jobs_per_day} used today) leaves no room for {len(submissions)} jobs")
        if store.count_active() + len(submissions) > settings.max_queue or \
                store.count_active(key.id) + len(submissions) > settings.max_queue_per_key:
            raise HTTPException(429, "the queue has no room for this batch; retry later",
                                headers={"Retry-After": "5"})
        _check_all(submissions)
        batch_id = new_id("batch")
        jobs = []
        for n, (_, submission) in enumerate(submissions):
            idem = f"{idempotency_key}#{n}" if idempotency_key else None
            job, _ = submit(store, runner, settings, key, submission, idem, batch_id=batch_id)
            jobs.append(job)
        return BatchAccepted(batch_id=jobs[0].batch_id or batch_id, jobs=[summary(j) for j in jobs])

    accepted = await run_in_threadpool(accept)
    response.headers["Location"] = f"/api/v1/batches/{accepted.batch_id}"
    return accepted


@router.get("/{batch_id}", response_model=JobList, responses={404: {"model": ErrorBody}})
def get_batch(batch_id: str, key: Key, store: StoreDep) -> Any:
    """The batch's jobs (newest first)."""
    jobs = store.jobs(key.id, limit=MAX_BATCH, batch_id=batch_id)
    if not jobs:
        raise HTTPException(404, f"no batch {batch_id!r}")
    return JobList(jobs=[summary(j) for j in jobs], next_cursor=None)
