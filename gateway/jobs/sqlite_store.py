"""The single-gateway job store: one SQLite file (WAL)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from gateway.generation.cache import CacheEntry
from gateway.jobs.records import INDEXES, IdempotencyConflictError, Job, JobEvent, next_event
from gateway.jobs.store import Change, IdempotencyKey, JobStore

T = TypeVar("T")


_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    created_at REAL NOT NULL,
    doc TEXT NOT NULL,
    {", ".join(f"{name}_at REAL" for name in INDEXES)}
);
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs (owner, created_at);
CREATE TABLE IF NOT EXISTS events (job_id TEXT NOT NULL, id INTEGER NOT NULL, doc TEXT NOT NULL,
    PRIMARY KEY (job_id, id));
CREATE TABLE IF NOT EXISTS inputs (id TEXT PRIMARY KEY, image BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS idempotency (
    owner TEXT NOT NULL, key TEXT NOT NULL, body_hash TEXT NOT NULL, job_id TEXT NOT NULL,
    expires_at REAL NOT NULL, PRIMARY KEY (owner, key));
CREATE TABLE IF NOT EXISTS turns (owner TEXT PRIMARY KEY, at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS cache (
    key TEXT PRIMARY KEY, doc TEXT NOT NULL, size_bytes INTEGER NOT NULL, created_at REAL NOT NULL,
    last_used REAL NOT NULL);
CREATE INDEX IF NOT EXISTS cache_lru ON cache (last_used);
"""


def _index_columns(db: sqlite3.Connection) -> None:
    """A column and an SQL index per job index; a file from before an index gains its column (the
    reaper puts the queued jobs into the new indexes as it starts)."""
    existing = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
    for name in INDEXES:
        if f"{name}_at" not in existing:
            with contextlib.suppress(sqlite3.OperationalError):  # another process added it just now
                db.execute(f"ALTER TABLE jobs ADD COLUMN {name}_at REAL")
        db.execute(f"CREATE INDEX IF NOT EXISTS jobs_{name} ON jobs ({name}_at)")


class SQLiteJobStore(JobStore):
    """One SQLite file (WAL). Calls run in a thread; one lock keeps each change atomic."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        _index_columns(self._db)
        self._lock = threading.Lock()
        self._closed = False

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def locked() -> T:
            with self._lock:
                if self._closed:
                    raise sqlite3.ProgrammingError("the job store is closed")
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    outcome = work(self._db)
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
                return outcome
        return await asyncio.to_thread(locked)

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """``work`` as one transaction on this store's connection, for records kept beside the
        jobs by other layers (the web UI's sessions: gateway/edge/sessions.py)."""
        return await self._run(work)

    @staticmethod
    def _write(db: sqlite3.Connection, job: Job, before: Job | None) -> Job:
        """Write a job (and the event its change records, in the same transaction); the job as written."""
        recorded = next_event(before, job)
        if recorded is not None:
            job, event = recorded
            db.execute("INSERT INTO events VALUES (?, ?, ?)", (job.id, event.id, event.model_dump_json()))
        scores = job.index_scores()
        columns = ", ".join(f"{name}_at" for name in INDEXES)
        marks = ", ".join("?" for _ in INDEXES)
        db.execute(f"INSERT OR REPLACE INTO jobs (id, owner, created_at, doc, {columns}) VALUES (?, ?, ?, ?, {marks})",
                   (job.id, job.owner, job.created_at, job.model_dump_json(), *(scores[n] for n in INDEXES)))
        return job

    @staticmethod
    def _read(db: sqlite3.Connection, job_id: str) -> Job | None:
        row = db.execute("SELECT doc FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return Job.model_validate_json(row[0]) if row else None

    async def insert(self, job: Job, image: bytes, idempotency: IdempotencyKey | None,
                     ttl_s: float) -> tuple[Job, bool]:
        def work(db: sqlite3.Connection) -> tuple[Job, bool]:
            if idempotency is not None:
                row = db.execute("SELECT body_hash, job_id FROM idempotency WHERE owner = ? AND key = ? "
                                 "AND expires_at > ?", (idempotency.owner, idempotency.key, time.time())).fetchone()
                if row is not None:
                    earlier = self._read(db, row[1])
                    if row[0] != idempotency.body_hash:
                        raise IdempotencyConflictError(row[1])
                    if earlier is not None:
                        return earlier, False
                db.execute("INSERT OR REPLACE INTO idempotency VALUES (?, ?, ?, ?, ?)",
                           (idempotency.owner, idempotency.key, idempotency.body_hash, job.id, time.time() + ttl_s))
            stored = self._write(db, job, None)
            db.execute("INSERT OR REPLACE INTO inputs VALUES (?, ?)", (job.id, image))
            return stored, True
        return await self._run(work)

    async def get(self, job_id: str) -> Job | None:
        return await self._run(lambda db: self._read(db, job_id))

    async def _mutate(self, job_id: str, change: Change) -> tuple[Job | None, bool]:
        def work(db: sqlite3.Connection) -> tuple[Job | None, bool]:
            job = self._read(db, job_id)
            if job is None:
                return None, False
            changed = change(job)
            if changed is None:
                return job, False
            return self._write(db, changed, job), True
        return await self._run(work)

    async def due(self, index: str, until: float, limit: int = 20) -> list[str]:
        if index not in INDEXES:
            raise ValueError(index)
        rows = await self._run(lambda db: db.execute(
            f"SELECT id FROM jobs WHERE {index}_at IS NOT NULL AND {index}_at <= ? ORDER BY {index}_at LIMIT ?",
            (until, limit)).fetchall())
        return [row[0] for row in rows]

    async def set_index(self, index: str, job_id: str, score: float | None) -> None:
        if index not in INDEXES:
            raise ValueError(index)
        await self._run(lambda db: db.execute(f"UPDATE jobs SET {index}_at = ? WHERE id = ?", (score, job_id)))

    async def jobs_in(self, index: str, until: float, limit: int) -> list[Job]:
        if index not in INDEXES:
            raise ValueError(index)
        rows = await self._run(lambda db: db.execute(
            f"SELECT doc FROM jobs WHERE {index}_at IS NOT NULL AND {index}_at <= ? ORDER BY {index}_at LIMIT ?",
            (until, limit)).fetchall())
        return [Job.model_validate_json(row[0]) for row in rows]

    async def events_after(self, job_id: str, after: int, limit: int = 100) -> list[JobEvent]:
        after = min(max(after, 0), 2**62)  # SQLite integers are 64-bit: a larger one would overflow
        rows = await self._run(lambda db: db.execute(
            "SELECT doc FROM events WHERE job_id = ? AND id > ? ORDER BY id LIMIT ?",
            (job_id, after, limit)).fetchall())
        return [JobEvent.model_validate_json(row[0]) for row in rows]

    async def list_for_owner(self, owner: str, offset: int, limit: int) -> list[Job]:
        rows = await self._run(lambda db: db.execute(
            "SELECT doc FROM jobs WHERE owner = ? ORDER BY created_at DESC, id LIMIT ? OFFSET ?",
            (owner, limit, offset)).fetchall())
        return [Job.model_validate_json(row[0]) for row in rows]

    async def record_turn(self, owner: str, at: float) -> None:
        await self._run(lambda db: db.execute("INSERT OR REPLACE INTO turns VALUES (?, ?)", (owner, at)))

    async def turns(self, owners: list[str]) -> dict[str, float]:
        if not owners:
            return {}
        marks = ", ".join("?" for _ in owners)
        rows = await self._run(lambda db: db.execute(
            f"SELECT owner, at FROM turns WHERE owner IN ({marks})", owners).fetchall())
        return {owner: at for owner, at in rows}

    async def count_queued(self, owner: str | None = None) -> int:
        args: tuple[Any, ...] = ()
        if owner is None:
            query = "SELECT COUNT(*) FROM jobs WHERE queued_at IS NOT NULL"
        else:
            query, args = "SELECT COUNT(*) FROM jobs WHERE queued_at IS NOT NULL AND owner = ?", (owner,)
        row = await self._run(lambda db: db.execute(query, args).fetchone())
        return int(row[0])

    async def load_input(self, job_id: str) -> bytes | None:
        row = await self._run(lambda db: db.execute("SELECT image FROM inputs WHERE id = ?", (job_id,)).fetchone())
        return bytes(row[0]) if row else None

    async def drop_input(self, job_id: str) -> None:
        await self._run(lambda db: db.execute("DELETE FROM inputs WHERE id = ?", (job_id,)))

    async def delete(self, job_id: str) -> None:
        def work(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
            db.execute("DELETE FROM inputs WHERE id = ?", (job_id,))
            db.execute("DELETE FROM events WHERE job_id = ?", (job_id,))
            db.execute("DELETE FROM idempotency WHERE job_id = ?", (job_id,))
        await self._run(work)

    async def cache_get(self, key: str) -> CacheEntry | None:
        def work(db: sqlite3.Connection) -> CacheEntry | None:
            row = db.execute("SELECT doc FROM cache WHERE key = ?", (key,)).fetchone()
            if row is None:
                return None
            entry = CacheEntry.model_validate_json(row[0]).model_copy(update={"last_used": time.time()})
            db.execute("UPDATE cache SET doc = ?, last_used = ? WHERE key = ?",
                       (entry.model_dump_json(), entry.last_used, key))
            return entry
        return await self._run(work)

    async def cache_put(self, entry: CacheEntry, max_bytes: int) -> list[str]:
        def work(db: sqlite3.Connection) -> list[str]:
            db.execute("INSERT OR REPLACE INTO cache VALUES (?, ?, ?, ?, ?)",
                       (entry.key, entry.model_dump_json(), entry.size_bytes, entry.created_at, entry.last_used))
            total = db.execute("SELECT COALESCE(SUM(size_bytes), 0) FROM cache").fetchone()[0]
            evicted: list[str] = []
            for key, size in db.execute("SELECT key, size_bytes FROM cache ORDER BY last_used").fetchall():
                if total <= max_bytes:
                    break
                evicted.append(key)
                total -= size
            db.executemany("DELETE FROM cache WHERE key = ?", [(key,) for key in evicted])
            return evicted
        return await self._run(work)

    async def cache_drop(self, key: str) -> None:
        await self._run(lambda db: db.execute("DELETE FROM cache WHERE key = ?", (key,)))

    async def cache_older_than(self, before: float) -> list[str]:
        rows = await self._run(lambda db: db.execute("SELECT key FROM cache WHERE created_at < ?",
                                                     (before,)).fetchall())
        return [row[0] for row in rows]

    async def ping(self) -> None:
        await self._run(lambda db: db.execute("SELECT 1"))

    async def close(self) -> None:
        # Under the lock: a worker thread may still be inside a query that a cancelled task
        # started, and closing the connection under it crashes the process.
        def close() -> None:
            with self._lock:
                self._closed = True
                self._db.close()
        await asyncio.to_thread(close)
