"""SQLite: API keys (hashed), jobs, their nodes and progress events, and each key's daily usage.

One file under the data folder, in WAL mode so the runner's writes never block a status read.
Every read that a client triggers is filtered by key id: another key's job is simply not found.
A connection per thread (sqlite3 objects must not cross threads); each write is one transaction.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED = "queued", "running", "completed", "failed", "cancelled"
ACTIVE = (QUEUED, RUNNING)
TERMINAL = (COMPLETED, FAILED, CANCELLED)
KEY_PREFIX = "fr_"

SCHEMA = """
CREATE TABLE IF NOT EXISTS keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    hash TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL,
    revoked REAL,
    jobs_per_day INTEGER,
    gpu_seconds_per_day REAL,
    profiles TEXT
);
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT UNIQUE NOT NULL,
    key_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    profile TEXT NOT NULL,
    status TEXT NOT NULL,
    created REAL NOT NULL,
    started REAL,
    finished REAL,
    progress REAL NOT NULL DEFAULT 0,
    error TEXT,
    gpu_seconds REAL NOT NULL DEFAULT 0,
    cancel INTEGER NOT NULL DEFAULT 0,
    spec TEXT NOT NULL,
    report TEXT,
    batch_id TEXT,
    idempotency_key TEXT,
    request_digest TEXT,
    UNIQUE (key_id, idempotency_key)
);
CREATE INDEX IF NOT EXISTS jobs_by_key ON jobs (key_id, seq);
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status, seq);
CREATE TABLE IF NOT EXISTS nodes (
    job_id TEXT NOT NULL,
    node_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    engine TEXT NOT NULL,
    status TEXT NOT NULL,
    seconds REAL NOT NULL DEFAULT 0,
    error TEXT,
    PRIMARY KEY (job_id, node_id)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id TEXT NOT NULL,
    type TEXT NOT NULL,
    data TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_by_job ON events (job_id, id);
CREATE TABLE IF NOT EXISTS usage (
    key_id TEXT NOT NULL,
    day TEXT NOT NULL,
    jobs INTEGER NOT NULL DEFAULT 0,
    gpu_seconds REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (key_id, day)
);
"""


def hash_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def today(now: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if now is None else now, UTC).strftime("%Y-%m-%d")


def next_reset(now: float | None = None) -> datetime:
    """Quotas are per UTC day: they reset at the next midnight UTC."""
    day = datetime.fromtimestamp(time.time() if now is None else now, UTC).date() + timedelta(days=1)
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


@dataclass(frozen=True)
class ApiKey:
    id: str
    name: str
    created: float
    expires: float | None
    revoked: float | None
    jobs_per_day: int | None
    gpu_seconds_per_day: float | None
    profiles: tuple[str, ...] | None   # None: every profile

    def state(self, now: float | None = None) -> str:
        now = time.time() if now is None else now
        if self.revoked is not None:
            return "revoked"
        if self.expires is not None and self.expires <= now:
            return "expired"
        return "active"


@dataclass(frozen=True)
class Job:
    seq: int
    id: str
    key_id: str
    kind: str             # video (the seed endpoint) | drama | novel
    profile: str
    status: str
    created: float
    started: float | None
    finished: float | None
    progress: float
    error: str | None
    gpu_seconds: float
    cancel: bool
    spec: dict[str, Any]
    report: dict[str, Any] | None
    batch_id: str | None
    idempotency_key: str | None
    request_digest: str | None


@dataclass(frozen=True)
class NodeRow:
    node_id: str
    kind: str
    engine: str
    status: str
    seconds: float
    error: str | None


@dataclass(frozen=True)
class Event:
    id: int
    job_id: str
    type: str
    data: dict[str, Any]


@dataclass(frozen=True)
class Usage:
    jobs: int
    gpu_seconds: float


class Duplicate(Exception):
    """A submit with an Idempotency-Key this key already used: carries the job it made."""

    def __init__(self, job: Job) -> None:
        super().__init__(job.id)
        self.job = job


class Refused(Exception):
    """A submit the limits turn away: `reason` is "jobs-per-day", "queue" or "key-queue"."""

    def __init__(self, reason: str, used: int, limit: int) -> None:
        super().__init__(reason)
        self.reason, self.used, self.limit = reason, used, limit


@dataclass(frozen=True)
class Limits:
    jobs_per_day: int | None = None
    max_active: int | None = None          # queued + running jobs of every key
    max_active_for_key: int | None = None


class Store:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._db().executescript(SCHEMA)   # executescript commits on its own

    # ── connections ─────────────────────────────────────────────────────────

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")   # WAL + NORMAL: a commit survives a process kill
            db.execute("PRAGMA busy_timeout=30000")
            self._local.db = db
        return db

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    # ── keys ────────────────────────────────────────────────────────────────

    def create_key(self, name: str, jobs_per_day: int | None = None, gpu_seconds_per_day: float | None = None,
                   profiles: list[str] | None = None, expires: float | None = None) -> tuple[ApiKey, str]:
        """A new key and its token. Only the token's sha256 is stored: the token is shown once."""
        key_id = secrets.token_hex(4)
        token = f"{KEY_PREFIX}{key_id}_{secrets.token_urlsafe(24)}"
        with self._tx() as db:
            db.execute("INSERT INTO keys (id, name, hash, created, expires, jobs_per_day, gpu_seconds_per_day,"
                       " profiles) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (key_id, name, hash_key(token), time.time(), expires, jobs_per_day, gpu_seconds_per_day,
                        json.dumps(profiles) if profiles else None))
        key = self.key(key_id)
        assert key is not None
        return key, token

    def key(self, key_id: str) -> ApiKey | None:
        row = self._db().execute("SELECT * FROM keys WHERE id = ?", (key_id,)).fetchone()
        return _key(row) if row else None

    def all_keys(self) -> list[ApiKey]:
        return [_key(r) for r in self._db().execute("SELECT * FROM keys ORDER BY created")]

    def find_key(self, name_or_id: str) -> ApiKey | None:
        row = self._db().execute("SELECT * FROM keys WHERE id = ? OR name = ? ORDER BY created DESC",
                                 (name_or_id, name_or_id)).fetchone()
        return _key(row) if row else None

    def revoke_key(self, key_id: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE keys SET revoked = ? WHERE id = ? AND revoked IS NULL", (time.time(), key_id))

    def authenticate(self, token: str) -> ApiKey | None:
        """The key a token belongs to (whatever its state), or None. Compares hashes in constant time."""
        if not token.startswith(KEY_PREFIX):
            return None
        key_id = token[len(KEY_PREFIX):].split("_", 1)[0]
        row = self._db().execute("SELECT * FROM keys WHERE id = ?", (key_id,)).fetchone()
        if row is None or not hmac.compare_digest(row["hash"], hash_key(token)):
            return None
        return _key(row)

    # ── usage ───────────────────────────────────────────────────────────────

    def usage(self, key_id: str, day: str | None = None) -> Usage:
        row = self._db().execute("SELECT jobs, gpu_seconds FROM usage WHERE key_id = ? AND day = ?",
                                 (key_id, day or today())).fetchone()
        return Usage(row["jobs"], row["gpu_seconds"]) if row else Usage(0, 0.0)

    def add_gpu_seconds(self, key_id: str, seconds: float) -> None:
        if seconds <= 0:
            return
        with self._tx() as db:
            db.execute("INSERT INTO usage (key_id, day, gpu_seconds) VALUES (?, ?, ?) ON CONFLICT (key_id, day)"
                       " DO UPDATE SET gpu_seconds = gpu_seconds + excluded.gpu_seconds",
                       (key_id, today(), seconds))

    # ── jobs ────────────────────────────────────────────────────────────────

    def add_job(self, key_id: str, kind: str, profile: str, spec: dict[str, Any], job_id: str | None = None,
                batch_id: str | None = None, idempotency_key: str | None = None,
                request_digest: str | None = None, limits: Limits = Limits()) -> Job:
        """Queue a job and count it against today's jobs, in one transaction with the limits' checks.

        Raises Duplicate for a reused Idempotency-Key, Refused when a limit is reached.
        """
        job_id = job_id or new_id("job")
        now = time.time()
        with self._tx() as db:
            if idempotency_key is not None:
                row = db.execute("SELECT * FROM jobs WHERE key_id = ? AND idempotency_key = ?",
                                 (key_id, idempotency_key)).fetchone()
                if row is not None:
                    raise Duplicate(_job(row))
            if limits.jobs_per_day is not None:
                row = db.execute("SELECT jobs FROM usage WHERE key_id = ? AND day = ?",
                                 (key_id, today(now))).fetchone()
                if row is not None and row["jobs"] >= limits.jobs_per_day:
                    raise Refused("jobs-per-day", row["jobs"], limits.jobs_per_day)
            active = "SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running')"
            if limits.max_active is not None:
                count = int(db.execute(active).fetchone()[0])
                if count >= limits.max_active:
                    raise Refused("queue", count, limits.max_active)
            if limits.max_active_for_key is not None:
                count = int(db.execute(active + " AND key_id = ?", (key_id,)).fetchone()[0])
                if count >= limits.max_active_for_key:
                    raise Refused("key-queue", count, limits.max_active_for_key)
            db.execute("INSERT INTO jobs (id, key_id, kind, profile, status, created, spec, batch_id,"
                       " idempotency_key, request_digest) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (job_id, key_id, kind, profile, QUEUED, now, json.dumps(spec, ensure_ascii=False),
                        batch_id, idempotency_key, request_digest))
            db.execute("INSERT INTO usage (key_id, day, jobs) VALUES (?, ?, 1) ON CONFLICT (key_id, day)"
                       " DO UPDATE SET jobs = jobs + 1", (key_id, today(now)))
            self._event(db, job_id, "queued", {"status": QUEUED})
        job = self.job(job_id)
        assert job is not None
        return job

    def job(self, job_id: str, key_id: str | None = None) -> Job | None:
        """The job, or None when it does not exist or (with `key_id`) belongs to another key."""
        if key_id is None:
            row = self._db().execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        else:
            row = self._db().execute("SELECT * FROM jobs WHERE id = ? AND key_id = ?", (job_id, key_id)).fetchone()
        return _job(row) if row else None

    def jobs(self, key_id: str, limit: int = 20, before: int | None = None, batch_id: str | None = None,
             status: str | None = None, idempotency_key: str | None = None) -> list[Job]:
        """A key's jobs, newest first, from before `seq` (the cursor)."""
        sql, args = "SELECT * FROM jobs WHERE key_id = ?", [key_id]
        if before is not None:
            sql, args = sql + " AND seq < ?", [*args, before]
        if batch_id is not None:
            sql, args = sql + " AND batch_id = ?", [*args, batch_id]
        if status is not None:
            sql, args = sql + " AND status = ?", [*args, status]
        if idempotency_key is not None:
            sql, args = sql + " AND idempotency_key = ?", [*args, idempotency_key]
        rows = self._db().execute(sql + " ORDER BY seq DESC LIMIT ?", (*args, limit)).fetchall()
        return [_job(r) for r in rows]

    def count_active(self, key_id: str | None = None) -> int:
        sql = "SELECT COUNT(*) FROM jobs WHERE status IN ('queued', 'running')"
        if key_id is None:
            return int(self._db().execute(sql).fetchone()[0])
        return int(self._db().execute(sql + " AND key_id = ?", (key_id,)).fetchone()[0])

    def next_queued(self) -> Job | None:
        """The oldest job to run: one left running by a crash first, then the oldest queued one."""
        row = self._db().execute("SELECT * FROM jobs WHERE status IN ('running', 'queued')"
                                 " ORDER BY status = 'queued', seq LIMIT 1").fetchone()
        return _job(row) if row else None

    def start_job(self, job_id: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE jobs SET status = ?, started = COALESCE(started, ?) WHERE id = ?",
                       (RUNNING, time.time(), job_id))
            self._event(db, job_id, "status", {"status": RUNNING})

    def finish_job(self, job_id: str, status: str, error: str | None = None,
                   report: dict[str, Any] | None = None) -> None:
        with self._tx() as db:
            db.execute("UPDATE jobs SET status = ?, finished = ?, error = ?, report = COALESCE(?, report),"
                       " progress = CASE WHEN ? = 'completed' THEN 1.0 ELSE progress END WHERE id = ?",
                       (status, time.time(), error, json.dumps(report, ensure_ascii=False) if report else None,
                        status, job_id))
            self._event(db, job_id, "status", {"status": status, **({"error": error} if error else {})})

    def requeue_job(self, job_id: str) -> None:
        """Back to the queue (the server stopped mid-build); it runs again first on the next start."""
        with self._tx() as db:
            db.execute("UPDATE jobs SET status = ? WHERE id = ? AND status = ?", (QUEUED, job_id, RUNNING))
            self._event(db, job_id, "status", {"status": QUEUED, "reason": "the server stopped; it resumes"})

    def request_cancel(self, job_id: str) -> Job | None:
        """Cancel: a queued job at once; a running one at its next node boundary (the runner ends it)."""
        with self._tx() as db:
            row = db.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                return None
            if row["status"] == QUEUED:
                db.execute("UPDATE jobs SET status = ?, cancel = 1, finished = ? WHERE id = ?",
                           (CANCELLED, time.time(), job_id))
                self._event(db, job_id, "status", {"status": CANCELLED})
            elif row["status"] == RUNNING:
                db.execute("UPDATE jobs SET cancel = 1 WHERE id = ?", (job_id,))
        return self.job(job_id)

    def add_job_gpu_seconds(self, job: Job, seconds: float) -> None:
        with self._tx() as db:
            db.execute("UPDATE jobs SET gpu_seconds = gpu_seconds + ? WHERE id = ?", (seconds, job.id))
        self.add_gpu_seconds(job.key_id, seconds)

    def set_progress(self, job_id: str, fraction: float, data: dict[str, Any]) -> None:
        with self._tx() as db:
            db.execute("UPDATE jobs SET progress = ? WHERE id = ?", (fraction, job_id))
            self._event(db, job_id, "progress", {"progress": round(fraction, 4), **data})

    # ── nodes ───────────────────────────────────────────────────────────────

    def set_nodes(self, job_id: str, nodes: list[NodeRow]) -> None:
        with self._tx() as db:
            db.executemany("INSERT INTO nodes (job_id, node_id, kind, engine, status, seconds, error)"
                           " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (job_id, node_id) DO UPDATE SET"
                           " kind = excluded.kind, engine = excluded.engine, status = excluded.status,"
                           " seconds = excluded.seconds, error = excluded.error",
                           [(job_id, n.node_id, n.kind, n.engine, n.status, n.seconds, n.error) for n in nodes])

    def set_node(self, job_id: str, node: NodeRow, event: bool = True) -> None:
        with self._tx() as db:
            db.execute("UPDATE nodes SET status = ?, seconds = ?, error = ? WHERE job_id = ? AND node_id = ?",
                       (node.status, node.seconds, node.error, job_id, node.node_id))
            if event:
                self._event(db, job_id, "node", {"node": node.node_id, "status": node.status,
                                                 "seconds": round(node.seconds, 3),
                                                 **({"error": node.error} if node.error else {})})

    def nodes(self, job_id: str) -> list[NodeRow]:
        rows = self._db().execute("SELECT * FROM nodes WHERE job_id = ? ORDER BY rowid", (job_id,)).fetchall()
        return [NodeRow(r["node_id"], r["kind"], r["engine"], r["status"], r["seconds"], r["error"]) for r in rows]

    # ── events ──────────────────────────────────────────────────────────────

    def events(self, job_id: str, after: int = 0, limit: int = 500) -> list[Event]:
        rows = self._db().execute("SELECT * FROM events WHERE job_id = ? AND id > ? ORDER BY id LIMIT ?",
                                  (job_id, after, limit)).fetchall()
        return [Event(r["id"], r["job_id"], r["type"], json.loads(r["data"])) for r in rows]

    def _event(self, db: sqlite3.Connection, job_id: str, type: str, data: dict[str, Any]) -> None:
        db.execute("INSERT INTO events (job_id, type, data, at) VALUES (?, ?, ?, ?)",
                   (job_id, type, json.dumps(data, ensure_ascii=False), time.time()))


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(8)}"


def _key(row: sqlite3.Row) -> ApiKey:
    return ApiKey(row["id"], row["name"], row["created"], row["expires"], row["revoked"], row["jobs_per_day"],
                  row["gpu_seconds_per_day"], tuple(json.loads(row["profiles"])) if row["profiles"] else None)


def _job(row: sqlite3.Row) -> Job:
    return Job(row["seq"], row["id"], row["key_id"], row["kind"], row["profile"], row["status"], row["created"],
               row["started"], row["finished"], row["progress"], row["error"], row["gpu_seconds"],
               bool(row["cancel"]), json.loads(row["spec"]), json.loads(row["report"]) if row["report"] else None,
               row["batch_id"], row["idempotency_key"], row["request_digest"])
