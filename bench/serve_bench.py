"""What `fanren serve` costs per request, how many draft jobs a minute it builds, and how fast an edit returns.

    python bench/serve_bench.py                        examples/xianxia, 50 clients, draft profile
    python bench/serve_bench.py --clients 50 --requests 40 --cpus 0,1

A `fanren serve --profile draft` process is started on a fresh data folder (pinned to --cpus with
taskset when it exists; the load generator runs on the same machine, so both share those cores).
Prints JSON lines:

    {"phase": "status", ...}   GET /api/v1/jobs/<id> from --clients concurrent clients: p50/p99 ms
    {"phase": "submit", ...}   POST /api/v1/jobs (the example as a tar.gz, already in the cache) from
                               --clients concurrent clients: p50/p99 ms (validation: load + compile)
    {"phase": "jobs", ...}     draft jobs a minute for the example: cold (every node renders) and
                               warm (a resubmit: every node cached)
    {"phase": "edit", ...}     s from submitting a one-line edit of the built example to its
                               completed job, against `fanren build` of the same edit from the CLI
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def archive(folder: Path, drama_text: str | None = None) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for path in sorted(folder.rglob("*")):
            relative = path.relative_to(folder)
            if relative.parts[0] in ("out", ".fanren-cache") or path.is_dir() or relative.name == "drama.lock":
                continue
            data = drama_text.encode() if drama_text is not None and relative.name == "drama.toml" and \
                len(relative.parts) == 1 else path.read_bytes()
            info = tarfile.TarInfo(str(relative))
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out.getvalue()


class Service:
    def __init__(self, data: Path, cpus: str | None) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        env.pop("FANREN_CACHE_DIR", None)
        self.data = data
        prefix = ["taskset", "-c", cpus] if cpus and shutil.which("taskset") else []
        self.proc = subprocess.Popen([*prefix, sys.executable, "-m", "fanren", "serve", "--port", "0", "--data",
                                      str(data), "--profile", "draft", "--max-queue", "100000",
                                      "--max-queue-per-key", "100000"],
                                     env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        assert self.proc.stderr is not None
        self.url = ""
        for line in self.proc.stderr:
            match = re.search(r"http://127\.0\.0\.1:(\d+)/docs", line)
            if match:
                self.url = f"http://127.0.0.1:{match.group(1)}"
            if "Application startup complete" in line:
                break
        assert self.url
        self.key = subprocess.run([sys.executable, "-m", "fanren", "keys", "create", "bench", "--data", str(data)],
                                  env=env, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


async def load(url: str, key: str, clients: int, requests: int, method: str, path: str,
               files: dict[str, Any] | None = None, interval: float = 0.0) -> list[float]:
    """Each of `clients` concurrent clients sends `requests` requests, one every `interval` seconds
    (0: back to back); the latency of each, in ms."""
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": key}, limits=limits, timeout=120) as client:
        async def one_client() -> None:
            await asyncio.sleep(random.uniform(0, interval))   # spread the clients' phases
            for _ in range(requests):
                started = time.perf_counter()
                response = await client.request(method, path, files=files)
                latencies.append((time.perf_counter() - started) * 1000)
                assert response.status_code in (200, 202), response.text
                await asyncio.sleep(max(0.0, interval - (time.perf_counter() - started)))

        await asyncio.gather(*(one_client() for _ in range(clients)))
    return latencies


def wait(client: httpx.Client, job_id: str) -> dict[str, Any]:
    while True:
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        if job["status"] in ("completed", "failed", "cancelled"):
            assert job["status"] == "completed", job
            return job  # type: ignore[no-any-return]
        time.sleep(0.02)


def submit(client: httpx.Client, payload: bytes) -> str:
    response = client.post("/api/v1/jobs", files={"archive": ("drama.tgz", payload)})
    assert response.status_code == 202, response.text
    return response.json()["id"]  # type: ignore[no-any-return]


def measure_jobs_and_edit(client: httpx.Client, args: argparse.Namespace, text: str, scratch: Path) -> None:
    """Draft jobs a minute, cold (a new drama seed each: every node renders) and warm (all cached);
    then one narration edit through the service against the same edit through the CLI."""
    started = time.monotonic()
    for n in range(args.cold):
        wait(client, submit(client, archive(args.drama, re.sub(r"(?m)^seed = \d+", f"seed = {9000 + n}",
                                                                 text))))
    cold = time.monotonic() - started
    payload = archive(args.drama)
    first = wait(client, submit(client, payload))
    started = time.monotonic()
    for _ in range(args.warm):
        wait(client, submit(client, payload))
    warm = time.monotonic() - started
    print(json.dumps({"phase": "jobs", "drama": args.drama.name, "nodes": len(first["nodes"]),
                      "cold_jobs": args.cold, "cold_jobs_per_minute": round(60 * args.cold / cold, 2),
                      "warm_jobs": args.warm, "warm_jobs_per_minute": round(60 * args.warm / warm, 1)}),
          flush=True)

    # the edit: one narration line of the built example, through the service and through the CLI
    line = re.search(r'(?m)^narration = "([^"]+)"', text)
    assert line is not None
    edited = text.replace(line.group(1), line.group(1) + "…", 1)
    started = time.monotonic()
    job = wait(client, submit(client, archive(args.drama, edited)))
    service_edit = time.monotonic() - started
    ran = sorted(n["id"] for n in job["nodes"] if n["status"] == "ran")
    cli_copy = scratch / "cli"
    shutil.copytree(args.drama, cli_copy, ignore=shutil.ignore_patterns("out", ".fanren-cache"))
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("FANREN_CACHE_DIR", None)
    subprocess.run([sys.executable, "-m", "fanren", "build", str(cli_copy), "-q"], env=env, check=True,
                   capture_output=True)
    (cli_copy / "drama.toml").write_text(edited, encoding="utf-8")
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "fanren", "build", str(cli_copy), "-q"], env=env, check=True,
                   capture_output=True)
    cli_edit = time.monotonic() - started
    print(json.dumps({"phase": "edit", "service_s": round(service_edit, 2), "cli_s": round(cli_edit, 2),
                      "ran": ran}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--drama", type=Path, default=REPO / "examples" / "xianxia")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=40, help="per client, for status")
    parser.add_argument("--interval", type=float, default=1.0,
                        help="seconds between two status requests of one client (a polling client); "
                             "the status phase also runs back to back (0)")
    parser.add_argument("--only-requests", action="store_true", help="skip the jobs and edit phases")
    parser.add_argument("--submits", type=int, default=4, help="per client, for submit")
    parser.add_argument("--cold", type=int, default=2, help="cold jobs (every node renders)")
    parser.add_argument("--warm", type=int, default=10, help="warm jobs (every node cached)")
    parser.add_argument("--cpus", default="0,1", help="taskset CPU list for the server")
    args = parser.parse_args()

    scratch = Path(tempfile.mkdtemp(prefix="fanren-serve-bench-"))
    service = Service(scratch / "data", args.cpus)
    text = (args.drama / "drama.toml").read_text(encoding="utf-8")
    try:
        with httpx.Client(base_url=service.url, headers={"X-API-Key": service.key}, timeout=600) as client:
            payload = archive(args.drama)
            if args.only_requests:
                first = wait(client, submit(client, payload))
            else:
                measure_jobs_and_edit(client, args, text, scratch)
                first = wait(client, submit(client, payload))
            job_id = first["id"]
        for interval in (args.interval, 0.0):
            started = time.perf_counter()
            status = asyncio.run(load(service.url, service.key, args.clients, args.requests, "GET",
                                      f"/api/v1/jobs/{job_id}", interval=interval))
            print(json.dumps({"phase": "status", "clients": args.clients, "interval_s": interval,
                              "requests": len(status), "per_s": round(len(status) / (time.perf_counter() - started)),
                              "p50_ms": round(statistics.median(status), 1),
                              "p99_ms": round(percentile(status, 0.99), 1)}), flush=True)
        started = time.perf_counter()
        submits = asyncio.run(load(service.url, service.key, args.clients, args.submits, "POST", "/api/v1/jobs",
                                   {"archive": ("drama.tgz", payload)}))
        print(json.dumps({"phase": "submit", "clients": args.clients, "requests": len(submits),
                          "per_s": round(len(submits) / (time.perf_counter() - started), 1),
                          "p50_ms": round(statistics.median(submits), 1),
                          "p99_ms": round(percentile(submits, 0.99), 1)}), flush=True)
    finally:
        service.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
