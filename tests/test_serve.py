"""`fanren serve` end to end: a real server process on 127.0.0.1, a real HTTP client.

The seed's API (keys, quotas, POST /api/v1/videos/generate, tasks, files) and the jobs API.
"""

from __future__ import annotations

import base64
import json
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from conftest import REPO, SMALL_DRAMA, fanren  # noqa: E402
from serve_helpers import Server, drama_archive, picture, sse, wait_for  # noqa: E402

from fanren.media import probe  # noqa: E402

GENERATE = "/api/v1/videos/generate"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(tmp_path_factory.mktemp("serve") / "data", "draft").start()
    yield running
    running.stop()


def generate(client, prompt: str = "a cat walks on the roof", **fields: str):  # type: ignore[no-untyped-def]
    return client.post(GENERATE, data={"prompt": prompt, **fields},
                       files={"image": ("cat.png", picture(), "image/png")})


# ── the command line ───────────────────────────────────────────────────────


def test_plain_cli_never_imports_the_service_stack() -> None:
    code = ("import sys; from fanren.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('LOADED', sorted(m for m in ('fastapi', 'uvicorn', 'starlette', 'multipart', 'httpx',"
            " 'fanren.serve.app') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert "  serve " in out and "  keys " in out
    assert out.strip().splitlines()[-1] == "LOADED []"


def test_keys_create_prints_the_key_alone_on_its_last_line_and_stores_only_its_hash(tmp_path: Path) -> None:
    result = fanren("keys", "create", "alice", "--data", tmp_path, "--jobs-per-day", "1")
    assert result.code == 0, result.stderr
    token = result.stdout.strip().splitlines()[-1]
    assert token.startswith("fr_") and " " not in token
    assert token.encode() not in (tmp_path / "fanren.db").read_bytes()
    listed = fanren("keys", "list", "--data", tmp_path)
    assert "alice" in listed.stdout and token not in listed.stdout
    revoked = fanren("keys", "revoke", "alice", "--data", tmp_path)
    assert revoked.code == 0 and "revoked" in revoked.stdout
    assert "revoked" in fanren("keys", "list", "--data", tmp_path).stdout
    missing = fanren("keys", "revoke", "bob", "--data", tmp_path)
    assert missing.code == 2 and "no key 'bob'" in missing.stderr


# ── auth ───────────────────────────────────────────────────────────────────


def test_auth_matrix(server: Server) -> None:
    valid = server.key("valid")
    revoked = server.key("to-revoke")
    assert fanren("keys", "revoke", "to-revoke", "--data", server.data).code == 0
    expired = server.key("short-lived", "--expires-in", "1s")
    time.sleep(1.2)
    with server.client() as anonymous:
        for path in ("/api/v1/jobs", "/api/v1/key"):
            missing = anonymous.get(path)
            assert missing.status_code == 401 and "missing API key" in missing.json()["detail"]
        assert generate(anonymous).status_code == 401
        assert anonymous.get("/api/v1/jobs", headers={"X-API-Key": "fr_00000000_nope"}).json() == {
            "detail": "invalid API key"}
        assert anonymous.get("/api/v1/jobs", headers={"X-API-Key": valid + "x"}).status_code == 401
        assert anonymous.get("/api/v1/jobs", headers={"X-API-Key": revoked}).json() == {"detail": "API key revoked"}
        assert anonymous.get("/api/v1/jobs", headers={"X-API-Key": expired}).json() == {"detail": "API key expired"}
        assert anonymous.get("/api/v1/jobs", headers={"X-API-Key": valid}).status_code == 200
        bearer = anonymous.get("/api/v1/key", headers={"Authorization": f"Bearer {valid}"})
        assert bearer.status_code == 200 and bearer.json()["name"] == "valid"
    assert valid not in "".join(server.log)


# ── the seed's endpoint ────────────────────────────────────────────────────


def test_seed_endpoint_multipart_end_to_end(server: Server) -> None:
    with server.client(server.key("seed")) as client:
        response = generate(client, params=json.dumps({"seed": 3}))
        assert response.status_code == 202, response.text
        task = response.json()
        assert task["status"] == "queued" and task["video_url"] is None
        assert response.headers["location"] == f"/api/v1/tasks/{task['task_id']}"
        wait_for(client, task["task_id"])
        done = client.get(f"/api/v1/tasks/{task['task_id']}").json()
        assert done["status"] == "completed" and done["progress"] == 1.0
        assert done["video_url"] == f"/api/v1/files/videos/{task['task_id']}.mp4"
        assert (done["model_type"], done["engine"]) == ("kenburns", "kenburns")
        video = client.get(done["video_url"])
        assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    path = server.data / "video.mp4"
    path.write_bytes(video.content)
    assert probe(path).size == (1280, 720)


def test_seed_endpoint_json_with_image_base64_and_the_given_picture_is_the_keyframe(server: Server) -> None:
    with server.client(server.key("seed-json")) as client:
        encoded = base64.b64encode(picture((64, 64), (10, 200, 30))).decode()
        response = client.post(GENERATE, json={"prompt": "一只猫在屋顶上走", "model_type": "svd-xt",
                                               "params": {"aspect": "1:1"}, "image_base64": encoded})
        assert response.status_code == 202, response.text
        task_id = response.json()["task_id"]
        job = wait_for(client, task_id)
        assert job["status"] == "completed", job
        assert {n["id"]: n["engine"] for n in job["nodes"]}["keyframe:video"] == "given"
        keyframe = client.get(f"/api/v1/jobs/{task_id}/nodes/keyframe:video/image.png")
        assert keyframe.status_code == 200
    from io import BytesIO

    from PIL import Image

    image = Image.open(BytesIO(keyframe.content)).convert("RGB")
    assert image.size == (960, 960) and image.getpixel((480, 480)) == (10, 200, 30)


def test_seed_endpoint_refuses_bad_input_with_4xx(server: Server) -> None:
    with server.client(server.key("bad-seed")) as client:
        unknown = generate(client, model_type="sora")
        assert unknown.status_code == 422
        assert unknown.json()["detail"] == ("unknown model_type 'sora' (known: cogvideox-5b, cogvideox1.5-5b, "
                                            "svd-xt, kenburns)")
        no_image = client.post(GENERATE, data={"prompt": "x", "image": "/etc/passwd"})
        assert no_image.status_code == 422 and "uploaded file" in no_image.json()["detail"]
        not_a_picture = client.post(GENERATE, data={"prompt": "x"}, files={"image": ("a.png", b"hello", "image/png")})
        assert not_a_picture.status_code == 422 and "not a picture" in not_a_picture.json()["detail"]
        bad_params = generate(client, params="{nope")
        assert bad_params.status_code == 422 and "params: not valid JSON" in bad_params.json()["detail"]
        bad_seed = generate(client, params=json.dumps({"seed": -1}))
        assert bad_seed.status_code == 422 and "params.seed" in bad_seed.json()["detail"]
        malformed = client.post(GENERATE, content=b"{not json", headers={"Content-Type": "application/json"})
        assert malformed.status_code == 422
        wrong_type = client.post(GENERATE, json={"prompt": 5, "image_base64": 7})
        assert wrong_type.status_code == 422
        bad_base64 = client.post(GENERATE, json={"prompt": "x", "image_base64": "%%%"})
        assert bad_base64.status_code == 422 and "base64" in bad_base64.json()["detail"]
        assert client.get("/api/v1/jobs").json()["jobs"] == []   # nothing was queued
        assert client.get("/api/v1/key").json()["jobs_today"] == 0


def test_jobs_per_day_quota_is_403_naming_the_quota_and_its_reset(server: Server) -> None:
    key = server.key("one-a-day", "--jobs-per-day", "1")
    with server.client(key) as client:
        assert generate(client).status_code == 202
        second = generate(client)
        assert second.status_code == 403
        tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT00:00:00Z")
        assert second.json()["detail"] == f"quota exceeded: jobs-per-day (1 of 1 used today); it resets at {tomorrow}"
        # the next UTC day: yesterday's usage no longer counts
        key_id = key.split("_")[1]
        with sqlite3.connect(server.data / "fanren.db") as db:
            yesterday = (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")
            db.execute("UPDATE usage SET day = ? WHERE key_id = ?", (yesterday, key_id))
        assert generate(client).status_code == 202
