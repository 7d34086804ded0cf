"""Keys, audit log and usage in Redis, on the gateway's shared client (replicas see one set).

Keys (prefix ``i2v:``): ``apikey:<id>`` (the record, JSON), ``apikey-used:<id>`` (last use,
apart so a sign-in never rewrites a record an admin is changing), ``apikeys`` (ids by creation),
``apikey-secret:<sha256>`` (``SecretRef``; expires with a rotated-out secret's overlap),
``apikey-secrets:<id>`` (the hashes of a key), ``audit`` (a capped list, newest last),
``usage:<day>:<caller>`` (a hash of counters) and ``usage-callers:<day>``.
"""

from __future__ import annotations

import math
import time

import redis.asyncio as aioredis

from gateway.tenants.records import ApiKey, SecretRef
from gateway.tenants.store import AUDIT_KEPT, AuditEntry, KeyStore
from gateway.tenants.usage import COUNTERS, UsageCounts

PREFIX = "i2v:"
USAGE_KEPT_S = 400 * 86400  # a year of days, and the month before it


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisKeyStore(KeyStore):
    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    @staticmethod
    def _key(*parts: str) -> str:
        return PREFIX + ":".join(parts)

    async def save_key(self, key: ApiKey) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._key("apikey", key.id), key.model_dump_json(exclude={"last_used_at"}))
            pipe.zadd(self._key("apikeys"), {key.id: key.created_at})
            await pipe.execute()

    async def get_key(self, key_id: str) -> ApiKey | None:
        raw, used = await self._redis.mget([self._key("apikey", key_id), self._key("apikey-used", key_id)])
        if raw is None:
            return None
        key = ApiKey.model_validate_json(raw)
        return key if used is None else key.model_copy(update={"last_used_at": float(used)})

    async def list_keys(self) -> list[ApiKey]:
        ids = [_text(i) for i in await self._redis.zrange(self._key("apikeys"), 0, -1)]
        keys = [await self.get_key(key_id) for key_id in ids]
        return [key for key in keys if key is not None]

    async def save_secret(self, secret_hash: str, ref: SecretRef) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            ttl = None if ref.valid_until is None else max(1, math.ceil(ref.valid_until - time.time()))
            pipe.set(self._key("apikey-secret", secret_hash), ref.model_dump_json(), ex=ttl)
            pipe.sadd(self._key("apikey-secrets", ref.key_id), secret_hash)
            await pipe.execute()

    async def find_secret(self, secret_hash: str) -> SecretRef | None:
        raw = await self._redis.get(self._key("apikey-secret", secret_hash))
        return None if raw is None else SecretRef.model_validate_json(raw)

    async def end_secrets(self, key_id: str, until: float | None, keep: str | None = None) -> None:
        hashes = [_text(h) for h in await self._redis.smembers(self._key("apikey-secrets", key_id))]
        ending = [h for h in hashes if h != keep]
        if until is None:
            if ending:
                async with self._redis.pipeline(transaction=True) as pipe:
                    pipe.delete(*[self._key("apikey-secret", h) for h in ending])
                    pipe.srem(self._key("apikey-secrets", key_id), *ending)
                    await pipe.execute()
            return
        for secret_hash in ending:
            ref = await self.find_secret(secret_hash)
            if ref is not None and (ref.valid_until is None or ref.valid_until > until):
                await self.save_secret(secret_hash, ref.model_copy(update={"valid_until": until}))

    async def touch(self, key_id: str, at: float) -> None:
        await self._redis.set(self._key("apikey-used", key_id), repr(at))

    async def append_audit(self, entry: AuditEntry) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.rpush(self._key("audit"), entry.model_dump_json())
            pipe.ltrim(self._key("audit"), -AUDIT_KEPT, -1)
            await pipe.execute()

    async def audit(self, limit: int) -> list[AuditEntry]:
        raws = await self._redis.lrange(self._key("audit"), -limit, -1)
        return [AuditEntry.model_validate_json(raw) for raw in reversed(raws)]

    async def add_usage(self, caller: str, day: str, counts: UsageCounts) -> None:
        key = self._key("usage", day, caller)
        async with self._redis.pipeline(transaction=True) as pipe:
            for name in COUNTERS:
                value = getattr(counts, name)
                if not value:
                    continue
                if isinstance(value, float):
                    pipe.hincrbyfloat(key, name, value)
                else:
                    pipe.hincrby(key, name, value)
            pipe.expire(key, USAGE_KEPT_S)
            pipe.sadd(self._key("usage-callers", day), caller)
            pipe.expire(self._key("usage-callers", day), USAGE_KEPT_S)
            await pipe.execute()

    async def usage(self, days: list[str], caller: str | None = None) -> dict[str, dict[str, UsageCounts]]:
        pairs: list[tuple[str, str]] = []
        if caller is not None:
            pairs = [(caller, day) for day in days]
        else:
            async with self._redis.pipeline(transaction=False) as pipe:
                for day in days:
                    pipe.smembers(self._key("usage-callers", day))
                members = await pipe.execute()
            pairs = [(_text(who), day) for day, names in zip(days, members, strict=True) for who in names]
        async with self._redis.pipeline(transaction=False) as pipe:
            for who, day in pairs:
                pipe.hgetall(self._key("usage", day, who))
            rows = await pipe.execute()
        found: dict[str, dict[str, UsageCounts]] = {}
        for (who, day), row in zip(pairs, rows, strict=True):
            if row:
                fields = {_text(name): _text(value) for name, value in row.items()}
                found.setdefault(who, {})[day] = UsageCounts.model_validate(
                    {name: float(fields[name]) if name in ("compute_units", "model_seconds") else int(fields[name])
                     for name in COUNTERS if name in fields})
        return found

    async def close(self) -> None:
        """The client is the gateway's: it closes it."""
