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
httpx = pytest.importorskip("httpx")

from conftest import REPO, SMALL_DRAMA, fanren
from serve_helpers import Server, drama_archive, picture, sse, wait_for

from fanren.media import probe

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
                                            "svd-xt, ltx-2, wan2.2-ti2v-5b, wan2.2-i2v-a14b, hunyuanvideo-1.5, "
                                            "kenburns)")
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


# ── the jobs API ───────────────────────────────────────────────────────────


def submit_drama(client, text: str = SMALL_DRAMA, **headers: str):  # type: ignore[no-untyped-def]
    archive = drama_archive({"drama/drama.toml": text})
    return client.post("/api/v1/jobs", files={"archive": ("drama.tgz", archive, "application/gzip")},
                       headers=headers)


def test_drama_job_end_to_end_with_nodes_report_and_files(server: Server) -> None:
    with server.client(server.key("drama")) as client:
        response = submit_drama(client)
        assert response.status_code == 202, response.text
        job_id = response.json()["id"]
        assert response.headers["location"] == f"/api/v1/jobs/{job_id}"
        job = wait_for(client, job_id)
        assert job["status"] == "completed", job
        nodes = {n["id"]: n for n in job["nodes"]}
        assert {"character:lin", "keyframe:s1", "clip:s3", "line:s2:1", "shot:s2", "episode", "storyboard"} <= set(nodes)
        assert {n["status"] for n in nodes.values()} <= {"ran", "cached"}
        assert job["report"]["profile"] == "draft" and len(job["report"]["nodes"]) == len(nodes)
        assert set(job["files"]) == {"episode.mp4", "episode.srt", "episode.ass", "storyboard.html", "report.json",
                                     "drama.toml"}
        episode = client.get(f"/api/v1/jobs/{job_id}/files/episode.mp4")
        assert episode.status_code == 200 and len(episode.content) > 1000
        assert "你为何而来" in client.get(f"/api/v1/jobs/{job_id}/files/episode.srt").text
        listed = client.get(f"/api/v1/jobs/{job_id}/files").json()
        assert listed["nodes"]["line:s2:1"] == ["cues.json", "speech.wav"]
        wav = client.get(f"/api/v1/jobs/{job_id}/nodes/line:s2:1/speech.wav")
        assert wav.status_code == 200 and wav.content[:4] == b"RIFF"
        assert client.get(f"/api/v1/jobs/{job_id}/files/secrets.txt").status_code == 404
        assert client.get(f"/api/v1/jobs/{job_id}/files/..%2F..%2Ffanren.db").status_code == 404

        # the same drama with one line edited: only what that line reaches runs again
        edited = submit_drama(client, SMALL_DRAMA.replace("你为何而来？", "你来做什么？")).json()["id"]
        again = wait_for(client, edited)
        ran = {n["id"] for n in again["nodes"] if n["status"] == "ran"}
        assert ran == {"line:s2:1", "shot:s2", "subtitles", "episode", "storyboard"}


def test_bad_dramas_get_the_clis_message_and_nothing_is_queued(server: Server) -> None:
    with server.client(server.key("bad-drama")) as client:
        typo = submit_drama(client, SMALL_DRAMA.replace('characters = ["lin"]', 'characters = ["linn"]'))
        assert typo.status_code == 422
        assert typo.json()["detail"].startswith("drama.toml: scenes[0].shots[0].characters[0]: ")
        assert "did you mean 'lin'" in typo.json()["detail"]
        not_utf8 = client.post("/api/v1/jobs", files={"drama_toml": ("drama.toml", "[drama]\ntitle = '试'\n"
                                                                    .encode("gb18030"))})
        assert not_utf8.status_code == 422 and "UTF-8" in not_utf8.json()["detail"]
        for name in ("../evil.txt", "/etc/evil.txt", "drama/../../evil.txt"):
            archive = drama_archive({"drama.toml": SMALL_DRAMA, name: "x"})
            bad = client.post("/api/v1/jobs", files={"archive": ("d.tgz", archive)})
            assert bad.status_code == 422, name
            assert "archive entry" in bad.json()["detail"]
        linked = drama_archive({"drama.toml": SMALL_DRAMA}, links={"refs/passwd.png": "/etc/passwd"})
        bad = client.post("/api/v1/jobs", files={"archive": ("d.tgz", linked)})
        assert bad.status_code == 422 and "is a link" in bad.json()["detail"]
        garbage = client.post("/api/v1/jobs", files={"archive": ("d.tgz", b"\x1f\x8b not really gzip")})
        assert garbage.status_code == 422
        profile = client.post("/api/v1/jobs", data={"profile": "fast"},
                              files={"archive": ("d.tgz", drama_archive({"drama.toml": SMALL_DRAMA}))})
        assert profile.status_code == 422 and "no profile named 'fast'" in profile.json()["detail"]
        assert client.get("/api/v1/jobs").json()["jobs"] == []
    assert not (server.data.parent / "evil.txt").exists() and not Path("/etc/evil.txt").exists()
    assert client.get  # the server is still up:
    with server.client(server.key("after-bad")) as client:
        assert client.get("/api/v1/key").status_code == 200


def test_a_series_job_builds_every_episode_and_serves_each_episodes_files(server: Server) -> None:
    from test_series import EPISODES, SERIES

    season = {"my-series/series.toml": SERIES,
              **{f"my-series/{eid}/drama.toml": text for eid, text in EPISODES.items()}}
    with server.client(server.key("series")) as client:
        typo = dict(season, **{"my-series/ep2/drama.toml": EPISODES["ep2"].replace('["lin"]', '["linn"]', 1)})
        bad = client.post("/api/v1/jobs", files={"archive": ("s.tgz", drama_archive(typo))})
        assert bad.status_code == 422
        assert bad.json()["detail"].startswith("ep2/drama.toml: scenes[0].shots[0].characters[0]: expected ")
        episodes_alone = {name.partition("/")[2]: text for name, text in season.items() if "/ep" in name}
        neither = client.post("/api/v1/jobs", files={"archive": ("s.tgz", drama_archive(episodes_alone))})
        assert (neither.status_code, neither.json()["detail"]) == (422, (
            "the archive has no drama.toml (or series.toml) at its top (or in its one top-level folder)"))
        assert client.get("/api/v1/jobs").json()["jobs"] == []

        response = client.post("/api/v1/jobs", files={"archive": ("s.tgz", drama_archive(season))})
        assert response.status_code == 202, response.text
        job = wait_for(client, response.json()["id"])
        assert job["status"] == "completed", job
        episodes = {n["id"] for n in job["nodes"] if n["id"].endswith("/episode")}
        assert episodes == {"ep1/episode", "ep2/episode", "ep10/episode"}
        exports = ["episode.mp4", "episode.srt", "episode.ass", "storyboard.html", "report.json"]
        files = [f"{e}/{name}" for e in ("ep1", "ep2", "ep10") for name in exports] + [
            "report.json", "season.json", "series.toml"]
        assert job["files"] == files
        assert client.get(f"/api/v1/jobs/{job['id']}/files").json()["files"] == files
        episode = client.get(f"/api/v1/jobs/{job['id']}/files/ep10/episode.mp4")
        assert episode.status_code == 200 and len(episode.content) > 1000
        assert "云海无边" in client.get(f"/api/v1/jobs/{job['id']}/files/ep10/episode.srt").text
        assert client.get(f"/api/v1/jobs/{job['id']}/files/season.json").json()["title"] == "试炼"
        for name in ("episode.mp4", "ep3/episode.mp4", "ep1/drama.toml"):
            missing = client.get(f"/api/v1/jobs/{job['id']}/files/{name}")
            assert missing.status_code == 404, name
            assert missing.json()["detail"].startswith(f"no file {name!r} (files: ep1/episode.mp4, "), name
        assert client.get(f"/api/v1/jobs/{job['id']}/files/ep1%2F..%2F..%2Ffanren.db").status_code == 404
        wav = client.get(f"/api/v1/jobs/{job['id']}/nodes/ep10/line:c1:0/speech.wav")
        assert wav.status_code == 200 and wav.content[:4] == b"RIFF"
        sheet = client.get(f"/api/v1/jobs/{job['id']}/nodes/character:lin/image.png")
        assert sheet.status_code == 200 and sheet.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_huge_bodies_are_413(tmp_path: Path) -> None:
    small = Server(tmp_path / "data", "draft", "--max-upload", "1M").start()
    try:
        with small.client(small.key()) as client:
            big = client.post("/api/v1/jobs", files={"archive": ("d.tgz", b"\0" * (2 << 20))})
            assert big.status_code == 413 and "1 MiB" in big.json()["detail"]
            head = b'--x\r\nContent-Disposition: form-data; name="archive"; filename="d.tgz"\r\n\r\n'
            chunks = [head, *[b"\0" * (512 << 10)] * 4, b"\r\n--x--\r\n"]   # no Content-Length: chunked
            streamed = client.post("/api/v1/jobs", content=iter(chunks),
                                   headers={"Content-Type": "multipart/form-data; boundary=x"})
            assert streamed.status_code == 413
            assert client.get("/api/v1/jobs").status_code == 200
    finally:
        small.stop()


def test_rate_limit_per_key_is_429_with_retry_after(tmp_path: Path) -> None:
    limited = Server(tmp_path / "data", "draft", "--requests-per-minute", "3").start()
    try:
        first, second = limited.key("first"), limited.key("second")
        with limited.client(first) as client:
            assert [client.get("/api/v1/key").status_code for _ in range(3)] == [200, 200, 200]
            refused = client.get("/api/v1/jobs")
            assert refused.status_code == 429 and 0 < int(refused.headers["retry-after"]) <= 60
            assert refused.json()["detail"].startswith("rate limit: 3 requests a minute for this key")
        with limited.client(second) as other:   # another key has its own window
            assert other.get("/api/v1/key").status_code == 200
    finally:
        limited.stop()


def test_idempotent_retry_returns_the_same_job(server: Server) -> None:
    with server.client(server.key("retry")) as client:
        first = submit_drama(client, **{"Idempotency-Key": "abc-1"})
        retried = submit_drama(client, **{"Idempotency-Key": "abc-1"})
        assert first.status_code == retried.status_code == 202
        assert first.json()["id"] == retried.json()["id"]
        other = submit_drama(client, SMALL_DRAMA.replace("山门", "石门"), **{"Idempotency-Key": "abc-1"})
        assert other.status_code == 422 and "Idempotency-Key" in other.json()["detail"]
        assert len(client.get("/api/v1/jobs").json()["jobs"]) == 1
        assert client.get("/api/v1/key").json()["jobs_today"] == 1
        wait_for(client, first.json()["id"])


def test_two_keys_cannot_see_each_others_jobs_or_files(server: Server) -> None:
    with server.client(server.key("a")) as a, server.client(server.key("b")) as b:
        job_id = submit_drama(a).json()["id"]
        wait_for(a, job_id)
        for path in (f"/api/v1/jobs/{job_id}", f"/api/v1/jobs/{job_id}/files", f"/api/v1/jobs/{job_id}/events",
                     f"/api/v1/jobs/{job_id}/files/episode.mp4", f"/api/v1/tasks/{job_id}",
                     f"/api/v1/jobs/{job_id}/nodes/episode/episode.mp4"):
            assert b.get(path).status_code == 404, path
        assert b.post(f"/api/v1/jobs/{job_id}/cancel").status_code == 404
        assert b.get("/api/v1/jobs").json()["jobs"] == []
        assert a.get(f"/api/v1/jobs/{job_id}/files/episode.mp4").status_code == 200


def test_listing_pages_with_a_cursor(server: Server) -> None:
    with server.client(server.key("lister")) as client:
        ids = [submit_drama(client).json()["id"] for _ in range(5)]
        page = client.get("/api/v1/jobs", params={"limit": 2}).json()
        seen = [j["id"] for j in page["jobs"]]
        while page["next_cursor"]:
            page = client.get("/api/v1/jobs", params={"limit": 2, "cursor": page["next_cursor"]}).json()
            seen += [j["id"] for j in page["jobs"]]
        assert seen == ids[::-1]
        assert client.get("/api/v1/jobs", params={"cursor": "zz"}).status_code == 422
        for job_id in ids:
            wait_for(client, job_id)


MANY_SHOTS = SMALL_DRAMA.split("[[scenes]]")[0] + "[[scenes]]\nid = \"long\"\nsetting = \"a long road\"\n" + "".join(
    f'\n[[scenes.shots]]\nid = "r{n}"\naction = "walking, step {n}"\nnarration = "第{n}步。"\n' for n in range(12)
) + '\n[profiles.draft]\nvideo = { engine = "kenburns", seconds = 2.0 }\n'


def test_cancel_a_queued_and_a_running_job(server: Server) -> None:
    with server.client(server.key("canceller")) as client:
        running = submit_drama(client, MANY_SHOTS.replace("seed = 7", "seed = 8")).json()["id"]
        queued = submit_drama(client, MANY_SHOTS.replace("seed = 7", "seed = 9")).json()["id"]
        wait_for(client, running, statuses={"running"})
        cancelled = client.post(f"/api/v1/jobs/{queued}/cancel")
        assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"
        assert client.post(f"/api/v1/jobs/{running}/cancel").status_code == 202
        job = wait_for(client, running)
        assert job["status"] == "cancelled", job
        statuses = {n["status"] for n in job["nodes"]}
        assert "skipped" in statuses or "queued" in statuses
        assert wait_for(client, queued)["nodes"] == []


def test_progress_events_resume_from_last_event_id(server: Server) -> None:
    with server.client(server.key("listener")) as client:
        job_id = submit_drama(client, MANY_SHOTS.replace("seed = 7", "seed = 10")).json()["id"]
        path = f"/api/v1/jobs/{job_id}/events"
        first = list(sse(client, path, stop_after=3))   # the client drops the connection after 3 events
        assert [e["event"] for e in first[:2]] == ["queued", "status"]
        rest = list(sse(client, path, last_event_id=first[-1]["id"]))
        everything = list(sse(client, path))
        assert [e["id"] for e in first + rest] == [e["id"] for e in everything]
        assert everything[-1]["event"] == "status" and everything[-1]["data"]["status"] == "completed"
        assert {e["event"] for e in everything} >= {"queued", "status", "node", "progress"}
        finished = [e["data"]["node"] for e in everything if e["event"] == "node" and e["data"]["status"] == "ran"]
        assert "episode" in finished
        query = list(sse(client, path + f"?after={everything[-2]['id']}"))
        assert [e["id"] for e in query] == [everything[-1]["id"]]


def test_novel_chapter_is_split_then_built(server: Server) -> None:
    chapter = ("第一章 山门\n\n林远走到山门前。雾很大。\n\n“你是谁？”守门的老人问。\n\n"
               "林远说：“我来拜师。”\n")
    with server.client(server.key("novelist")) as client:
        response = client.post("/api/v1/jobs/novel", files={"chapter": ("ch1.txt", chapter.encode("utf-8"))},
                               data={"characters": "林远,老人"})
        assert response.status_code == 202, response.text
        job = wait_for(client, response.json()["id"])
        assert job["status"] == "completed", job
        assert job["kind"] == "novel" and "episode.mp4" in job["files"]
        drama = client.get(f"/api/v1/jobs/{job['id']}/files/drama.toml").text
        assert "我来拜师" in drama
        empty = client.post("/api/v1/jobs/novel", data={"chapter_text": "  "})
        assert empty.status_code == 422


def test_batch_of_dramas(server: Server) -> None:
    with server.client(server.key("batcher")) as client:
        archives = [("archives", (f"d{n}.tgz", drama_archive({"drama.toml": SMALL_DRAMA.replace("seed = 7", f"seed = {n}")})))
                    for n in (21, 22, 23)]
        response = client.post("/api/v1/batches", files=archives, headers={"Idempotency-Key": "b1"})
        assert response.status_code == 202, response.text
        batch = response.json()
        retried = client.post("/api/v1/batches", files=archives, headers={"Idempotency-Key": "b1"})
        assert retried.status_code == 202 and retried.json()["batch_id"] == batch["batch_id"]
        assert [j["id"] for j in retried.json()["jobs"]] == [j["id"] for j in batch["jobs"]]
        assert len(batch["jobs"]) == 3 and response.headers["location"] == f"/api/v1/batches/{batch['batch_id']}"
        for job in batch["jobs"]:
            assert wait_for(client, job["id"])["status"] == "completed"
        listed = client.get(f"/api/v1/batches/{batch['batch_id']}").json()["jobs"]
        assert {j["id"] for j in listed} == {j["id"] for j in batch["jobs"]}
        bad = archives[:1] + [("archives", ("bad.tgz", drama_archive({"drama.toml": "[drama]\n"})))]
        refused = client.post("/api/v1/batches", files=bad)
        assert refused.status_code == 422 and refused.json()["detail"].startswith("bad.tgz: ")
        assert len(client.get("/api/v1/jobs").json()["jobs"]) == 3


@pytest.mark.parametrize("how", ["kill -9", "terminate"])
def test_stop_mid_job_then_restart_finishes_queued_and_running_jobs_keeping_finished_nodes(
        tmp_path: Path, how: str) -> None:
    """kill -9: nothing runs at exit. terminate: the running job stops at a node boundary and is queued
    again (not cancelled)."""
    first = Server(tmp_path / "data", "draft").start()
    key = first.key()
    try:
        with first.client(key) as client:
            running = submit_drama(client, MANY_SHOTS).json()["id"]
            queued = submit_drama(client).json()["id"]
            deadline = time.monotonic() + 120
            while not any(n["status"] == "ran" for n in client.get(f"/api/v1/jobs/{running}").json()["nodes"]):
                assert time.monotonic() < deadline
                time.sleep(0.05)
            before = {n["id"] for n in client.get(f"/api/v1/jobs/{running}").json()["nodes"] if n["status"] == "ran"}
            assert client.get(f"/api/v1/jobs/{queued}").json()["status"] == "queued"
    finally:
        first.kill() if how == "kill -9" else first.stop()
    if how == "terminate":
        assert "goes back to the queue: the server is stopping" in "".join(first.log)
    second = Server(tmp_path / "data", "draft").start()
    try:
        with second.client(key) as client:
            done = wait_for(client, running)
            assert done["status"] == "completed", done
            after = {n["id"]: n["status"] for n in done["nodes"]}
            assert all(after[node] == "cached" for node in before), (before, after)
            assert wait_for(client, queued)["status"] == "completed"
            assert client.get(f"/api/v1/jobs/{running}/files/episode.mp4").status_code == 200
    except httpx.HTTPError as exc:  # the restarted server went away: its log says why
        raise AssertionError("".join(second.log)) from exc
    finally:
        second.stop()


def test_50_concurrent_submissions_are_bounded_by_the_queue_and_none_is_lost(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    server = Server(tmp_path / "data", "draft", "--max-queue", "8", "--max-queue-per-key", "50").start()
    try:
        key = server.key()

        def one(n: int) -> tuple[int, str | None, str | None]:
            with server.client(key) as client:
                response = client.post("/api/v1/jobs", data={"drama_toml": SMALL_DRAMA},
                                       headers={"Idempotency-Key": f"submit-{n}"})
                body = response.json()
                return response.status_code, body.get("id"), response.headers.get("retry-after")

        with ThreadPoolExecutor(50) as pool:
            answers = list(pool.map(one, range(50)))
        codes = [code for code, _, _ in answers]
        assert set(codes) <= {202, 429}, codes
        assert codes.count(429) > 0 and codes.count(202) >= 8
        assert all(retry == "5" for code, _, retry in answers if code == 429)
        accepted = {job_id for code, job_id, _ in answers if code == 202}
        with server.client(key) as client:
            for job_id in accepted:
                assert wait_for(client, job_id)["status"] == "completed"
            listed = client.get("/api/v1/jobs", params={"limit": 200}).json()["jobs"]
            assert {j["id"] for j in listed} == accepted
            assert client.get("/api/v1/key").json()["jobs_today"] == len(accepted)
    finally:
        server.stop()


@pytest.mark.slow
def test_seed_endpoint_on_the_smoke_profile_and_a_repeat_is_all_cached(tmp_path: Path) -> None:
    pytest.importorskip("diffusers")
    server = Server(tmp_path / "data", "smoke").start()
    try:
        with server.client(server.key("first")) as client:
            response = generate(client)  # no model_type: the final profile's video model, LTX-2
            assert response.status_code == 202, response.text
            assert (response.json()["model_type"], response.json()["engine"]) == ("ltx-2", "ltx2")
            job = wait_for(client, response.json()["task_id"], timeout=600)
            assert job["status"] == "completed", job
            assert {n["id"]: n["engine"] for n in job["nodes"]}["clip:video"] == "ltx2"
            video = client.get(f"/api/v1/files/videos/{job['id']}.mp4")
            (tmp_path / "clip.mp4").write_bytes(video.content)
            clip = probe(tmp_path / "clip.mp4")
            assert (clip.size, clip.frames, clip.fps) == ((96, 64), 9, 24)
            # GPU-seconds are the seconds of nodes that ran on a GPU engine: the clip on a GPU, none on a CPU
            gpu = sum(n["seconds"] for n in job["nodes"] if n["status"] == "ran" and n["engine"] == "ltx2")
            assert job["gpu_seconds"] in (0.0, pytest.approx(gpu, abs=0.01))
        with server.client(server.key("second")) as client:
            again = wait_for(client, generate(client, model_type="ltx-2").json()["task_id"], timeout=600)
            assert again["status"] == "completed" and again["gpu_seconds"] == 0
            assert {n["status"] for n in again["nodes"]} == {"cached"}
    finally:
        server.stop()


@pytest.mark.slow
def test_serve_gpus_builds_jobs_on_gpu_worker_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`fanren serve --gpus` hands GPU nodes to the same executors as `fanren build --gpus` (two fake
    GPUs: worker processes running the smoke profile's engines on the CPU)."""
    pytest.importorskip("diffusers")
    monkeypatch.setenv("FANREN_FAKE_GPUS", "2")
    server = Server(tmp_path / "data", "smoke", "--gpus", "0,1").start()
    try:
        with server.client(server.key("multi")) as client:
            response = generate(client, model_type="cogvideox-5b")
            assert response.status_code == 202, response.text
            job = wait_for(client, response.json()["task_id"], timeout=600)
            assert job["status"] == "completed", (job, "".join(server.log))
            workers = job["report"]["workers"]
            assert set(workers) == {"gpu0", "gpu1"}
            assert sorted(node for w in workers.values() for node in w["nodes"]) == ["clip:video"]
            assert all(load <= 1 for w in workers.values() for load in w["loads"].values())
            video = client.get(f"/api/v1/files/videos/{job['id']}.mp4")
            (tmp_path / "clip.mp4").write_bytes(video.content)
            assert probe(tmp_path / "clip.mp4").frames == 9
    finally:
        server.stop()


def test_gpu_seconds_quota_is_403_once_spent(server: Server) -> None:
    key = server.key("gpu-budget", "--gpu-seconds-per-day", "30")
    with server.client(key) as client:
        assert generate(client).status_code == 202
        with sqlite3.connect(server.data / "fanren.db") as db:   # as if its jobs had spent 30.5 s on a GPU
            db.execute("UPDATE usage SET gpu_seconds = 30.5 WHERE key_id = ?", (key.split("_")[1],))
        refused = generate(client)
        assert refused.status_code == 403
        assert refused.json()["detail"].startswith("quota exceeded: gpu-seconds-per-day (30.5 of 30 used today); "
                                                   "it resets at ")


def test_openapi_schema_lists_every_endpoint(server: Server) -> None:
    with server.client() as client:
        spec = client.get("/openapi.json").json()
        assert client.get("/docs").status_code == 200
    assert {"/api/v1/videos/generate", "/api/v1/tasks/{task_id}", "/api/v1/files/videos/{task_id}.mp4",
            "/api/v1/jobs", "/api/v1/jobs/novel", "/api/v1/jobs/{job_id}", "/api/v1/jobs/{job_id}/cancel",
            "/api/v1/jobs/{job_id}/events", "/api/v1/jobs/{job_id}/files", "/api/v1/jobs/{job_id}/files/{name}",
            "/api/v1/jobs/{job_id}/nodes/{node_id}/{output}", "/api/v1/batches", "/api/v1/batches/{batch_id}",
            "/api/v1/key"} == set(spec["paths"])
    generate_body = spec["paths"]["/api/v1/videos/generate"]["post"]["requestBody"]["content"]
    assert set(generate_body) == {"multipart/form-data", "application/json"}
