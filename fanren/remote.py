"""The remote tier of the cache: action records and objects shared between machines.

Like bazel-remote's `cache/disk` + `cache/s3proxy`, one cache interface (`fanren.cache.Cache`) with the
local tier in front and this tier behind it: a local miss asks the remote before running
(read-through) and a finished node is uploaded (write-back). Two stores, as locally:

    <prefix>/ac/<key>.json   action records (key → outputs, with each output's size and sha256)
    <prefix>/cas/<sha256>    objects, named by the sha256 of their bytes

Verify-on-read: a downloaded object is used only when its size, its sha256 and its xxh3 all equal
what the action record says (and its sha256 equals its name). A corrupt or truncated remote object,
an unreadable record, a server that is down, answers 500 or is too slow: each is a miss, with a
warning, and the node runs here. Nothing a remote holds is ever an output unless it hashes right.

Where trust crosses people, xxh3 is not enough (it is not collision-resistant), so remote objects are
named and checked by sha256. What a shared cache still trusts is its writers' action records: whoever
can write `ac/` can claim that a key produced some other (well-formed) bytes. Give write access only
to runners that render trusted commits; pull-request runners use `--remote-read-only`.

Where: `[cache] remote = "s3://bucket/prefix"` or `"file:///shared/folder"` in drama.toml, or
`FANREN_REMOTE_CACHE` (which wins). S3-compatible stores (S3, R2, MinIO) need the `fanren[remote]`
extra (boto3); the endpoint comes from `AWS_ENDPOINT_URL` and credentials only from the environment
(`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`); without them requests are
unsigned (a public bucket, read-only). Nothing here prints a credential.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import unquote, urlparse

from .cache import ActionRecord, Cache, Output, atomic_write, digest_file_sha256
from .errors import DramaError, Problem, UsageError

if TYPE_CHECKING:
    from .plan import Decision

log = logging.getLogger("fanren")

_HEX = re.compile(r"[0-9a-f]+")

REMOTE_ENV = "FANREN_REMOTE_CACHE"
TIMEOUT_ENV = "FANREN_REMOTE_TIMEOUT"  # seconds to connect and per read; default 10


class RemoteUnavailable(Exception):
    """The remote could not answer (down, an error status, too slow). Not a miss: the tier stops."""


class Transport(Protocol):
    """Named blobs on a shared store. `None` / False means absent; failures raise RemoteUnavailable."""

    url: str

    def read(self, name: str) -> bytes | None: ...
    def download(self, name: str, target: Path, limit: int) -> bool: ...
    def write(self, name: str, data: bytes) -> None: ...
    def upload(self, name: str, source: Path) -> None: ...
    def exists(self, name: str) -> bool: ...


class FolderTransport:
    """A folder every machine mounts (NFS, SMB, a synced drive): `file:///mnt/team/fanren-cache`."""

    def __init__(self, url: str, folder: Path) -> None:
        self.url = url
        self.folder = folder

    def _path(self, name: str) -> Path:
        return self.folder / name

    def _check(self) -> None:
        if not self.folder.is_dir():
            raise RemoteUnavailable(f"the folder {self.folder} does not exist (not mounted?)")

    def read(self, name: str) -> bytes | None:
        self._check()
        try:
            return self._path(name).read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise RemoteUnavailable(str(exc)) from exc

    def download(self, name: str, target: Path, limit: int) -> bool:
        """Copies at most `limit` + 1 bytes: enough to see that a bigger object is wrong."""
        self._check()
        try:
            with open(self._path(name), "rb") as source, open(target, "wb") as f:
                left = limit + 1
                while left > 0 and (chunk := source.read(min(left, 1 << 20))):
                    f.write(chunk)
                    left -= len(chunk)
            return True
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise RemoteUnavailable(str(exc)) from exc

    def write(self, name: str, data: bytes) -> None:
        self._check()
        path = self._path(name)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, data.decode("utf-8"))
        except OSError as exc:
            raise RemoteUnavailable(str(exc)) from exc

    def upload(self, name: str, source: Path) -> None:
        self._check()
        path = self._path(name)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, tmp)
            os.replace(tmp, path)  # readers see the whole object or none of it
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise RemoteUnavailable(str(exc)) from exc

    def exists(self, name: str) -> bool:
        self._check()
        return self._path(name).is_file()


class S3Transport:
    """Any S3-compatible store through boto3: `s3://bucket/prefix`."""

    def __init__(self, url: str, bucket: str, prefix: str) -> None:
        try:
            import boto3
            import botocore
            from botocore.config import Config
        except ModuleNotFoundError:
            raise UsageError(f"the remote cache {url} needs boto3: pip install 'fanren[remote]'") from None
        self.url = url
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        timeout = float(os.environ.get(TIMEOUT_ENV, "10"))
        config = Config(connect_timeout=timeout, read_timeout=timeout,
                        retries={"max_attempts": 2, "mode": "standard"})
        key_id, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
        if not (key_id and secret):
            config = config.merge(Config(signature_version=botocore.UNSIGNED))
        # The session is built from the environment only: no ~/.aws files, no instance metadata.
        session = boto3.session.Session(aws_access_key_id=key_id or None, aws_secret_access_key=secret or None,
                                        aws_session_token=os.environ.get("AWS_SESSION_TOKEN") or None,
                                        region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"))
        self.client = session.client("s3", endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
                                     config=config)
        self._errors = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)

    def _key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def _absent(self, exc: Exception) -> bool:
        code = (getattr(exc, "response", None) or {}).get("Error", {}).get("Code", "")
        return code in ("NoSuchKey", "404", "NotFound")

    def _unavailable(self, exc: Exception) -> RemoteUnavailable:
        response = getattr(exc, "response", None)
        if response:
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = response.get("Error", {}).get("Code", "")
            return RemoteUnavailable(f"the server answered {status} {code}".strip())
        return RemoteUnavailable(type(exc).__name__ + (f": {exc}" if str(exc) else ""))

    def read(self, name: str) -> bytes | None:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(name))["Body"]
            return bytes(body.read())
        except self._errors as exc:
            if self._absent(exc):
                return None
            raise self._unavailable(exc) from exc

    def download(self, name: str, target: Path, limit: int) -> bool:
        """Reads at most `limit` + 1 bytes: enough to see that a bigger object is wrong."""
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(name))["Body"]
            written = 0
            with open(target, "wb") as f:
                for chunk in body.iter_chunks(1 << 20):
                    f.write(chunk[: limit + 1 - written])
                    written += len(chunk)
                    if written > limit:
                        break
            body.close()
            return True
        except self._errors as exc:
            if self._absent(exc):
                return False
            raise self._unavailable(exc) from exc

    def write(self, name: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(name), Body=data)
        except self._errors as exc:
            raise self._unavailable(exc) from exc

    def upload(self, name: str, source: Path) -> None:
        try:
            with open(source, "rb") as f:
                self.client.put_object(Bucket=self.bucket, Key=self._key(name), Body=f)
        except self._errors as exc:
            raise self._unavailable(exc) from exc

    def exists(self, name: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(name))
            return True
        except self._errors as exc:
            if self._absent(exc):
                return False
            raise self._unavailable(exc) from exc


def transport_for(url: str) -> Transport | None:
    """The transport a URL names; None when it is not an s3:// or file:/// URL."""
    parsed = urlparse(url)
    if parsed.scheme == "file" and parsed.path and not parsed.netloc:
        return FolderTransport(url, Path(unquote(parsed.path)))
    if parsed.scheme == "s3" and parsed.netloc:
        return S3Transport(url, parsed.netloc, parsed.path)
    return None


class RemoteCache:
    """Action records and objects on a transport, every object verified before it is used.

    The first time the remote cannot answer, a warning says so and the tier turns itself off for the
    rest of the build: each node it would have held then runs here, and nothing waits on it again.
    """

    def __init__(self, transport: Transport, read_only: bool = False) -> None:
        self.transport = transport
        self.read_only = read_only
        self.url = transport.url
        self.available = True
        self._lock = threading.Lock()
        self._bad_objects: set[str] = set()  # sha256 names found corrupt: re-uploaded, not skipped

    def _failed(self, exc: RemoteUnavailable) -> None:
        with self._lock:
            if self.available:
                self.available = False
                log.warning("remote cache %s cannot be used (%s); continuing without it: nodes run here",
                            self.url, exc)

    def record(self, key: str) -> ActionRecord | None:
        """The remote's record of `key` if it parses and names a sha256 for every output."""
        if not self.available:
            return None
        try:
            data = self.transport.read(f"ac/{key}.json")
        except RemoteUnavailable as exc:
            self._failed(exc)
            return None
        if data is None:
            return None
        try:
            record = ActionRecord.from_json(data.decode("utf-8"))
            if record.key != key:
                raise ValueError("it holds another key")
            for output in record.outputs.values():
                # names that become paths: hex of the right length only (no "../", no other digest)
                if not (_HEX.fullmatch(output.digest or "") and len(output.digest) == 32):
                    raise ValueError("an output's digest is not an xxh3-128 hex digest")
                if not (_HEX.fullmatch(output.sha256 or "") and len(output.sha256 or "") == 64):
                    raise ValueError("an output has no sha256 hex digest")
        except (ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:
            log.warning("remote cache %s: action record %s is unusable (%s); treated as a miss",
                        self.url, key, exc)
            return None
        return record

    def holds(self, key: str) -> bool | None:
        """Whether the remote has a record of `key` (None: it cannot be asked)."""
        if not self.available:
            return None
        try:
            return self.transport.exists(f"ac/{key}.json")
        except RemoteUnavailable as exc:
            self._failed(exc)
            return None

    def fetch(self, node: str, name: str, output: Output, target: Path) -> bool:
        """Download one object into `target` and check every byte; False (and no file) if it is not
        there, not whole, or not what the record says."""
        assert output.sha256 is not None
        try:
            found = self.available and self.transport.download(f"cas/{output.sha256}", target, output.size)
        except RemoteUnavailable as exc:
            self._failed(exc)
            found = False
        if not found:
            target.unlink(missing_ok=True)
            return False
        size = target.stat().st_size
        digest, sha256 = digest_file_sha256(target)
        if (size, sha256, digest) != (output.size, output.sha256, output.digest):
            log.warning("remote cache %s: object %s (%s of %s) does not match its record (%d bytes, "
                        "expected %d); not used, the node runs here", self.url, output.sha256, name,
                        node, size, output.size)
            with self._lock:
                self._bad_objects.add(output.sha256)
            target.unlink(missing_ok=True)
            return False
        return True

    def upload(self, record: ActionRecord, files: Mapping[str, Path]) -> int:
        """Objects first, then the record: a record on the remote never names a missing object.
        Returns how many objects were sent (those the remote already holds are not)."""
        if self.read_only or not self.available:
            return 0
        sent = 0
        try:
            for name, output in sorted(record.outputs.items()):
                remote_name = f"cas/{output.sha256}"
                if output.sha256 in self._bad_objects or not self.transport.exists(remote_name):
                    self.transport.upload(remote_name, files[name])
                    sent += 1
            self.transport.write(f"ac/{record.key}.json", record.to_json().encode("utf-8"))
        except RemoteUnavailable as exc:
            self._failed(exc)
        return sent


def open_remote(setting: str | None, drama_file: Path, read_only: bool = False) -> RemoteCache | None:
    """The remote tier named by `FANREN_REMOTE_CACHE` (it wins; empty turns it off) or by drama.toml's
    `[cache] remote`, or None."""
    env = os.environ.get(REMOTE_ENV)
    url = (env.strip() or None) if env is not None else setting
    if url is None:
        return None
    transport = transport_for(url)
    if transport is None:
        expected = "an s3://bucket/prefix or file:///folder URL"
        if env is not None:
            raise UsageError(f"{REMOTE_ENV}: expected {expected}, got {url!r}")
        raise DramaError(Problem(drama_file, "cache.remote", expected, repr(url)))
    return RemoteCache(transport, read_only=read_only)


def remote_holdings(decisions: list[Decision], remote: RemoteCache, root: Path,
                    cache: Cache) -> dict[str, bool | None]:
    """For each stale node: whether the remote holds its result (None: it cannot be known).

    Walks the plan in its order, taking each input's outputs from the local record or, when the
    remote holds the input, from the remote's record, so a node behind pullable inputs gets its key
    (with plan's own `key_fields`) and can be asked about too. Reads records only, never objects.
    """
    from .plan import key_fields, key_of, source_digests

    known: dict[str, Mapping[str, Output]] = {}  # node id → outputs, locally or on the remote
    held: dict[str, bool | None] = {}
    for decision in decisions:
        node = decision.node
        if decision.record is not None and not decision.stale:
            known[node.id] = decision.record.outputs
            continue
        key = decision.key
        if key is None and all(i in known for i in node.inputs):
            key = key_of(key_fields(node, {i: known[i] for i in node.inputs}, source_digests(node, root, cache)))
        record = remote.record(key) if key is not None else None
        if record is not None:
            known[node.id] = record.outputs
        held[node.id] = (record is not None) if key is not None and remote.available else None
    return held


@dataclass(frozen=True)
class PushResult:
    records: int
    objects: int
    skipped: int  # records whose local objects did not verify (left for the next build to repair)


def push(cache: Cache, records: Iterable[ActionRecord], remote: RemoteCache) -> PushResult:
    """Upload results already in the local cache (built before the remote was set up, or on a
    machine that had it off). Each object is re-read: it must still hash to its name, and a record
    from before sha256 was recorded gets it now, locally too. Stops at the first remote failure."""
    pushed = sent = skipped = 0
    for record in records:
        outputs: dict[str, Output] = {}
        for name, output in record.outputs.items():
            try:
                digest, sha256 = digest_file_sha256(cache.object_path(output.digest))
            except OSError:
                digest, sha256 = "", ""
            if digest != output.digest:
                break
            outputs[name] = replace(output, sha256=sha256)
        if len(outputs) != len(record.outputs):
            log.warning("cache: %s (key %s) has a missing or corrupt object; not pushed", record.node, record.key)
            skipped += 1
            continue
        if outputs != record.outputs:
            record = replace(record, outputs=outputs)
            cache.actions.put(record)
        sent += remote.upload(record, {name: cache.object_path(o.digest) for name, o in outputs.items()})
        if not remote.available:
            break
        pushed += 1
    return PushResult(pushed, sent, skipped)
