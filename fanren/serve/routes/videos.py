"""The seed's API: POST /api/v1/videos/generate, GET /api/v1/tasks/{task_id}, GET /api/v1/files/videos/…"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from ...errors import UsageError
from .. import seed
from ..deps import Key, RunnerDep, SettingsDep, StoreDep
from ..models import ErrorBody, VideoRequest, VideoTask
from ..submit import Submission, request_digest, submit
from ..uploads import check_picture
from ..views import clip_of, json_response, video_task

router = APIRouter(tags=["videos (the seed's API)"])

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "missing, unknown, revoked or expired key"},
    403: {"model": ErrorBody, "description": "a quota is used up (which one, and when it resets)"},
    413: {"model": ErrorBody, "description": "the body or the picture is too large"},
    422: {"model": ErrorBody, "description": "bad input (unknown model_type lists the known ones)"},
    429: {"model": ErrorBody, "description": "the queue is full; see Retry-After"},
}

FORM_SCHEMA = {
    "requestBody": {"content": {
        "multipart/form-data": {"schema": {"type": "object", "required": ["prompt", "image"], "properties": {
            "prompt": {"type": "string"}, "model_type": {"type": "string", "enum": list(seed.MODEL_TYPES)},
            "params": {"type": "string", "description": "a JSON object: seed, aspect, fps, language, and "
                                                         "options of the video engine (steps, guidance, …)"},
            "image": {"type": "string", "format": "binary"}}}},
        "application/json": {"schema": VideoRequest.model_json_schema()},
    }, "required": True},
}


def _invalid(message: str) -> HTTPException:
    return HTTPException(422, message)


async def _read(request: Request) -> tuple[str, str | None, dict[str, Any], bytes]:
    """(prompt, model_type, params, picture bytes) from a multipart form or a JSON body."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            body = VideoRequest.model_validate_json(await request.body())
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors())
            raise _invalid(problems) from None
        encoded = body.image_base64.split(",", 1)[1] if body.image_base64.startswith("data:") else body.image_base64
        try:
            picture = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise _invalid("image_base64: not valid base64") from None
        return body.prompt, body.model_type, body.params, picture
    if content_type not in ("multipart/form-data", "application/x-www-form-urlencoded"):
        raise HTTPException(415, "send multipart/form-data (prompt, model_type, params, file image) or "
                                 "application/json (prompt, model_type, params, image_base64)")
    form = await request.form()
    prompt = form.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise _invalid("prompt: expected a non-empty text field")
    if len(prompt) > 4000:
        raise _invalid("prompt: at most 4000 characters")
    model_type = form.get("model_type")
    if model_type is not None and not isinstance(model_type, str):
        raise _invalid("model_type: expected a text field")
    raw_params = form.get("params")
    params: Any = {}
    if raw_params is not None:
        if not isinstance(raw_params, str):
            raise _invalid("params: expected a JSON object as a text field")
        try:
            params = json.loads(raw_params) if raw_params.strip() else {}
        except json.JSONDecodeError as exc:
            raise _invalid(f"params: not valid JSON ({exc})") from None
    if not isinstance(params, dict):
        raise _invalid("params: expected a JSON object")
    image = form.get("image")
    if not isinstance(image, UploadFile):
        raise _invalid("image: expected an uploaded file (a path on the server is not accepted)")
    return prompt, model_type or None, params, await image.read()


@router.post("/videos/generate", status_code=202, response_model=VideoTask, responses=ERRORS,
             openapi_extra=FORM_SCHEMA)
async def generate(request: Request, response: Response, key: Key, store: StoreDep, runner: RunnerDep,
                   settings: SettingsDep,
                   idempotency_key: Annotated[str | None, Header()] = None) -> VideoTask:
    """Render a video from a picture and a prompt: 202 with `task_id`, `status` and (once done) `video_url`."""
    prompt, model_type, params, picture = await _read(request)
    model_type = model_type or seed.default_model_type(settings.profile)
    if model_type not in seed.MODEL_TYPES:
        raise _invalid(seed.unknown_model_type(model_type))

    def accept() -> tuple[Any, bool]:
        try:
            _, options = seed.split_params(params)
            engine, engine_options = seed.video_engine_spec(model_type, settings.profile, options)
            seed.make_video_engine(engine, engine_options)   # options it refuses: 422 now, not a failed job
        except UsageError as exc:
            raise _invalid(str(exc)) from None
        suffix = check_picture_or_422(picture)
        spec = {"model_type": model_type, "engine": engine, "options": engine_options, "prompt": prompt,
                "picture": f"{seed.PICTURE}{suffix}", "digest": request_digest(picture)}
        digest = request_digest("video", prompt, model_type, json.dumps(params, sort_keys=True), picture)
        submission = Submission("video", settings.profile, spec,
                                lambda folder: seed.write_seed_drama(folder, prompt, picture, suffix, params), digest)
        return submit(store, runner, settings, key, submission, idempotency_key)

    job, _ = await run_in_threadpool(accept)
    response.headers["Location"] = f"/api/v1/tasks/{job.id}"
    return video_task(job)


def check_picture_or_422(picture: bytes) -> str:
    from ..uploads import UploadError

    try:
        return check_picture(picture)
    except UploadError as exc:
        raise HTTPException(413 if exc.too_large else 422, str(exc)) from None


@router.get("/tasks/{task_id}", response_model=VideoTask, responses={404: {"model": ErrorBody}})
async def task(task_id: str, key: Key, store: StoreDep) -> Response:
    """A video task's status (queued, running, completed, failed, cancelled), progress and video_url."""
    job = store.job(task_id, key.id)
    if job is None or job.kind != "video":
        raise HTTPException(404, f"no task {task_id!r}")
    return json_response(video_task(job))


@router.get("/files/videos/{task_id}.mp4", response_class=FileResponse,
            responses={200: {"content": {"video/mp4": {}}}, 404: {"model": ErrorBody}})
def video_file(task_id: str, key: Key, store: StoreDep, runner: RunnerDep) -> FileResponse:
    """The video of a completed task: the clip the model_type's engine rendered from the picture."""
    job = store.job(task_id, key.id)
    if job is None or job.kind != "video":
        raise HTTPException(404, f"no task {task_id!r}")
    clip = clip_of(runner, job) if job.status == "completed" else None
    if clip is None:
        raise HTTPException(404, f"task {task_id} has no video (status {job.status})")
    return FileResponse(clip, media_type="video/mp4", filename=f"{task_id}.mp4")
