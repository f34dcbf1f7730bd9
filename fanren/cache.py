"""The cache: a content store (digest → bytes) and an action cache (key → action record), kept apart
as in Bazel's remote-execution API and DVC's stage cache, plus what builds share around them.

Layout under the cache root (`.fanren-cache/` in the drama folder by default):

    objects/ab/cdef…        ContentStore: files named by their xxh3-128 digest, read-only
    actions/ab/<key>.json   ActionCache: one record per finished node (output digests and sizes)
    tmp/<pid>-<n>/          where engines write; committed by rename, cleaned when the pid is gone
    locks/                  flock files: in-use (builds shared, gc/verify exclusive), one per
                            drama build, one per key
    roots/<slug>.json       the drama folders that build into this cache (gc keeps what each reaches)
    logs/<node>.log         the last failure of a node
    statmemo.json           (inode, mtime_ns, size) → digest, so an unchanged file is never re-read
    timings.json            seconds per node for each engine, for ETAs

Commit protocol: engine writes into tmp → outputs validated → fsync → rename into objects → action
record written atomically. A record or object that fails to parse or verify is a miss: it is removed
with a warning and rebuilt. Killing fanren at any moment leaves only tmp dirs, which are cleaned.

What is checked when: an object's size on every lookup and every use (the record knows it); its
digest when its stat changed (the stat memo); every byte of every object by `fanren cache verify`,
which is what finds an object overwritten with its size and mtime restored.

A remote tier (fanren/remote.py) can stand behind this one: `lookup` asks it on a local miss and
`commit` uploads to it; nothing it sends enters the content store before its bytes hash right.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import socket
import threading
import time
import wave
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import xxhash

from .errors import CacheCorrupt, EngineError

if TYPE_CHECKING:
    from .remote import RemoteCache

log = logging.getLogger("fanren")

RECORD_VERSION = 1
_CHUNK = 1 << 20


def digest_bytes(data: bytes) -> str:
    return xxhash.xxh3_128_hexdigest(data)


def digest_file(path: Path | str) -> str:
    h = xxhash.xxh3_128()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, UTF-8 kept: the same value always gives the same text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class Output:
    digest: str                 # xxh3-128: names the object locally and goes into keys
    size: int
    sha256: str | None = None   # names the object in a remote cache, where trust crosses people


def digest_file_sha256(path: Path) -> tuple[str, str]:
    """(xxh3-128, sha256) of a file, read once."""
    fast, strong = xxhash.xxh3_128(), hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            fast.update(chunk)
            strong.update(chunk)
    return fast.hexdigest(), strong.hexdigest()


@dataclass(frozen=True)
class ActionRecord:
    """One finished node: what it was keyed on and what it produced."""

    key: str
    node: str
    kind: str
    engine: str
    fields: dict[str, Any]          # the key's fields, for `fanren explain`
    outputs: dict[str, Output]      # output name → object
    seconds: float
    host: str
    time: float
    version: int = RECORD_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, ensure_ascii=False, indent=1)

    @classmethod
    def from_json(cls, text: str) -> ActionRecord:
        raw = json.loads(text)
        if raw.get("version") != RECORD_VERSION:
            raise ValueError(f"record version {raw.get('version')}")
        raw["outputs"] = {name: Output(**o) for name, o in raw["outputs"].items()}
        return cls(**raw)


class StatMemo:
    """(inode, mtime_ns, size) → digest for files we have hashed, so a no-op build reads no content."""

    def __init__(self, file: Path) -> None:
        self.file = file
        self._entries: dict[str, list[Any]] = {}
        self._dirty = False
        self._lock = threading.Lock()
        self.hashed = 0  # files whose content was read this run (the no-op bench checks it is 0)
        with contextlib.suppress(OSError, ValueError):
            loaded = json.loads(file.read_text())
            if isinstance(loaded, dict):
                self._entries = loaded

    def digest(self, path: Path | str, st: os.stat_result | None = None) -> str:
        """The digest of `path`; `st` is its stat when the caller has just taken it (one stat, not two)."""
        if st is None:
            st = os.stat(path)
        stamp = [st.st_ino, st.st_mtime_ns, st.st_size]
        key = os.fspath(path)
        entry = self._entries.get(key)
        if entry is not None and entry[:3] == stamp:
            return str(entry[3])
        digest = digest_file(path)
        with self._lock:
            self.hashed += 1
            self._entries[key] = [*stamp, digest]
            self._dirty = True
        return digest

    def remember(self, path: Path, digest: str) -> None:
        st = path.stat()
        with self._lock:
            self._entries[str(path)] = [st.st_ino, st.st_mtime_ns, st.st_size, digest]
            self._dirty = True

    def forget(self, path: Path) -> None:
        with self._lock:
            if self._entries.pop(str(path), None) is not None:
                self._dirty = True

    def save(self) -> None:
        if not self._dirty:
            return
        with self._lock:
            # drop entries of files that no longer exist, so the memo does not grow forever
            entries = {k: v for k, v in self._entries.items() if os.path.exists(k)}
            atomic_write(self.file, json.dumps(entries, separators=(",", ":")))
            self._dirty = False


class ContentStore:
    """The content store (CAS): digest → bytes. Files named by their xxh3-128 digest, read-only.

    It knows nothing of nodes or keys; an object is kept or dropped by whoever holds the records.
    """

    def __init__(self, folder: Path, memo: StatMemo) -> None:
        self.folder = folder
        self.memo = memo
        self._folder = str(folder)
        folder.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return Path(self.file(digest))

    def file(self, digest: str) -> str:
        """The object's path as a string: what `has` stats for every output of every node a build
        plans (building a Path costs more than the stat)."""
        return f"{self._folder}/{digest[:2]}/{digest[2:]}"

    def put(self, file: Path) -> Output:
        """Move a validated file in under its digest (read-only, fsynced); the file is consumed."""
        digest, sha256 = digest_file_sha256(file)
        target = self.path(digest)
        size = file.stat().st_size
        if not (target.exists() and target.stat().st_size == size):
            target.parent.mkdir(exist_ok=True)
            with open(file, "rb") as f:
                os.fsync(f.fileno())
            os.chmod(file, 0o444)
            os.replace(file, target)
            _fsync_dir(target.parent)
        self.memo.remember(target, digest)
        return Output(digest=digest, size=size, sha256=sha256)

    def has(self, output: Output) -> bool:
        """The object exists with the recorded size and (through the stat memo) the recorded digest.

        The size is read from the file system every time; the digest is re-read only when the stat
        changed, so an object overwritten with its size and mtime restored is found by `verify_all`.
        """
        file = self.file(output.digest)
        try:
            st = os.stat(file)
            if st.st_size != output.size:
                return False
            return self.memo.digest(file, st) == output.digest
        except OSError:
            return False

    def has_size(self, output: Output) -> bool:
        """The cheap check made on every use of an object: it exists with the recorded size."""
        try:
            return self.path(output.digest).stat().st_size == output.size
        except OSError:
            return False

    def rehash(self, digest: str) -> bool:
        """Read the whole object and compare it with its name (the stat memo is not trusted)."""
        path = self.path(digest)
        try:
            actual = digest_file(path)
        except OSError:
            return False
        if actual != digest:
            return False
        self.memo.remember(path, digest)
        return True

    def remove(self, digest: str) -> None:
        path = self.path(digest)
        self.memo.forget(path)
        with contextlib.suppress(OSError):
            os.chmod(path, 0o644)
            path.unlink()

    def digests(self) -> Iterator[str]:
        for path in self.folder.glob("*/*"):
            if len(path.parent.name) == 2 and not path.name.startswith("."):
                yield path.parent.name + path.name

    def size(self) -> int:
        total = 0
        for digest in self.digests():
            with contextlib.suppress(OSError):
                total += self.path(digest).stat().st_size
        return total


class ActionCache:
    """The action cache: key → action record (what a finished node produced). One JSON file per key."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._folder = str(folder)
        folder.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return Path(self.file(key))

    def file(self, key: str) -> str:
        """The record's path as a string (the index stats one per node a build plans)."""
        return f"{self._folder}/{key[:2]}/{key}.json"

    def get(self, key: str) -> ActionRecord | None:
        """The record of `key`, or None. A record that does not parse is removed with a warning."""
        path = self.path(key)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        try:
            record = ActionRecord.from_json(text)
            if record.key != key:
                raise ValueError("record holds another key")
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("cache: action record %s is corrupt (%s); removed, the node will be rebuilt",
                        path.name, exc)
            path.unlink(missing_ok=True)
            return None
        return record

    def peek(self, key: str) -> ActionRecord | None:
        """The record of `key` if it parses; nothing is removed (for explain: fields only)."""
        try:
            return ActionRecord.from_json(self.path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError, TypeError, KeyError):
            return None

    def put(self, record: ActionRecord) -> None:
        path = self.path(record.key)
        path.parent.mkdir(exist_ok=True)
        atomic_write(path, record.to_json())

    def remove(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def records(self) -> Iterator[tuple[Path, ActionRecord | None]]:
        """Every record file with its parsed record (None when it does not parse)."""
        for path in self.folder.glob("*/*.json"):
            try:
                yield path, ActionRecord.from_json(path.read_text(encoding="utf-8"))
            except (OSError, ValueError, TypeError, KeyError):
                yield path, None


class Cache:
    """One cache folder: the content store and the action cache, plus what builds share around them
    (temp dirs, logs, locks, the drama roots that use it, timings) and gc.

    `lookup` and `commit` are the two calls a build makes: both keep the rule that a record is only
    used when every object it names is intact.
    """

    def __init__(self, root: Path, remote: RemoteCache | None = None) -> None:
        self.root = Path(root)
        self.remote = remote              # the remote tier behind this one (fanren/remote.py)
        self.remote_hits: set[str] = set()  # keys this process pulled from the remote
        self.tmp = self.root / "tmp"
        self.locks = self.root / "locks"
        self.logs = self.root / "logs"
        self.roots_dir = self.root / "roots"
        for d in (self.tmp, self.locks, self.logs, self.roots_dir):
            d.mkdir(parents=True, exist_ok=True)
        self.memo = StatMemo(self.root / "statmemo.json")
        self.store = ContentStore(self.root / "objects", self.memo)
        self.actions = ActionCache(self.root / "actions")
        self._tmp_counter = 0
        self._tmp_lock = threading.Lock()

    # ── what a build calls ───────────────────────────────────────────────────

    def object_path(self, digest: str) -> Path:
        return self.store.path(digest)

    def record_path(self, key: str) -> Path:
        return self.actions.path(key)

    def verify_object(self, output: Output) -> bool:
        """The object exists with its recorded size and (through the stat memo) its digest."""
        return self.store.has(output)

    def lookup(self, key: str) -> ActionRecord | None:
        """The record of `key` if it and all its objects are intact; a corrupt one is removed.
        On a local miss, the remote tier (if any) is asked: read-through, every object verified."""
        record = self.actions.get(key)
        if record is not None:
            for name, output in record.outputs.items():
                if not self.store.has(output):
                    log.warning("cache: object %s (%s of %s) is missing or corrupt; removed, "
                                "the node will be rebuilt", output.digest, name, record.node)
                    self.store.remove(output.digest)
                    self.actions.remove(key)
                    record = None
                    break
        if record is None and self.remote is not None:
            record = self._pull(key)
        return record

    def _pull(self, key: str) -> ActionRecord | None:
        """Copy `key`'s record and objects from the remote tier, each object checked byte for byte
        before it enters the content store; the record is written last, as in `commit`."""
        assert self.remote is not None
        record = self.remote.record(key)
        if record is None:
            return None
        tmp = self.new_tmp()
        try:
            for name, output in sorted(record.outputs.items()):
                if self.store.has(output):
                    continue
                file = tmp / "object"
                if not self.remote.fetch(record.node, name, output, file):
                    return None
                self.store.put(file)
            self.actions.put(record)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        with self._tmp_lock:
            self.remote_hits.add(key)
        return record

    def peek(self, key: str) -> ActionRecord | None:
        """The record of `key` without verifying objects (for explain: fields only)."""
        return self.actions.peek(key)

    def object_for_use(self, record: ActionRecord, name: str) -> Path:
        """The path of one output of `record`, checked to still have its recorded size right before
        it is read (an engine's input, an export). A truncated object is removed with its record and
        the build stops with CacheCorrupt; the next build re-renders the node."""
        output = record.outputs[name]
        if not self.store.has_size(output):
            self.store.remove(output.digest)
            self.actions.remove(record.key)
            raise CacheCorrupt(f"cache: object {output.digest} ({name} of {record.node}) changed size "
                               f"after it was checked; removed, run the build again to re-render it")
        return self.store.path(output.digest)

    def commit(self, key: str, node: str, kind: str, engine: str, fields: dict[str, Any],
               files: Mapping[str, Path], seconds: float) -> ActionRecord:
        """Validate what an engine wrote, store it, then write the action record atomically."""
        if not files:
            raise EngineError(f"{node}: the engine finished without writing any output")
        for name, file in files.items():
            validate_output(name, file)
        outputs = {name: self.store.put(file) for name, file in sorted(files.items())}
        record = ActionRecord(key=key, node=node, kind=kind, engine=engine, fields=fields,
                              outputs=outputs, seconds=round(seconds, 3), host=socket.gethostname(),
                              time=round(time.time(), 3))
        self.actions.put(record)
        if self.remote is not None:  # write-back; a failure is a warning, the local result stands
            self.remote.upload(record, {name: self.store.path(o.digest) for name, o in outputs.items()})
        return record

    # ── temp dirs, logs, locks ───────────────────────────────────────────────

    def new_tmp(self) -> Path:
        with self._tmp_lock:
            self._tmp_counter += 1
            n = self._tmp_counter
        path = self.tmp / f"{os.getpid()}-{n}-{time.monotonic_ns()}"
        path.mkdir(parents=True)
        return path

    def clean_tmp(self) -> None:
        """Remove temp dirs left by processes that are gone (a build killed midway)."""
        for entry in self.tmp.iterdir():
            pid = entry.name.split("-", 1)[0]
            if pid.isdigit() and not _pid_alive(int(pid)):
                shutil.rmtree(entry, ignore_errors=True)

    def log_path(self, node_id: str) -> Path:
        return self.logs / (node_id.replace(":", "_").replace("/", "_") + ".log")

    @contextlib.contextmanager
    def lock(self, name: str, blocking: bool = True, shared: bool = False) -> Iterator[bool]:
        """An OS advisory lock (flock), released when the process dies. Yields whether it was taken.

        `shared` locks of one name are held together; an exclusive one waits for all of them.
        """
        path = self.locks / f"{name}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | (0 if blocking else fcntl.LOCK_NB)
            try:
                fcntl.flock(fd, mode)
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EACCES):
                    yield False
                    return
                raise
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def in_use(self, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
        """Held (shared) by every build for its whole length, so gc (exclusive) never runs beside one."""
        with self.lock(USE_LOCK, blocking=False, shared=True) as taken:
            if taken:
                yield
                return
        if on_wait:
            on_wait()
        with self.lock(USE_LOCK, shared=True):
            yield

    @contextlib.contextmanager
    def exclusive(self, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
        """Held by gc and verify: no build runs while objects are being dropped."""
        with self.lock(USE_LOCK, blocking=False) as taken:
            if taken:
                yield
                return
        if on_wait:
            on_wait()
        with self.lock(USE_LOCK):
            yield

    # ── the dramas that use this cache ───────────────────────────────────────

    def register_root(self, drama_root: Path) -> None:
        """Remember that the drama in `drama_root` builds into this cache, so gc keeps what it reaches."""
        resolved = str(Path(drama_root).resolve())
        path = self.roots_dir / f"{digest_bytes(resolved.encode())[:16]}.json"
        if not path.exists():
            atomic_write(path, canonical_json({"root": resolved}) + "\n")

    def drama_roots(self) -> list[Path]:
        roots = []
        for path in sorted(self.roots_dir.glob("*.json")):
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                roots.append(Path(json.loads(path.read_text(encoding="utf-8"))["root"]))
        return roots

    def forget_root(self, drama_root: Path) -> None:
        resolved = str(Path(drama_root).resolve())
        (self.roots_dir / f"{digest_bytes(resolved.encode())[:16]}.json").unlink(missing_ok=True)

    # ── timings (ETA) ────────────────────────────────────────────────────────

    def load_timings(self) -> dict[str, float]:
        try:
            raw = json.loads((self.root / "timings.json").read_text())
            return {str(k): float(v) for k, v in raw.items()}
        except (OSError, ValueError, AttributeError):
            return {}

    def save_timings(self, timings: Mapping[str, float]) -> None:
        atomic_write(self.root / "timings.json", json.dumps(dict(sorted(timings.items())), indent=1))

    # ── verify and gc (run under `exclusive()`) ──────────────────────────────

    def verify(self, progress: Callable[[int, int], None] | None = None) -> VerifyResult:
        """Re-hash every object against its name, trusting no stat memo; drop the ones that do not
        match, then every record that names a dropped or missing object (or does not parse)."""
        digests = sorted(self.store.digests())
        bad: set[str] = set()
        for n, digest in enumerate(digests, 1):
            if not self.store.rehash(digest):
                log.warning("cache: object %s does not match its digest; removed", digest)
                self.store.remove(digest)
                bad.add(digest)
            if progress:
                progress(n, len(digests))
        records_removed = 0
        for path, record in self.actions.records():
            if record is None or any(not self.store.has_size(o) for o in record.outputs.values()):
                path.unlink(missing_ok=True)
                records_removed += 1
        self.memo.save()
        return VerifyResult(len(digests), len(bad), records_removed)

    def gc(self, keep_keys: set[str], max_size: int | None) -> GcResult:
        """Remove records not reached by keep_keys and unreferenced objects; then, if the cache is
        still over max_size, evict records cheapest to recompute first (least seconds per byte)."""
        removed_records = 0
        kept: list[tuple[Path, ActionRecord]] = []
        evictable: list[tuple[Path, ActionRecord]] = []
        for path, record in self.actions.records():
            if record is None:
                path.unlink(missing_ok=True)
                removed_records += 1
            elif record.key in keep_keys:
                kept.append((path, record))
            else:
                evictable.append((path, record))
        for path, _ in evictable:
            path.unlink(missing_ok=True)
            removed_records += 1
        if max_size is not None:
            kept.sort(key=lambda pr: pr[1].seconds / max(1, sum(o.size for o in pr[1].outputs.values())))
            total = _referenced_size(r for _, r in kept)
            while kept and total > max_size:
                path, record = kept.pop(0)
                path.unlink(missing_ok=True)
                removed_records += 1
                total = _referenced_size(r for _, r in kept)
        live = {o.digest for _, r in kept for o in r.outputs.values()}
        removed_objects = freed = 0
        for digest in list(self.store.digests()):
            if digest not in live:
                with contextlib.suppress(OSError):
                    freed += self.store.path(digest).stat().st_size
                self.store.remove(digest)
                removed_objects += 1
        for lock in self.locks.glob("keys/*.lock"):
            with contextlib.suppress(OSError):
                lock.unlink()
        self.memo.save()
        return GcResult(removed_records, removed_objects, freed, _referenced_size(r for _, r in kept))

    def size(self) -> int:
        return self.store.size()


USE_LOCK = "in-use"


@dataclass(frozen=True)
class VerifyResult:
    objects_checked: int
    objects_removed: int
    records_removed: int


@dataclass(frozen=True)
class GcResult:
    records_removed: int
    objects_removed: int
    bytes_freed: int
    bytes_kept: int


def _referenced_size(records: Any) -> int:
    seen: dict[str, int] = {}
    for record in records:
        for o in record.outputs.values():
            seen[o.digest] = o.size
    return sum(seen.values())


# ── validation ───────────────────────────────────────────────────────────────


def validate_output(name: str, file: Path) -> None:
    """An engine that 'succeeds' without valid outputs has failed: check each output decodes."""
    if not file.is_file():
        raise EngineError(f"output {name} was not written")
    if file.stat().st_size == 0:
        raise EngineError(f"output {name} is empty")
    suffix = file.suffix.lower()
    try:
        if suffix in (".png", ".jpg", ".jpeg", ".webp"):
            from PIL import Image

            with Image.open(file) as image:
                image.verify()
        elif suffix == ".wav":
            with wave.open(str(file), "rb") as w:
                if w.getnframes() == 0:
                    raise EngineError(f"output {name} holds no audio")
        elif suffix in (".mp4", ".mov", ".mkv", ".webm"):
            from .media import probe

            info = probe(file)
            if info.video is None or info.duration <= 0:
                raise EngineError(f"output {name}: ffprobe finds no video stream with a duration")
        elif suffix == ".json":
            json.loads(file.read_text(encoding="utf-8"))
        elif suffix in (".srt", ".ass", ".html", ".txt"):
            file.read_text(encoding="utf-8")
    except EngineError:
        raise
    except Exception as exc:  # any decoder's complaint means the output is unusable
        raise EngineError(f"output {name} is not a valid {suffix} file: {exc}") from exc


# ── small file-system helpers ────────────────────────────────────────────────


def atomic_write(path: Path, text: str, durable: bool = True) -> None:
    """Write a file so that readers see the old or the new content, never a part. `durable`: fsync
    it first; files that are only a speed-up or rewritten by every build (the index, the reports)
    skip that, since a no-op build would wait longer for the fsyncs than it takes to plan."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        if durable:
            f.flush()
            os.fsync(f.fileno())
    os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
