#!/usr/bin/env python3
"""Cache benchmark: what a remote cache saves, what it costs a no-op build, how fast verify reads.

    .venv/bin/python bench/cache_bench.py --shots 24

Machine A renders a draft drama cold with a shared-folder remote (uploading everything); machine B
(a new checkout, an empty cache) pulls it all from the folder, machine C from an S3-compatible server
(moto's server mode on 127.0.0.1, if `moto[server]` is installed) holding the same objects. Then a
no-op build with and without the remote configured, and `fanren cache verify` on A's cache.
Every timing is wall-clock of the real `fanren` subprocess, interpreter start included.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_bench import make_drama


def fanren(*args: str | Path, env: dict[str, str] | None = None) -> tuple[float, str]:
    full = {k: v for k, v in os.environ.items() if k not in ("FANREN_CACHE_DIR", "FANREN_REMOTE_CACHE")}
    full.update(env or {})
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "fanren", *map(str, args)], env=full, check=False,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode not in (0, 1) or (proc.returncode == 1 and args[0] != "cache"):
        sys.exit(f"fanren {' '.join(map(str, args))} failed:\n{proc.stderr[-2000:]}")
    return seconds, proc.stdout


def counts(drama: Path) -> dict[str, int]:
    return json.loads((drama / "out" / "draft" / "report.json").read_text(encoding="utf-8"))["counts"]


def start_s3(shared: Path) -> tuple[subprocess.Popen[bytes], dict[str, str]] | None:
    try:
        import boto3
    except ModuleNotFoundError:
        return None
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            return None
        time.sleep(0.1)
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "bench",
           "AWS_SECRET_ACCESS_KEY": "bench", "FANREN_REMOTE_CACHE": "s3://bench/p"}
    s3 = boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], region_name="us-east-1",
                      aws_access_key_id="bench", aws_secret_access_key="bench")
    s3.create_bucket(Bucket="bench")
    for file in shared.rglob("*"):
        if file.is_file():
            s3.upload_file(str(file), "bench", f"p/{file.relative_to(shared)}")
    return proc, env


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shots", type=int, default=24)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        shared = work / "team-cache"
        shared.mkdir()
        folder_env = {"FANREN_REMOTE_CACHE": f"file://{shared}"}
        drama = {name: work / name / "drama" for name in ("a", "b", "c")}
        for folder in drama.values():
            make_drama(folder, args.shots)

        cold, _ = fanren("build", drama["a"], env=folder_env)
        print(f"A cold build, uploading to a shared folder:  {cold:6.2f} s  {counts(drama['a'])}")
        pulled, _ = fanren("build", drama["b"], env=folder_env)
        print(f"B empty cache, pulls from the shared folder: {pulled:6.2f} s  {counts(drama['b'])}")
        server = start_s3(shared)
        if server is not None:
            proc, s3_env = server
            try:
                pulled_s3, _ = fanren("build", drama["c"], env=s3_env)
                print(f"C empty cache, pulls from S3 (moto, local): {pulled_s3:6.2f} s  {counts(drama['c'])}")
            finally:
                proc.terminate()
                proc.wait()
        noop = min(fanren("build", drama["a"])[0] for _ in range(3))
        noop_remote = min(fanren("build", drama["a"], env=folder_env)[0] for _ in range(3))
        print(f"no-op build without a remote:                {noop:6.2f} s (best of 3)")
        print(f"no-op build with the shared-folder remote:   {noop_remote:6.2f} s (best of 3)")
        cache = drama["a"] / ".fanren-cache"
        size = sum(p.stat().st_size for p in (cache / "objects").glob("*/*"))
        verify, out = fanren("cache", "verify", drama["a"])
        print(f"cache verify: {verify:6.2f} s for {size / 1e6:.1f} MB ({size / 1e6 / verify:.0f} MB/s, "
              f"interpreter start included): {out.strip()}")


if __name__ == "__main__":
    main()
