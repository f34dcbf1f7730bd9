"""The remote tier: an S3-compatible server (moto's server mode on 127.0.0.1) and a shared folder.

"Two machines" are two drama checkouts with their own cache folders sharing one remote. Faults
(server down, 500s, slow answers, truncated or poisoned objects) must end in a warning and a local
run, never in a wrong output.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import shutil
import socket
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SMALL_DRAMA, fanren, ran, report, write_drama

SECRET = "s3cr3t-never-printed"
ALL_NODES = {"character:lin", "character:elder", "keyframe:s1", "keyframe:s2", "keyframe:s3", "clip:s1",
             "clip:s2", "clip:s3", "line:s1:0", "line:s2:0", "line:s2:1", "line:s3:0", "shot:s1", "shot:s2",
             "shot:s3", "subtitles", "episode", "storyboard"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the S3 server exited"
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError("the S3 server did not start")


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    pytest.importorskip("moto.server", reason="the S3 tests need the test extra: moto[server] and boto3")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port(port, proc)
        endpoint = f"http://127.0.0.1:{port}"
        client(endpoint).create_bucket(Bucket="team")
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def client(endpoint: str):  # type: ignore[no-untyped-def]
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                        aws_access_key_id="test", aws_secret_access_key=SECRET)


def s3_env(endpoint: str, prefix: str) -> dict[str, str]:
    return {"FANREN_REMOTE_CACHE": f"s3://team/{prefix}", "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": SECRET}


def keys_under(endpoint: str, prefix: str) -> dict[str, int]:
    listing = client(endpoint).list_objects_v2(Bucket="team", Prefix=prefix + "/")
    return {o["Key"][len(prefix) + 1:]: o["Size"] for o in listing.get("Contents", [])}


def machine(tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A fresh checkout of the small drama and its own cache folder."""
    return write_drama(tmp_path / name / "drama"), tmp_path / name / "cache"


def build(drama: Path, cache: Path, env: dict[str, str], *extra: str) -> str:
    result = fanren("build", drama, "--cache-dir", cache, *extra, env=env)
    assert result.code == 0, result.stderr
    assert SECRET not in result.stdout + result.stderr
    return result.stderr


def lock_of(drama: Path) -> dict[str, dict]:
    return tomllib.loads((drama / "drama.lock").read_text(encoding="utf-8"))["draft"]


@pytest.fixture(scope="module")
def uploaded(s3_endpoint: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """Machine A built the small drama against the S3 remote under prefix `base`."""
    drama, cache = machine(tmp_path_factory.mktemp("a"), "a")
    build(drama, cache, s3_env(s3_endpoint, "base"))
    assert ran(drama) == ALL_NODES
    return drama, "base"


def copy_prefix(endpoint: str, source: str, target: str) -> None:
    s3 = client(endpoint)
    for name in keys_under(endpoint, source):
        s3.copy_object(Bucket="team", Key=f"{target}/{name}", CopySource={"Bucket": "team", "Key": f"{source}/{name}"})


def test_two_machines_sharing_an_s3_remote_render_each_key_once(uploaded: tuple[Path, str], s3_endpoint: str,
                                                                tmp_path: Path) -> None:
    first, prefix = uploaded
    stored = keys_under(s3_endpoint, prefix)
    records = {n for n in stored if n.startswith("ac/")}
    assert records == {f"ac/{e['key']}.json" for e in lock_of(first).values()}
    objects = {n for n in stored if n.startswith("cas/")}
    assert len(objects) == len({d for e in lock_of(first).values() for d in e["outputs"].values()})

    second, cache = machine(tmp_path, "b")
    status = fanren("status", second, "--cache-dir", cache, "--json", env=s3_env(s3_endpoint, prefix))
    assert status.code == 0, status.stderr
    assert '"remote": false' not in status.stdout and status.stdout.count('"remote": true') == len(ALL_NODES)

    build(second, cache, s3_env(s3_endpoint, prefix))
    assert ran(second) == set()
    assert report(second)["counts"] == {"ran": 0, "local_hits": 0, "remote_hits": 18, "failed": 0, "skipped": 0}
    assert (second / "out/draft/episode.mp4").read_bytes() == (first / "out/draft/episode.mp4").read_bytes()
    assert keys_under(s3_endpoint, prefix) == stored  # nothing uploaded twice, nothing new

    # an edit on machine B renders only what changed and uploads it; machine C pulls all of it
    edited = SMALL_DRAMA.replace("他点了点头。", "他沉默不语。")
    (second / "drama.toml").write_text(edited, encoding="utf-8")
    build(second, cache, s3_env(s3_endpoint, prefix))
    third, cache3 = machine(tmp_path, "c")
    (third / "drama.toml").write_text(edited, encoding="utf-8")
    build(third, cache3, s3_env(s3_endpoint, prefix))
    assert ran(third) == set()
    assert report(third)["counts"]["remote_hits"] == 18
    assert (third / "out/draft/episode.mp4").read_bytes() == (second / "out/draft/episode.mp4").read_bytes()


def test_a_truncated_remote_object_is_a_miss_and_is_repaired(uploaded: tuple[Path, str], s3_endpoint: str,
                                                            tmp_path: Path) -> None:
    first, base = uploaded
    copy_prefix(s3_endpoint, base, "truncated")
    clip = next(iter(boto_record(s3_endpoint, "truncated", lock_of(first)["clip:s1"]["key"])["outputs"].values()))
    s3 = client(s3_endpoint)
    whole = s3.get_object(Bucket="team", Key=f"truncated/cas/{clip['sha256']}")["Body"].read()
    s3.put_object(Bucket="team", Key=f"truncated/cas/{clip['sha256']}", Body=whole[: len(whole) // 2])

    second, cache = machine(tmp_path, "b")
    stderr = build(second, cache, s3_env(s3_endpoint, "truncated"))
    assert (f"warning: remote cache s3://team/truncated: object {clip['sha256']} (clip.mp4 of clip:s1) does not "
            f"match its record ({len(whole) // 2} bytes, expected {len(whole)}); not used, the node runs here") \
        in stderr
    assert ran(second) == {"clip:s1"}
    assert report(second)["counts"]["remote_hits"] == 17
    assert (second / "out/draft/episode.mp4").read_bytes() == (first / "out/draft/episode.mp4").read_bytes()
    # the node that ran uploaded its (good) object over the bad one
    repaired = s3.get_object(Bucket="team", Key=f"truncated/cas/{clip['sha256']}")["Body"].read()
    assert repaired == whole


def boto_record(endpoint: str, prefix: str, key: str) -> dict:
    return json.loads(client(endpoint).get_object(Bucket="team", Key=f"{prefix}/ac/{key}.json")["Body"].read())


def test_remote_read_only_pulls_but_never_uploads(uploaded: tuple[Path, str], s3_endpoint: str,
                                                  tmp_path: Path) -> None:
    _, base = uploaded
    copy_prefix(s3_endpoint, base, "readonly")
    before = keys_under(s3_endpoint, "readonly")
    second, cache = machine(tmp_path, "pr")
    (second / "drama.toml").write_text(SMALL_DRAMA.replace("长老拦住了她。", "长老挡住了她。"), encoding="utf-8")
    build(second, cache, s3_env(s3_endpoint, "readonly"), "--remote-read-only")
    assert ran(second) == {"line:s2:0", "shot:s2", "subtitles", "episode", "storyboard"}
    assert report(second)["counts"]["remote_hits"] == 13
    assert keys_under(s3_endpoint, "readonly") == before


# ── faults: each ends in one warning and a local run ─────────────────────────


class _Failing(http.server.BaseHTTPRequestHandler):
    def _fail(self) -> None:
        body = b"<Error><Code>InternalError</Code><Message>We encountered an internal error</Message></Error>"
        self.send_response(500)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_PUT = do_HEAD = do_POST = _fail

    def log_message(self, *args: object) -> None: ...


@pytest.fixture
def failing_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts connections and never answers: a remote that is far too slow."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    listener.close()


@pytest.mark.parametrize("fault", ["down", "500", "slow"])
def test_a_remote_that_cannot_answer_is_one_warning_and_a_local_build(fault: str, request: pytest.FixtureRequest,
                                                                      small_drama: Path, tmp_path: Path) -> None:
    pytest.importorskip("boto3", reason="s3:// needs the remote extra")
    endpoint = {"down": lambda: f"http://127.0.0.1:{free_port()}",
                "500": lambda: request.getfixturevalue("failing_server"),
                "slow": lambda: request.getfixturevalue("silent_server")}[fault]()
    env = {**s3_env(endpoint, "p"), "FANREN_REMOTE_TIMEOUT": "1"}
    cache = tmp_path / "empty-cache"
    started = time.monotonic()
    stderr = build(small_drama, cache, env)
    assert time.monotonic() - started < 300  # bounded: the remote is given up after its first failure
    warnings = [line for line in stderr.splitlines() if line.startswith("warning: remote cache")]
    reason = {"down": "EndpointConnectionError", "500": "the server answered 500 InternalError",
              "slow": "ReadTimeoutError"}[fault]
    assert len(warnings) == 1 and warnings[0].startswith(f"warning: remote cache s3://team/p cannot be used ({reason}")
    assert warnings[0].endswith("); continuing without it: nodes run here")
    assert ran(small_drama) == ALL_NODES
    assert report(small_drama)["counts"]["remote_hits"] == 0


# ── a shared folder ──────────────────────────────────────────────────────────


def test_a_shared_folder_remote_and_a_poisoned_object(small_drama: Path, tmp_path: Path) -> None:
    shared = tmp_path / "team-cache"
    shared.mkdir()
    env = {"FANREN_REMOTE_CACHE": f"file://{shared}"}
    first, cache = machine(tmp_path, "a")
    build(first, cache, env)
    assert len(list((shared / "ac").iterdir())) == len(ALL_NODES)

    # someone with write access replaces a keyframe's bytes with others of the same size
    keyframe = next(iter(json.loads(
        (shared / "ac" / f"{lock_of(first)['keyframe:s2']['key']}.json").read_text())["outputs"].values()))
    poisoned = shared / "cas" / keyframe["sha256"]
    good = poisoned.read_bytes()
    poisoned.write_bytes(bytes(reversed(good)))
    assert hashlib.sha256(poisoned.read_bytes()).hexdigest() != keyframe["sha256"]

    second, cache2 = machine(tmp_path, "b")
    stderr = build(second, cache2, env)
    assert f"object {keyframe['sha256']} (image.png of keyframe:s2) does not match its record" in stderr
    assert ran(second) == {"keyframe:s2"}
    assert (second / "out/draft/episode.mp4").read_bytes() == (first / "out/draft/episode.mp4").read_bytes()
    assert poisoned.read_bytes() == good  # re-uploaded by the machine that rendered it


def test_a_shared_folder_that_is_not_mounted_is_a_warning(small_drama: Path, tmp_path: Path) -> None:
    env = {"FANREN_REMOTE_CACHE": f"file://{tmp_path / 'not-mounted'}"}
    stderr = build(small_drama, tmp_path / "cache", env)
    assert (f"warning: remote cache file://{tmp_path / 'not-mounted'} cannot be used (the folder "
            f"{tmp_path / 'not-mounted'} does not exist (not mounted?)); continuing without it: nodes run here\n"
            in stderr)
    assert ran(small_drama) == ALL_NODES


def test_remote_in_drama_toml_and_a_bad_url(tmp_path: Path) -> None:
    drama = write_drama(tmp_path / "drama", SMALL_DRAMA + '\n[cache]\nremote = "http://example.com/cache"\n')
    result = fanren("status", drama)
    assert result.code == 2
    assert result.stderr == (f"error: {drama / 'drama.toml'}: cache.remote: expected an s3://bucket/prefix or "
                             "file:///folder URL, got 'http://example.com/cache'\n")
    result = fanren("build", drama, env={"FANREN_REMOTE_CACHE": "ftp://x"})
    assert result.code == 2
    assert result.stderr == ("error: FANREN_REMOTE_CACHE: expected an s3://bucket/prefix or file:///folder URL, "
                             "got 'ftp://x'\n")
    shared = tmp_path / "shared"
    shared.mkdir()
    write_drama(drama, SMALL_DRAMA + f'\n[cache]\nremote = "file://{shared}"\n')
    result = fanren("status", drama)
    assert result.code == 0, result.stderr
    assert "character:lin [card]  (not in remote)" in result.stdout


def test_no_remote_means_no_remote_lines(small_drama: Path) -> None:
    shutil.rmtree(small_drama / ".fanren-cache" / "actions")
    result = fanren("status", small_drama, env={"FANREN_REMOTE_CACHE": ""})
    assert result.code == 0 and "remote" not in result.stdout


def test_a_runner_without_torch_renders_an_episode_whose_gpu_nodes_are_in_the_remote(tmp_path: Path) -> None:
    """The CI story: a GPU machine rendered the smoke profile (the real flux2 and ltx2 engine code)
    and uploaded it; a runner where torch cannot even be imported changes the subtitles mode and
    renders the episode, pulling every GPU node."""
    shared = tmp_path / "team-cache"
    shared.mkdir()
    env = {"FANREN_REMOTE_CACHE": f"file://{shared}"}
    gpu_box, cache = machine(tmp_path, "gpu")
    result = fanren("build", gpu_box, "--profile", "smoke", "--cache-dir", cache, env=env)
    assert result.code == 0, result.stderr

    no_torch = tmp_path / "no-torch" / "torch"
    no_torch.mkdir(parents=True)
    (no_torch / "__init__.py").write_text('raise ImportError("torch is not installed on this runner")\n')
    runner, cache2 = machine(tmp_path, "runner")
    (runner / "drama.toml").write_text(SMALL_DRAMA.replace('seed = 7', 'seed = 7\nsubtitles = "soft"'),
                                       encoding="utf-8")
    result = fanren("build", runner, "--profile", "smoke", "--cache-dir", cache2,
                    env={**env, "PYTHONPATH": str(no_torch.parent)})
    assert result.code == 0, result.stderr
    nodes = {n["id"]: n for n in report(runner, "smoke")["nodes"]}
    ran_here = {nid for nid, n in nodes.items() if n["status"] == "ran"}
    assert ran_here == {"shot:s1", "shot:s2", "shot:s3", "episode"}
    gpu_nodes = {nid for nid in nodes if nid.startswith(("character:", "keyframe:", "clip:"))}
    assert len(gpu_nodes) == 8
    assert {nid for nid, n in nodes.items() if n.get("from") == "remote"} == set(nodes) - ran_here


def test_a_remote_record_naming_paths_instead_of_digests_is_a_miss(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    from fanren.cache import Cache
    from fanren.remote import FolderTransport, RemoteCache

    shared = tmp_path / "shared"
    (shared / "ac").mkdir(parents=True)
    secret = tmp_path / "elsewhere.txt"
    secret.write_text("not for the cache")
    key = "e" * 32
    record = {"key": key, "node": "line:s1:0", "kind": "line", "engine": "espeak", "fields": {},
              "outputs": {"cues.json": {"digest": "0" * 32, "size": 17, "sha256": f"../../{secret.name}"}},
              "seconds": 1.0, "host": "x", "time": 0.0, "version": 1}
    (shared / "ac" / f"{key}.json").write_text(json.dumps(record))
    cache = Cache(tmp_path / "cache", remote=RemoteCache(FolderTransport(f"file://{shared}", shared)))
    assert cache.lookup(key) is None
    assert caplog.messages == [(f"remote cache file://{shared}: action record {key} is unusable (an output "
                                "has no sha256 hex digest); treated as a miss")]
    assert list((tmp_path / "cache" / "objects").glob("*/*")) == []


def test_s3_without_boto3_says_which_extra_to_install(small_drama: Path, tmp_path: Path) -> None:
    shadow = tmp_path / "no-boto3" / "boto3"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ModuleNotFoundError("No module named \'boto3\'", name="boto3")\n')
    result = fanren("status", small_drama, env={"FANREN_REMOTE_CACHE": "s3://team/p",
                                                "PYTHONPATH": str(shadow.parent)})
    assert result.code == 2
    assert result.stderr == "error: the remote cache s3://team/p needs boto3: pip install 'fanren[remote]'\n"


def test_cache_push_seeds_the_remote_with_what_was_built_before(small_drama: Path, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    env = {"FANREN_REMOTE_CACHE": f"file://{shared}"}
    lock = lock_of(small_drama)
    # a record written before sha256 was recorded: push re-hashes its object and fills it in
    old = small_drama / ".fanren-cache" / "actions" / lock["keyframe:s1"]["key"][:2] / \
        f"{lock['keyframe:s1']['key']}.json"
    raw = json.loads(old.read_text(encoding="utf-8"))
    expected_sha = raw["outputs"]["image.png"].pop("sha256")
    old.write_text(json.dumps(raw), encoding="utf-8")

    result = fanren("cache", "push", small_drama, env=env)
    objects = len({d for e in lock.values() for d in e["outputs"].values()})
    assert (result.code, result.stdout) == (0, f"pushed 18 of 18 results to file://{shared} ({objects} objects "
                                               "uploaded; 0 not in the local cache, 0 corrupt)\n"), result.stderr
    assert json.loads(old.read_text(encoding="utf-8"))["outputs"]["image.png"]["sha256"] == expected_sha
    again = fanren("cache", "push", small_drama, env=env)
    assert again.stdout.startswith("pushed 18 of 18 results") and "(0 objects uploaded;" in again.stdout

    other, cache = machine(tmp_path, "b")
    build(other, cache, env)
    assert report(other)["counts"]["remote_hits"] == 18

    no_remote = fanren("cache", "push", small_drama)
    assert (no_remote.code, no_remote.stderr) == (
        2, "error: no remote cache: set [cache] remote in drama.toml or FANREN_REMOTE_CACHE\n")
