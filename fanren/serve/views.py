"""Jobs as clients see them: the response models built from store rows, and where a job's files are."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi import Response
from pydantic import BaseModel

from ..build import EXPORTS
from ..lockfile import read_lock
from ..project import DRAMA_FILE
from ..season import SEASON_FILE
from ..series import SERIES_FILE
from . import seed
from .models import JobDetail, JobLinks, JobSummary, NodeStatus, VideoTask
from .runner import Runner
from .store import COMPLETED, Job, Store

API = "/api/v1"
# What GET /jobs/<id>/files/<name> serves: the exports, the build report, and the drama itself
# (for a novel job, the drama.toml its chapter was split into). A series job serves each episode's
# as <episode>/<name>, and the season's report, season.json and series.toml.
FILES = (*EXPORTS, "report.json", DRAMA_FILE)
EPISODE_FILES = (*EXPORTS, "report.json")
SEASON_FILES = ("report.json", SEASON_FILE, SERIES_FILE)


def json_response(model: BaseModel) -> Response:
    """The model as JSON, serialized once: the routes that clients poll skip FastAPI's second
    validation of what they return (the model was validated when it was built)."""
    return Response(model.model_dump_json(), media_type="application/json")


def links(job: Job) -> JobLinks:
    base = f"{API}/jobs/{job.id}"
    return JobLinks(self=base, events=f"{base}/events", files=f"{base}/files")


def summary(job: Job) -> JobSummary:
    return JobSummary(id=job.id, kind=job.kind, profile=job.profile, status=job.status,  # type: ignore[arg-type]
                      progress=round(job.progress, 4), created_at=job.created, started_at=job.started,
                      finished_at=job.finished, error=job.error, gpu_seconds=round(job.gpu_seconds, 3),
                      batch_id=job.batch_id, links=links(job))


def detail(job: Job, store: Store, runner: Runner) -> JobDetail:
    nodes = [NodeStatus(id=n.node_id, kind=n.kind, engine=n.engine, status=n.status, seconds=round(n.seconds, 3),
                        error=n.error) for n in store.nodes(job.id)]
    return JobDetail(**summary(job).model_dump(), nodes=nodes, report=job.report,
                     files=job_files(runner, job))


def video_url(job: Job) -> str:
    return f"{API}/files/videos/{job.id}.mp4"


def video_task(job: Job) -> VideoTask:
    return VideoTask(task_id=job.id, status=job.status, progress=round(job.progress, 4),  # type: ignore[arg-type]
                     model_type=job.spec["model_type"], engine=job.spec["engine"],
                     video_url=video_url(job) if job.status == COMPLETED else None, error=job.error,
                     created_at=job.created, finished_at=job.finished)


def job_root(runner: Runner, job: Job) -> Path:
    return runner.job_folder(job.id) / "drama"


def file_names(runner: Runner, job: Job) -> list[str]:
    """Every name GET /jobs/<id>/files/<name> may serve for `job`: FILES, or of a series job, the
    season's files and each episode's (`ep01/episode.mp4`), in series order."""
    root = job_root(runner, job)
    if not (root / SERIES_FILE).is_file():
        return list(FILES)
    try:
        season = json.loads((root / "out" / job.profile / SEASON_FILE).read_text(encoding="utf-8"))
        episodes = [str(e["id"]) for e in season["episodes"]]
    except (OSError, ValueError, KeyError, TypeError):
        episodes = []  # not built yet: the season's files only
    return [f"{episode}/{name}" for episode in episodes for name in EPISODE_FILES] + list(SEASON_FILES)


def job_files(runner: Runner, job: Job) -> list[str]:
    """The names of the files the job has now."""
    return [name for name in file_names(runner, job) if job_file(runner, job, name) is not None]


def job_file(runner: Runner, job: Job, name: str) -> Path | None:
    """The file `name` of `file_names`, if the job has it now."""
    if name not in file_names(runner, job):
        return None
    root = job_root(runner, job)
    path = root / name if name in (DRAMA_FILE, SERIES_FILE) else root / "out" / job.profile / name
    return path if path.is_file() else None


def node_output(runner: Runner, job: Job, node_id: str, output: str) -> Path | None:
    """A node's output as the job's last build recorded it in drama.lock (in the shared cache)."""
    entries = read_lock(job_root(runner, job)).get(job.profile, {})
    entry = entries.get(node_id)
    if entry is None or output not in entry.outputs:
        return None
    path = runner.cache.object_path(entry.outputs[output])
    return path if path.is_file() else None


def node_outputs(runner: Runner, job: Job) -> dict[str, list[str]]:
    entries = read_lock(job_root(runner, job)).get(job.profile, {})
    return {node_id: sorted(entry.outputs) for node_id, entry in entries.items()}


def clip_of(runner: Runner, job: Job) -> Path | None:
    return node_output(runner, job, seed.CLIP, "clip.mp4")
