"""Web UI sessions kept server-side, beside the jobs (SQLite, or Redis so every replica agrees).

A session is a random 256-bit token in an HttpOnly cookie; the store keeps only its SHA-256,
the key name it signs in as, a fingerprint of the key's value at sign-in (so a key rotated
under the same name ends its sessions) and when it ends. So sign-out really ends it (a copied
cookie is refused afterwards), an expired one is refused, and ``revoke_key`` ends every session
of a key: what the admin API calls when it removes or rotates a key.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import sqlite3
import time
from collections.abc import Callable
from typing import NamedTuple, Protocol, TypeVar

import redis.asyncio as aioredis

from gateway.jobs.redis_store import PREFIX, RedisJobStore
from gateway.jobs.sqlite_store import SQLiteJobStore
from gateway.jobs.store import JobStore

T = TypeVar("T")


def _digest(token: str) -> str:
    # Only the hash is stored: a copy of the store (a backup, a replica) signs nobody in.
    return hashlib.sha256(token.encode()).hexdigest()


def key_fingerprint(secret: str) -> str:
    """64 bits of a salted hash of a key's value: enough to notice a rotation, too little to
    stand for the key."""
    return hashlib.sha256(f"i2v-ui-session:{secret}".encode()).hexdigest()[:16]


class Session(NamedTuple):
    caller: str  # the key's name
    fingerprint: str  # key_fingerprint of the key's value at sign-in


class SessionStore(Protocol):
    async def create(self, caller: str, max_age_s: float, fingerprint: str = "") -> str:
        """A new session for ``caller``: the token to put in the cookie."""

    async def session(self, token: str | None) -> Session | None:
        """A live session; None when unknown, revoked or expired."""

    async def revoke(self, token: str | None) -> None:
        """End one session (sign-out)."""

    async def revoke_key(self, caller: str) -> int:
        """End every session of ``caller`` (a key removed or rotated); how many there were."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS ui_sessions (
    digest TEXT PRIMARY KEY, caller TEXT NOT NULL, fingerprint TEXT NOT NULL, expires_at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS ui_sessions_caller ON ui_sessions (caller);
CREATE INDEX IF NOT EXISTS ui_sessions_expiry ON ui_sessions (expires_at);
"""


class SQLiteSessionStore:
    """A table in the job store's SQLite file, on the job store's connection."""

    def __init__(self, store: SQLiteJobStore) -> None:
        self._store = store
        self._ready = False

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        if not self._ready:  # executescript would commit the store's open transaction: one by one
            await self._store.run(lambda db: [db.execute(sql) for sql in _SCHEMA.split(";") if sql.strip()])
            self._ready = True
        return await self._store.run(work)

    async def create(self, caller: str, max_age_s: float, fingerprint: str = "") -> str:
        token = secrets.token_urlsafe(32)

        def work(db: sqlite3.Connection) -> None:
            now = time.time()
            db.execute("DELETE FROM ui_sessions WHERE expires_at <= ?", (now,))  # ended ones go as new ones come
            db.execute("INSERT INTO ui_sessions (digest, caller, fingerprint, expires_at) VALUES (?, ?, ?, ?)",
                       (_digest(token), caller, fingerprint, now + max_age_s))
        await self._run(work)
        return token

    async def session(self, token: str | None) -> Session | None:
        if not token:
            return None
        row = await self._run(lambda db: db.execute(
            "SELECT caller, fingerprint FROM ui_sessions WHERE digest = ? AND expires_at > ?",
            (_digest(token), time.time())).fetchone())
        return Session(row[0], row[1]) if row else None

    async def revoke(self, token: str | None) -> None:
        if token:
            await self._run(lambda db: db.execute("DELETE FROM ui_sessions WHERE digest = ?", (_digest(token),)))

    async def revoke_key(self, caller: str) -> int:
        return int(await self._run(lambda db: db.execute(
            "DELETE FROM ui_sessions WHERE caller = ?", (caller,)).rowcount))


class RedisSessionStore:
    """``i2v:uisession:<digest>`` (the key name, expiring with the session) and, per key name,
    the set ``i2v:uisessions:<name>`` of its digests, so that a key's sessions can all be ended."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    @staticmethod
    def _session(digest: str) -> str:
        return f"{PREFIX}uisession:{digest}"

    @staticmethod
    def _of_key(caller: str) -> str:
        return f"{PREFIX}uisessions:{caller}"

    async def create(self, caller: str, max_age_s: float, fingerprint: str = "") -> str:
        token = secrets.token_urlsafe(32)
        digest, ttl_ms = _digest(token), max(1, int(max_age_s * 1000))
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._session(digest), json.dumps([caller, fingerprint]), px=ttl_ms)
            pipe.sadd(self._of_key(caller), digest)
            # Every session lasts as long, so the set lives as long as its newest one; digests of
            # sessions that ended before it cost one DEL of a missing key at revocation.
            pipe.pexpire(self._of_key(caller), ttl_ms)
            await pipe.execute()
        return token

    async def session(self, token: str | None) -> Session | None:
        if not token:
            return None
        value = await self._redis.get(self._session(_digest(token)))
        return None if value is None else Session(*json.loads(value))

    async def revoke(self, token: str | None) -> None:
        if not token:
            return
        digest = _digest(token)
        found = await self.session(token)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._session(digest))
            if found is not None:
                pipe.srem(self._of_key(found.caller), digest)
            await pipe.execute()

    async def revoke_key(self, caller: str) -> int:
        digests = await self._redis.smembers(self._of_key(caller))
        keys = [self._session(d.decode() if isinstance(d, bytes) else d) for d in digests]
        async with self._redis.pipeline(transaction=True) as pipe:
            if keys:
                pipe.delete(*keys)
            pipe.delete(self._of_key(caller))
            answers = await pipe.execute()
        return int(answers[0]) if keys else 0


def open_session_store(store: JobStore) -> SessionStore:
    """Sessions beside the jobs, on the job store's own connection."""
    if isinstance(store, RedisJobStore):
        return RedisSessionStore(store.client)
    if isinstance(store, SQLiteJobStore):
        return SQLiteSessionStore(store)
    raise TypeError(f"no session store for {type(store).__name__}")
