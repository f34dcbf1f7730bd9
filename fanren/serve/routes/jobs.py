"""The native jobs API: submit a drama or a novel chapter, follow it, cancel it, list them, fetch files."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, StreamingResponse
from starlette.datastructures import FormData, UploadFile

from ...compile import compile_drama, resolve_engines
from ...errors import DramaError, Problem
from ...project import DRAMA_FILE
from ...series import load_drama
from ..deps import Key, RunnerDep, SettingsDep, StoreDep
from ..models import ErrorBody, JobDetail, JobList, JobSummary
from ..store import TERMINAL, Job, Store
from ..submit import Submission, request_digest, submit
from ..uploads import unpack_drama
from ..views import detail, file_names, job_file, job_files, json_response, node_output, node_outputs, summary

router = APIRouter(prefix="/jobs", tags=["jobs"])

SUBMIT_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody}, 403: {"model": ErrorBody}, 413: {"model": ErrorBody},
    422: {"model": ErrorBody, "description": "bad input, with the message `fanren build` prints"},
    429: {"model": ErrorBody, "description": "the queue is full; see Retry-After"},
}
MAX_CHAPTER = 4 << 20
HEARTBEAT = 15.0   # seconds between SSE comments that keep proxies from closing an idle stream
POLL = 0.2


# ── submitting ──────────────────────────────────────────────────────────────


def check_drama(folder: Path, profile: str) -> None:
    """What `fanren build` checks before writing anything: drama.toml (or series.toml and every
    episode's), references, profile, templates."""
    try:
        project = load_drama(folder)
    except UnicodeDecodeError as exc:
        raise DramaError(Problem(folder / DRAMA_FILE, "", "UTF-8 text",
                                 f"a byte that is not UTF-8 at offset {exc.start}")) from None
    compile_drama(project, resolve_engines(project, profile))


async def drama_upload(form: FormData) -> bytes | str:
    """The archive (file `archive`), or a lone drama.toml (file or text field `drama_toml`)."""
    archive = form.get("archive")
    if isinstance(archive, UploadFile):
        return await archive.read()
    toml = form.get("drama_toml")
    if isinstance(toml, UploadFile):
        return (await toml.read()).decode("utf-8", errors="surrogateescape")
    if isinstance(toml, str):
        return toml
    raise HTTPException(422, "send the drama as a file field `archive` (tar, tar.gz or zip with drama.toml, "
                             "refs/, templates/) or as `drama_toml` (the text of drama.toml alone)")


def drama_submission(upload: bytes | str, profile: str) -> Submission:
    def prepare(folder: Path) -> None:
        if isinstance(upload, str):
            folder.mkdir(parents=True)
            (folder / DRAMA_FILE).write_bytes(upload.encode("utf-8", errors="surrogateescape"))
        else:
            unpack_drama(upload, folder)
        check_drama(folder, profile)

    raw = upload.encode("utf-8", errors="surrogateescape") if isinstance(upload, str) else upload
    return Submission("drama", profile, {}, prepare, request_digest("drama", profile, raw))


def _profile(form: FormData, default: str) -> str:
    profile = form.get("profile") or default
    if not isinstance(profile, str) or not profile.strip():
        raise HTTPException(422, "profile: expected a profile name (draft, smoke, final or one of the drama's)")
    return profile.strip()


async def _form(request: Request) -> FormData:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raise HTTPException(415, "send multipart/form-data")
    return await request.form()


def _accepted(response: Response, job: Job) -> JobSummary:
    response.headers["Location"] = f"/api/v1/jobs/{job.id}"
    return summary(job)


@router.post("", status_code=202, response_model=JobSummary, responses=SUBMIT_ERRORS, openapi_extra={
    "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {"type": "object", "properties": {
        "archive": {"type": "string", "format": "binary", "description": "tar, tar.gz or zip of the drama folder"},
        "drama_toml": {"type": "string", "description": "or: drama.toml alone"},
        "profile": {"type": "string", "description": "default: the server's --profile"}}}}}}})
async def submit_drama(request: Request, response: Response, key: Key, store: StoreDep, runner: RunnerDep,
                       settings: SettingsDep, idempotency_key: Annotated[str | None, Header()] = None) -> JobSummary:
    """Build a drama: 202 + Location of the job. Bad input is a 422 with the message `fanren build` prints."""
    form = await _form(request)
    submission = drama_submission(await drama_upload(form), _profile(form, settings.profile))
    job, _ = await run_in_threadpool(submit, store, runner, settings, key, submission, idempotency_key)
    return _accepted(response, job)


@router.post("/novel", status_code=202, response_model=JobSummary, responses=SUBMIT_ERRORS, openapi_extra={
    "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {"type": "object", "properties": {
        "chapter": {"type": "string", "format": "binary", "description": "the chapter (.txt, UTF-8 or GB18030)"},
        "chapter_text": {"type": "string", "description": "or: the chapter's text"},
        "characters": {"type": "string", "description": "as `fanren split --characters`"},
        "language": {"type": "string", "enum": ["zh", "en"]},
        "max_shot_chars": {"type": "integer"},
        "profile": {"type": "string"}}}}}}})
async def submit_novel(request: Request, response: Response, key: Key, store: StoreDep, runner: RunnerDep,
                       settings: SettingsDep, idempotency_key: Annotated[str | None, Header()] = None) -> JobSummary:
    """A novel chapter, split into a drama (as `fanren split`, rules engine) and then built: the seed's
    full automation. GET the job's files/drama.toml for what the split wrote."""
    form = await _form(request)
    chapter = form.get("chapter")
    text = await chapter.read() if isinstance(chapter, UploadFile) else form.get("chapter_text")
    if isinstance(text, str):
        text = text.encode("utf-8")
    if not isinstance(text, bytes) or not text.strip():
        raise HTTPException(422, "send the chapter as a file field `chapter` or a text field `chapter_text`")
    if len(text) > MAX_CHAPTER:
        raise HTTPException(413, f"chapter: more than {MAX_CHAPTER >> 20} MiB")
    spec: dict[str, Any] = {"chapter": "chapter.txt"}
    for name in ("characters", "language"):
        value = form.get(name)
        if isinstance(value, str) and value.strip():
            spec[name] = value.strip()
    if spec.get("language") not in (None, "zh", "en"):
        raise HTTPException(422, f"language: expected zh or en, got {spec['language']!r}")
    shot_chars = form.get("max_shot_chars")
    if isinstance(shot_chars, str) and shot_chars.strip():
        if not shot_chars.strip().isdigit() or int(shot_chars) < 8:
            raise HTTPException(422, f"max_shot_chars: expected a whole number ≥ 8, got {shot_chars!r}")
        spec["max_shot_chars"] = int(shot_chars)
    profile = _profile(form, settings.profile)
    chapter_bytes = text

    def prepare(folder: Path) -> None:
        from ...split.source import decode_chapter

        decode_chapter(chapter_bytes, "chapter")   # an undecodable chapter is a 422 now
        folder.parent.mkdir(parents=True)
        (folder.parent / "chapter.txt").write_bytes(chapter_bytes)

    submission = Submission("novel", profile, spec, prepare,
                            request_digest("novel", profile, json.dumps(spec, sort_keys=True), chapter_bytes))
    job, _ = await run_in_threadpool(submit, store, runner, settings, key, submission, idempotency_key)
    return _accepted(response, job)


# ── following ───────────────────────────────────────────────────────────────


def _own(store: Store, key_id: str, job_id: str) -> Job:
    """The caller's job; another key's job is 404 like one that does not exist."""
    job = store.job(job_id, key_id)
    if job is None:
        raise HTTPException(404, f"no job {job_id!r}")
    return job


@router.get("", response_model=JobList)
async def list_jobs(key: Key, store: StoreDep, limit: Annotated[int, Query(ge=1, le=200)] = 20,
              cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
              status: Annotated[str | None, Query()] = None,
              batch_id: Annotated[str | None, Query()] = None) -> Response:
    """This key's jobs, newest first, a page at a time."""
    before = None
    if cursor is not None:
        if not cursor.isdigit():
            raise HTTPException(422, "cursor: pass the next_cursor of a previous page")
        before = int(cursor)
    jobs = store.jobs(key.id, limit=limit + 1, before=before, batch_id=batch_id, status=status)
    more = len(jobs) > limit
    jobs = jobs[:limit]
    return json_response(JobList(jobs=[summary(j) for j in jobs], next_cursor=str(jobs[-1].seq) if more else None))


@router.get("/{job_id}", response_model=JobDetail, responses={404: {"model": ErrorBody}})
async def get_job(job_id: str, key: Key, store: StoreDep, runner: RunnerDep) -> Response:
    """Status, progress, each node's state (queued, running, ran, cached, failed, skipped) and the report."""
    return json_response(detail(_own(store, key.id, job_id), store, runner))


@router.post("/{job_id}/cancel", status_code=202, response_model=JobSummary, responses={404: {"model": ErrorBody}})
def cancel_job(job_id: str, key: Key, store: StoreDep, runner: RunnerDep) -> JobSummary:
    """Cancel: a queued job at once; a running one at its next node boundary (running nodes finish and
    stay cached). A finished job is left as it is."""
    job = _own(store, key.id, job_id)
    if job.status not in TERMINAL:
        runner.cancel(job.id)
        job = store.request_cancel(job.id) or job
    return summary(job)


@router.get("/{job_id}/events", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}}}, 404: {"model": ErrorBody}})
async def job_events(job_id: str, key: Key, store: StoreDep,
                     last_event_id: Annotated[str | None, Header()] = None,
                     after: Annotated[int | None, Query(description="resume after this event id")] = None
                     ) -> StreamingResponse:
    """Server-sent events: `status`, `node`, `progress`; each has an id. A client that reconnects with
    Last-Event-ID (or ?after=) gets what it missed, then the rest. The stream ends after the job does."""
    job = await run_in_threadpool(_own, store, key.id, job_id)
    start = after if after is not None else int(last_event_id) if (last_event_id or "").isdigit() else 0

    async def stream() -> AsyncIterator[str]:
        last, quiet = start, 0.0
        yield "retry: 1000\n\n"
        while True:
            events = await run_in_threadpool(store.events, job.id, last)
            for event in events:
                last = event.id
                yield f"id: {event.id}\nevent: {event.type}\ndata: {json.dumps(event.data, ensure_ascii=False)}\n\n"
            if events:
                quiet = 0.0
                if any(e.type == "status" and e.data.get("status") in TERMINAL for e in events):
                    return
                continue
            current = await run_in_threadpool(store.job, job.id)
            if current is None or (current.status in TERMINAL
                                   and not await run_in_threadpool(store.events, job.id, last, 1)):
                return
            await asyncio.sleep(POLL)
            quiet += POLL
            if quiet >= HEARTBEAT:
                quiet = 0.0
                yield ": keep-alive\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


# ── files ───────────────────────────────────────────────────────────────────


@router.get("/{job_id}/files", responses={404: {"model": ErrorBody}})
def list_files(job_id: str, key: Key, store: StoreDep, runner: RunnerDep) -> dict[str, Any]:
    """The job's files now, and every node output of its last build (by node id)."""
    job = _own(store, key.id, job_id)
    return {"files": job_files(runner, job),
            "nodes": node_outputs(runner, job)}


@router.get("/{job_id}/files/{name:path}", response_class=FileResponse, responses={404: {"model": ErrorBody}})
def get_file(job_id: str, name: str, key: Key, store: StoreDep, runner: RunnerDep) -> FileResponse:
    """episode.mp4, episode.srt, episode.ass, storyboard.html, report.json or drama.toml; of a
    series job, <episode>/episode.mp4 (and the others, each episode's), report.json, season.json
    and series.toml."""
    job = _own(store, key.id, job_id)
    names = file_names(runner, job)
    if name not in names:
        raise HTTPException(404, f"no file {name!r} (files: {', '.join(names)})")
    path = job_file(runner, job, name)
    if path is None:
        raise HTTPException(404, f"job {job_id} has no {name} yet (status {job.status})")
    return FileResponse(path, filename=name.rpartition("/")[2])


@router.get("/{job_id}/nodes/{node_id:path}/{output}", response_class=FileResponse,
            responses={404: {"model": ErrorBody}})
def get_node_output(job_id: str, node_id: str, output: str, key: Key, store: StoreDep,
                    runner: RunnerDep) -> FileResponse:
    """Any node's output, e.g. nodes/keyframe:s01/image.png or nodes/line:s01:0/speech.wav (of a
    series job, by the full id: nodes/ep01/keyframe:s01/image.png)."""
    job = _own(store, key.id, job_id)
    path = node_output(runner, job, node_id, output)
    if path is None:
        raise HTTPException(404, f"job {job_id} has no output {output!r} of node {node_id!r}")
    return FileResponse(path, filename=output)
