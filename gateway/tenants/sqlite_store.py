"""Keys, audit log and usage in the job store's SQLite file (one gateway): tables of their own, on
the job store's connection (``SQLiteJobStore.run``: each call one short transaction in a thread),
like the web UI's sessions."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import TypeVar

from gateway.jobs.sqlite_store import SQLiteJobStore
from gateway.tenants.records import ApiKey, SecretRef
from gateway.tenants.store import AUDIT_KEPT, AuditEntry, KeyStore
from gateway.tenants.usage import COUNTERS, UsageCounts

T = TypeVar("T")

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS api_keys (id TEXT PRIMARY KEY, created_at REAL NOT NULL, doc TEXT NOT NULL,
    last_used_at REAL);
CREATE TABLE IF NOT EXISTS api_key_secrets (hash TEXT PRIMARY KEY, key_id TEXT NOT NULL, valid_until REAL);
CREATE INDEX IF NOT EXISTS api_key_secrets_key ON api_key_secrets (key_id);
CREATE TABLE IF NOT EXISTS audit (seq INTEGER PRIMARY KEY AUTOINCREMENT, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS key_usage (caller TEXT NOT NULL, day TEXT NOT NULL,
    {", ".join(f"{name} REAL NOT NULL DEFAULT 0" for name in COUNTERS)}, PRIMARY KEY (caller, day));
"""


class SQLiteKeyStore(KeyStore):
    def __init__(self, store: SQLiteJobStore) -> None:
        self._store = store
        self._ready = False

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if not self._ready:  # executescript would commit the store's open transaction: one by one
            await self._store.run(lambda db: [db.execute(sql) for sql in _SCHEMA.split(";") if sql.strip()])
            self._ready = True
        return await self._store.run(work)

    async def save_key(self, key: ApiKey) -> None:
        await self._run(lambda db: db.execute(
            "INSERT INTO api_keys (id, created_at, doc) VALUES (?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET doc = excluded.doc",
            (key.id, key.created_at, key.model_dump_json(exclude={"last_used_at"}))))

    @staticmethod
    def _key_of(row: tuple) -> ApiKey:
        return ApiKey.model_validate_json(row[0]).model_copy(update={"last_used_at": row[1]})

    async def get_key(self, key_id: str) -> ApiKey | None:
        row = await self._run(lambda db: db.execute(
            "SELECT doc, last_used_at FROM api_keys WHERE id = ?", (key_id,)).fetchone())
        return None if row is None else self._key_of(row)

    async def list_keys(self) -> list[ApiKey]:
        rows = await self._run(lambda db: db.execute(
            "SELECT doc, last_used_at FROM api_keys ORDER BY created_at").fetchall())
        return [self._key_of(row) for row in rows]

    async def save_secret(self, secret_hash: str, ref: SecretRef) -> None:
        await self._run(lambda db: db.execute(
            "INSERT OR REPLACE INTO api_key_secrets (hash, key_id, valid_until) VALUES (?, ?, ?)",
            (secret_hash, ref.key_id, ref.valid_until)))

    async def find_secret(self, secret_hash: str) -> SecretRef | None:
        row = await self._run(lambda db: db.execute(
            "SELECT key_id, valid_until FROM api_key_secrets WHERE hash = ?", (secret_hash,)).fetchone())
        return None if row is None else SecretRef(key_id=row[0], valid_until=row[1])

    async def end_secrets(self, key_id: str, until: float | None, keep: str | None = None) -> None:
        if until is None:
            await self._run(lambda db: db.execute(
                "DELETE FROM api_key_secrets WHERE key_id = ? AND hash IS NOT ?", (key_id, keep)))
            return
        await self._run(lambda db: db.execute(
            "UPDATE api_key_secrets SET valid_until = ? WHERE key_id = ? AND hash IS NOT ? "
            "AND (valid_until IS NULL OR valid_until > ?)", (until, key_id, keep, until)))

    async def touch(self, key_id: str, at: float) -> None:
        await self._run(lambda db: db.execute("UPDATE api_keys SET last_used_at = ? WHERE id = ?", (at, key_id)))

    async def append_audit(self, entry: AuditEntry) -> None:
        def append(db: sqlite3.Connection) -> None:
            cursor = db.execute("INSERT INTO audit (doc) VALUES (?)", (entry.model_dump_json(),))
            db.execute("DELETE FROM audit WHERE seq <= ?", ((cursor.lastrowid or 0) - AUDIT_KEPT,))

        await self._run(append)

    async def audit(self, limit: int) -> list[AuditEntry]:
        rows = await self._run(lambda db: db.execute(
            "SELECT doc FROM audit ORDER BY seq DESC LIMIT ?", (limit,)).fetchall())
        return [AuditEntry.model_validate_json(row[0]) for row in rows]

    async def add_usage(self, caller: str, day: str, counts: UsageCounts) -> None:
        values = [getattr(counts, name) for name in COUNTERS]
        await self._run(lambda db: db.execute(
            f"INSERT INTO key_usage (caller, day, {', '.join(COUNTERS)}) "
            f"VALUES (?, ?, {', '.join('?' * len(COUNTERS))}) "
            f"ON CONFLICT (caller, day) DO UPDATE SET "
            f"{', '.join(f'{name} = {name} + excluded.{name}' for name in COUNTERS)}",
            (caller, day, *values)))

    async def usage(self, days: list[str], caller: str | None = None) -> dict[str, dict[str, UsageCounts]]:
        if not days:
            return {}
        query = f"SELECT caller, day, {', '.join(COUNTERS)} FROM key_usage WHERE day >= ? AND day <= ?"
        args: list[str] = [min(days), max(days)]
        if caller is not None:
            query += " AND caller = ?"
            args.append(caller)
        rows = await self._run(lambda db: db.execute(query, args).fetchall())
        found: dict[str, dict[str, UsageCounts]] = {}
        for who, day, *values in rows:
            fields = dict(zip(COUNTERS, values, strict=True))
            found.setdefault(who, {})[day] = UsageCounts.model_validate(
                {name: value if name in ("compute_units", "model_seconds") else int(value)
                 for name, value in fields.items()})
        return found

    async def close(self) -> None:
        """The connection is the job store's: it closes it."""

