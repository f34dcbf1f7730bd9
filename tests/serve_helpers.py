"""A real `fanren serve` process on 127.0.0.1 and the things its tests send it."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from conftest import REPO, fanren

TERMINAL = {"completed", "failed", "cancelled"}


class Server:
    """`fanren serve --port 0` in a subprocess; `url` once it listens. Its stderr is kept in `log`."""

    def __init__(self, data: Path, profile: str = "draft", *args: str) -> None:
        self.data, self.profile, self.args = data, profile, args
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.log: list[str] = []

    def start(self) -> Server:
        env = {k: v for k, v in os.environ.items() if k != "FANREN_CACHE_DIR"}
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        self.proc = subprocess.Popen([sys.executable, "-m", "fanren", "serve", "--port", "0", "--data", str(self.data),
                                      "--profile", self.profile, *self.args], env=env, cwd=REPO,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        ready = threading.Event()

        def read() -> None:
            assert self.proc is not None and self.proc.stderr is not None
            for line in self.proc.stderr:
                self.log.append(line)
                match = re.search(r"http://127\.0\.0\.1:(\d+)/docs", line)
                if match:
                    self.url = f"http://127.0.0.1:{match.group(1)}"
                if "Application startup complete" in line:
                    ready.set()
            ready.set()

        threading.Thread(target=read, daemon=True).start()
        assert ready.wait(60) and self.url, "".join(self.log)
        return self

    def key(self, name: str = "tester", *options: str) -> str:
        result = fanren("keys", "create", name, "--data", self.data, *options)
        assert result.code == 0, result.stderr
        return result.stdout.strip().splitlines()[-1]

    def client(self, key: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"X-API-Key": key} if key else {}, timeout=60)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no cleanup, as a crash or an OOM killer would."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)


def picture(size: tuple[int, int] = (320, 200), color: tuple[int, int, int] = (200, 80, 40)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


def drama_archive(files: dict[str, bytes | str], links: dict[str, str] | None = None) -> bytes:
    """A tar.gz of `files` (archive path → content), plus symlinks (path → target)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tar.addfile(info)
    return out.getvalue()


def wait_for(client: httpx.Client, job_id: str, timeout: float = 300, statuses: set[str] = TERMINAL
             ) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        if job["status"] in statuses:
            return job  # type: ignore[no-any-return]
        assert time.monotonic() < deadline, job
        time.sleep(0.1)


def sse(client: httpx.Client, path: str, last_event_id: int | None = None, stop_after: int | None = None
        ) -> Iterator[dict[str, Any]]:
    """The events of an SSE stream as {id, event, data}; stops after `stop_after` events or the end."""
    import json

    headers = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {}
    count = 0
    with client.stream("GET", path, headers=headers) as response:
        assert response.status_code == 200, response.read()
        event: dict[str, Any] = {}
        for line in response.iter_lines():
            if not line:
                if "data" in event:
                    yield event
                    count += 1
                    if stop_after is not None and count >= stop_after:
                        return
                event = {}
            elif line.startswith("id: "):
                event["id"] = int(line[4:])
            elif line.startswith("event: "):
                event["event"] = line[7:]
            elif line.startswith("data: "):
                event["data"] = json.loads(line[6:])
