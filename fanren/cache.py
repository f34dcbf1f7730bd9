"""The cache: a content store (digest → bytes), an action cache (key → outputs), a stat memo, locks.

Layout under the cache root (`.fanren-cache/` in the drama folder by default):

    objects/ab/cdef…        files named by their xxh3-128 digest, read-only
    actions/ab/<key>.json   one record per finished node
    tmp/<pid>-<n>/          where engines write; committed by rename, cleaned when the pid is gone
    locks/                  flock files: one per project build, one per key
    logs/<node>.log         the last failure of a node
    statmemo.json           (inode, mtime_ns, size) → digest, so an unchanged file is never re-read
    timings.json            seconds per node for each engine, for ETAs

Commit protocol: engine writes into tmp → outputs validated → fsync → rename into objects → action
record written atomically. A record or object that fails to parse or verify is a miss: it is removed
with a warning and rebuilt. Killing fanren at any moment leaves only tmp dirs, which are cleaned.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import shutil
import socket
import threading
import time
import wave
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import xxhash

from .errors import EngineError

log = logging.getLogger("fanren")

RECORD_VERSION = 1
_CHUNK = 1 << 20


def digest_bytes(data: bytes) -> str:
    return xxhash.xxh3_128_hexdigest(data)


def digest_file(path: Path) -> str:
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
    digest: str
    size: int


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

    def digest(self, path: Path) -> str:
        st = path.stat()
        stamp = [st.st_ino, st.st_mtime_ns, st.st_size]
        key = str(path)
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


class Cache:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.objects = self.root / "objects"
        self.actions = self.root / "actions"
        self.tmp = self.root / "tmp"
        self.locks = self.root / "locks"
        self.logs = self.root / "logs"
        for d in (self.objects, self.actions, self.tmp, self.locks, self.logs):
            d.mkdir(parents=True, exist_ok=True)
        self.memo = StatMemo(self.root / "statmemo.json")
        self._tmp_counter = 0
        self._tmp_lock = threading.Lock()

    # ── content store ────────────────────────────────────────────────────────

    def object_path(self, digest: str) -> Path:
        return self.objects / digest[:2] / digest[2:]

    def _store(self, file: Path) -> Output:
        """Move a validated file into the content store under its digest (read-only, fsynced)."""
        digest = digest_file(file)
        target = self.object_path(digest)
        size = file.stat().st_size
        if not (target.exists() and target.stat().st_size == size):
            target.parent.mkdir(exist_ok=True)
            with open(file, "rb") as f:
                os.fsync(f.fileno())
            os.chmod(file, 0o444)
            os.replace(file, target)
            _fsync_dir(target.parent)
        self.memo.remember(target, digest)
        return Output(digest=digest, size=size)

    def verify_object(self, output: Output) -> bool:
        """The object exists with the recorded size and (through the stat memo) the recorded digest."""
        path = self.object_path(output.digest)
        try:
            if path.stat().st_size != output.size:
                return False
            return self.memo.digest(path) == output.digest
        except OSError:
            return False

    # ── action cache ─────────────────────────────────────────────────────────

    def record_path(self, key: str) -> Path:
        return self.actions / key[:2] / f"{key}.json"

    def lookup(self, key: str) -> ActionRecord | None:
        """The record of `key` if it and all its objects are intact; a corrupt one is removed."""
        path = self.record_path(key)
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
        for name, output in record.outputs.items():
            if not self.verify_object(output):
                log.warning("cache: object %s (%s of %s) is missing or corrupt; removed, "
                            "the node will be rebuilt", output.digest, name, record.node)
                self._remove_object(output.digest)
                path.unlink(missing_ok=True)
                return None
        return record

    def peek(self, key: str) -> ActionRecord | None:
        """The record of `key` without verifying objects (for explain: fields only)."""
        try:
            return ActionRecord.from_json(self.record_path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError, TypeError, KeyError):
            return None

    def _remove_object(self, digest: str) -> None:
        path = self.object_path(digest)
        self.memo.forget(path)
        with contextlib.suppress(OSError):
            os.chmod(path, 0o644)
            path.unlink()

    def commit(self, key: str, node: str, kind: str, engine: str, fields: dict[str, Any],
               files: Mapping[str, Path], seconds: float) -> ActionRecord:
        """Validate what an engine wrote, store it, then write the action record atomically."""
        if not files:
            raise EngineError(f"{node}: the engine finished without writing any output")
        for name, file in files.items():
            validate_output(name, file)
        outputs = {name: self._store(file) for name, file in sorted(files.items())}
        record = ActionRecord(key=key, node=node, kind=kind, engine=engine, fields=fields,
                              outputs=outputs, seconds=round(seconds, 3), host=socket.gethostname(),
                              time=round(time.time(), 3))
        path = self.record_path(key)
        path.parent.mkdir(exist_ok=True)
        atomic_write(path, record.to_json())
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
    def lock(self, name: str, blocking: bool = True) -> Iterator[bool]:
        """An OS advisory lock (flock), released when the process dies. Yields whether it was taken."""
        path = self.locks / f"{name}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
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

    # ── timings (ETA) ────────────────────────────────────────────────────────

    def load_timings(self) -> dict[str, float]:
        try:
            raw = json.loads((self.root / "timings.json").read_text())
            return {str(k): float(v) for k, v in raw.items()}
        except (OSError, ValueError, AttributeError):
            return {}

    def save_timings(self, timings: Mapping[str, float]) -> None:
        atomic_write(self.root / "timings.json", json.dumps(dict(sorted(timings.items())), indent=1))

    # ── gc ───────────────────────────────────────────────────────────────────

    def records(self) -> Iterator[tuple[Path, ActionRecord | None]]:
        for path in self.actions.glob("*/*.json"):
            try:
                yield path, ActionRecord.from_json(path.read_text(encoding="utf-8"))
            except (OSError, ValueError, TypeError, KeyError):
                yield path, None

    def gc(self, keep_keys: set[str], max_size: int | None) -> GcResult:
        """Remove records not reached by keep_keys and unreferenced objects; then, if the cache is
        still over max_size, evict records cheapest to recompute first (least seconds per byte)."""
        removed_records = 0
        kept: list[tuple[Path, ActionRecord]] = []
        evictable: list[tuple[Path, ActionRecord]] = []
        for path, record in self.records():
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
        for obj in self.objects.glob("*/*"):
            digest = obj.parent.name + obj.name
            if digest not in live:
                freed += obj.stat().st_size
                self._remove_object(digest)
                removed_objects += 1
        for lock in self.locks.glob("keys/*.lock"):
            with contextlib.suppress(OSError):
                lock.unlink()
        self.memo.save()
        return GcResult(removed_records, removed_objects, freed, _referenced_size(r for _, r in kept))

    def size(self) -> int:
        return sum(p.stat().st_size for p in self.objects.glob("*/*"))


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


def atomic_write(path: Path, text: str) -> None:
    """Write a file so that readers see the old or the new content, never a part."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
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
