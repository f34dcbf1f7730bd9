"""The request and response bodies: the OpenAPI schema at /docs is generated from these."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

Status = Literal["queued", "running", "completed", "failed", "cancelled"]


class ErrorBody(BaseModel):
    detail: str


class VideoRequest(BaseModel):
    """The seed's JSON form of POST /api/v1/videos/generate (the multipart form has the same fields)."""

    prompt: str = Field(min_length=1, max_length=4000)
    model_type: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    image_base64: str = Field(min_length=1, description="the picture, base64 (a data: URL prefix is allowed)")


class VideoTask(BaseModel):
    task_id: str
    status: Status
    progress: float = Field(ge=0, le=1)
    model_type: str
    engine: str = Field(description="the fanren engine that renders the clip under the server's profile")
    video_url: str | None = Field(None, description="/api/v1/files/videos/<task_id>.mp4 once completed")
    error: str | None = None
    created_at: float
    finished_at: float | None = None


class NodeStatus(BaseModel):
    id: str
    kind: str
    engine: str
    status: str = Field(description="queued, running, ran, cached, failed or skipped")
    seconds: float
    error: str | None = None


class JobLinks(BaseModel):
    self: str
    events: str
    files: str


class JobSummary(BaseModel):
    id: str
    kind: Literal["video", "drama", "novel"]
    profile: str
    status: Status
    progress: float
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    gpu_seconds: float
    batch_id: str | None = None
    links: JobLinks


class JobDetail(JobSummary):
    nodes: list[NodeStatus]
    report: dict[str, Any] | None = Field(None, description="out/<profile>/report.json of the build")
    files: list[str] = Field(description="names GET /api/v1/jobs/<id>/files/<name> serves now")


class JobList(BaseModel):
    jobs: list[JobSummary]
    next_cursor: str | None = Field(None, description="pass as ?cursor= for the next (older) page")


class BatchAccepted(BaseModel):
    batch_id: str
    jobs: list[JobSummary]


class KeyInfo(BaseModel):
    id: str
    name: str
    profiles: list[str] | None
    jobs_per_day: int | None
    gpu_seconds_per_day: float | None
    jobs_today: int
    gpu_seconds_today: float
    resets_at: str
