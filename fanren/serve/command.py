"""`fanren serve` and `fanren keys`: loaded lazily, so the plain CLI never imports FastAPI or uvicorn."""

from __future__ import annotations

import logging
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import click

from ..cli import handles_errors
from ..errors import UsageError

data_option = click.option("--data", type=click.Path(file_okay=False, path_type=Path), default=Path("fanren-data"),
                           show_default=True, envvar="FANREN_SERVE_DATA",
                           help="The service's folder: fanren.db (keys, jobs, usage), jobs/, the shared cache/.")
DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhd]?)$")


def _seconds(text: str) -> float:
    match = DURATION.match(text.strip().lower())
    if match is None:
        raise click.BadParameter(f"expected a duration like 30d, 12h, 90m or 45s, got {text!r}")
    return float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on. Anything but loopback exposes the API: put TLS in front (docs/serve.md).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port (0: any free port; the chosen one is printed).")
@data_option
@click.option("--profile", "-p", default="final", show_default=True,
              help="The profile jobs render with when they name none: final (GPU models), draft (any machine), "
                   "smoke (tiny real models on CPU).")
@click.option("--max-queue", type=click.IntRange(1), default=100, show_default=True,
              help="Jobs queued or running, all keys together; past it submits get 429.")
@click.option("--max-queue-per-key", type=click.IntRange(1), default=20, show_default=True,
              help="Jobs queued or running for one key; past it its submits get 429.")
@click.option("--max-upload", default="256M", show_default=True, help="Largest request body (413 past it).")
@click.option("--jobs", "-j", type=click.IntRange(1, 64), default=2, show_default=True,
              help="CPU nodes (speech, mux) a build runs at once.")
@click.option("--requests-per-minute", type=click.IntRange(0), default=0, show_default=True,
              help="Requests one key may send a minute (429 + Retry-After past it); 0: no limit.")
@click.option("--gpus", metavar="all|0,1,...",
              help="Build every job's GPU nodes on one worker process per GPU, as `fanren build --gpus` "
                   "(default: one GPU, in the server's process, models kept loaded between jobs).")
@click.option("--executor", "executor_kind", type=click.Choice(["local", "ray"]), default="local",
              show_default=True, help="Where GPU nodes run: this machine, or a Ray cluster (docs/executors.md).")
@click.option("--address", help="The Ray cluster to join with --executor ray (e.g. auto).")
@handles_errors
def serve_command(host: str, port: int, data: Path, profile: str, max_queue: int, max_queue_per_key: int,
                  max_upload: str, jobs: int, requests_per_minute: int, gpus: str | None, executor_kind: str,
                  address: str | None) -> None:
    """Serve the build over HTTP: API keys, quotas, a persistent job queue, warm models.

    \b
    Examples:
      fanren keys create alice --jobs-per-day 100
      fanren serve --profile draft                   http://127.0.0.1:8000/docs
      fanren serve --profile final --data /srv/fanren
      fanren serve --profile final --gpus all        one worker per GPU, as fanren build --gpus

    One runner builds the jobs, oldest first, keeping models loaded between them; all jobs share one
    cache under --data, so a resubmitted edit renders only what changed. Jobs survive a restart.
    """
    import socket

    import uvicorn

    from ..cli import _parse_size
    from ..executors import ExecutorOptions, parse_gpus
    from .app import create_app
    from .deps import Settings

    executor = None
    if gpus is not None or executor_kind != "local":
        parse_gpus(gpus)  # a bad --gpus is a usage error now, not a failed job later
        executor = ExecutorOptions(executor_kind, gpus, address)
    limit = _parse_size(max_upload)
    assert limit is not None
    # job and key ids (never keys) go to stderr; the CLI's "fanren" logger shows only warnings
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    service_log = logging.getLogger("fanren.serve")
    service_log.addHandler(handler)
    service_log.setLevel(logging.INFO)
    service_log.propagate = False
    app = create_app(Settings(data=data.resolve(), profile=profile, max_queue=max_queue,
                              max_queue_per_key=max_queue_per_key, max_upload=limit, jobs=jobs,
                              requests_per_minute=requests_per_minute, executor=executor))
    try:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another with --port") from None
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"fanren serve: http://{shown}:{bound}/docs (profile {profile}, data {data.resolve()})", err=True)
    config = uvicorn.Config(app, log_level="info", access_log=False, timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])


@click.group("keys")
def keys_command() -> None:
    """API keys of `fanren serve`: create (the key is shown once), list, revoke."""


@keys_command.command("create")
@click.argument("name")
@data_option
@click.option("--jobs-per-day", type=click.IntRange(0), default=None, help="Jobs a day (UTC). Default: no limit.")
@click.option("--gpu-seconds-per-day", type=click.FloatRange(0), default=None,
              help="GPU-seconds a day (UTC), counted from nodes that actually ran on a GPU engine (cached "
                   "nodes are free). Default: no limit.")
@click.option("--profiles", default=None, metavar="P1,P2", help="Profiles the key may render. Default: any.")
@click.option("--expires-in", default=None, metavar="DURATION", help="e.g. 30d, 12h. Default: never.")
def keys_create(name: str, data: Path, jobs_per_day: int | None, gpu_seconds_per_day: float | None,
                profiles: str | None, expires_in: str | None) -> None:
    """Create a key named NAME. The key is printed once, alone on the last line; only its hash is kept.

    \b
    Example:
      KEY=$(fanren keys create alice --jobs-per-day 20 | tail -n1)
    """
    from .store import Store

    expires = time.time() + _seconds(expires_in) if expires_in else None
    store = Store(data / "fanren.db")
    key, token = store.create_key(name, jobs_per_day, gpu_seconds_per_day,
                                  [p.strip() for p in profiles.split(",") if p.strip()] if profiles else None,
                                  expires)
    click.echo(f"created key {key.id} ({name}); it is shown only now, keep it safe:", err=True)
    click.echo(token)


@keys_command.command("list")
@data_option
def keys_list(data: Path) -> None:
    """Every key: id, name, state, limits and today's usage."""
    from .store import Store

    store = Store(data / "fanren.db")
    click.echo(f"{'id':<9} {'name':<20} {'state':<8} {'jobs/day':>9} {'gpu-s/day':>10}  today")
    for key in store.all_keys():
        usage = store.usage(key.id)
        limit_jobs = "-" if key.jobs_per_day is None else str(key.jobs_per_day)
        limit_gpu = "-" if key.gpu_seconds_per_day is None else f"{key.gpu_seconds_per_day:g}"
        extra = f"  profiles {','.join(key.profiles)}" if key.profiles else ""
        if key.expires is not None and key.state() == "active":
            extra += "  expires " + datetime.fromtimestamp(key.expires, UTC).strftime("%Y-%m-%d %H:%M UTC")
        click.echo(f"{key.id:<9} {key.name:<20} {key.state():<8} {limit_jobs:>9} {limit_gpu:>10}  "
                   f"{usage.jobs} jobs, {usage.gpu_seconds:.1f} gpu-s{extra}")


@keys_command.command("revoke")
@click.argument("key")
@data_option
@handles_errors
def keys_revoke(key: str, data: Path) -> None:
    """Revoke KEY (its id or name): its requests get 401 from now on."""
    from .store import Store

    store = Store(data / "fanren.db")
    found = store.find_key(key)
    if found is None:
        raise UsageError(f"no key {key!r} (see `fanren keys list`)")
    store.revoke_key(found.id)
    click.echo(f"revoked key {found.id} ({found.name})")
