"""The job store in Redis, for several gateway replicas sharing jobs and the cache.

Keys (prefix ``i2v:``): ``job:<id>`` (JSON), ``input:<id>`` (image bytes), ``idem:<owner>:<key>``,
one sorted set per index of ``Job.index_scores`` plus ``owner:<name>`` and ``queued:<name>``,
and ``cache:<key>`` with the ``cache:lru`` sorted set. Changes to a job are WATCH/MULTI
transactions, retried when another replica changed the job in between.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import WatchError

from gateway.generation.cache import CacheEntry
from gateway.jobs.records import INDEXES, IdempotencyConflictError, Job, JobEvent, next_event
from gateway.jobs.store import Change, IdempotencyKey, JobStore

PREFIX = "i2v:"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class RedisJobStore(JobStore):
    """On a client its caller owns (and closes): the gateway shares one with limits and nonces."""

    def __init__(self, redis: aioredis.Redis) -> None:
        self._redis = redis

    @property
    def client(self) -> aioredis.Redis:
        """The shared client, for records kept beside the jobs (gateway/edge/sessions.py)."""
        return self._redis

    @staticmethod
    def _key(*parts: str) -> str:
        return PREFIX + ":".join(parts)

    def _write(self, pipe: aioredis.client.Pipeline, job: Job, before: Job | None) -> Job:
        """Queue the job's write (and the event its change records) on a transaction; the job as written."""
        recorded = next_event(before, job)
        if recorded is not None:
            job, event = recorded
            # Event n is element n-1 of the list: ids and indexes move together inside the transaction.
            pipe.rpush(self._key("events", job.id), event.model_dump_json())
        pipe.set(self._key("job", job.id), job.model_dump_json())
        pipe.zadd(self._key("owner", job.owner), {job.id: job.created_at})
        scores = job.index_scores()
        for index, score in scores.items():
            if score is None:
                pipe.zrem(self._key(index), job.id)
            else:
                pipe.zadd(self._key(index), {job.id: score})
        queued_by_owner = self._key("queued", job.owner)
        if scores["queued"] is None:
            pipe.zrem(queued_by_owner, job.id)
        else:
            pipe.zadd(queued_by_owner, {job.id: job.created_at})
        return job

    async def ping(self) -> None:
        await self._redis.ping()

    async def insert(self, job: Job, image: bytes, idempotency: IdempotencyKey | None,
                     ttl_s: float) -> tuple[Job, bool]:
        if idempotency is not None:
            idem_key = self._key("idem", idempotency.owner, idempotency.key)
            claimed = await self._redis.set(idem_key, json.dumps([job.id, idempotency.body_hash]), nx=True,
                                            ex=max(1, int(ttl_s)))
            if not claimed:
                raw = await self._redis.get(idem_key)
                if raw is not None:
                    earlier_id, body_hash = json.loads(raw)
                    if body_hash != idempotency.body_hash:
                        raise IdempotencyConflictError(earlier_id)
                    earlier = await self.get(earlier_id)
                    if earlier is not None:
                        return earlier, False
                await self._redis.set(idem_key, json.dumps([job.id, idempotency.body_hash]), ex=max(1, int(ttl_s)))
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._key("input", job.id), image)
            stored = self._write(pipe, job, None)
            await pipe.execute()
        return stored, True

    async def get(self, job_id: str) -> Job | None:
        raw = await self._redis.get(self._key("job", job_id))
        return Job.model_validate_json(raw) if raw is not None else None

    async def _mutate(self, job_id: str, change: Change) -> tuple[Job | None, bool]:
        key = self._key("job", job_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    raw = await pipe.get(key)
                    if raw is None:
                        await pipe.unwatch()
                        return None, False
                    job = Job.model_validate_json(raw)
                    changed = change(job)
                    if changed is None:
                        await pipe.unwatch()
                        return job, False
                    pipe.multi()
                    stored = self._write(pipe, changed, job)
                    await pipe.execute()
                    return stored, True
                except WatchError:
                    continue

    async def due(self, index: str, until: float, limit: int = 20) -> list[str]:
        if index not in INDEXES:
            raise ValueError(index)
        ids = await self._redis.zrangebyscore(self._key(index), "-inf", until, start=0, num=limit)
        return [_text(i) for i in ids]

    async def set_index(self, index: str, job_id: str, score: float | None) -> None:
        if index not in INDEXES:
            raise ValueError(index)
        if score is None:
            await self._redis.zrem(self._key(index), job_id)
        else:
            await self._redis.zadd(self._key(index), {job_id: score})

    async def jobs_in(self, index: str, until: float, limit: int) -> list[Job]:
        return await self._jobs(await self.due(index, until, limit))

    async def _jobs(self, ids: list[str]) -> list[Job]:
        if not ids:
            return []
        raws = await self._redis.mget([self._key("job", job_id) for job_id in ids])
        return [Job.model_validate_json(raw) for raw in raws if raw is not None]

    async def events_after(self, job_id: str, after: int, limit: int = 100) -> list[JobEvent]:
        after = min(max(after, 0), 2**62)  # a negative index would count from the list's end
        raws = await self._redis.lrange(self._key("events", job_id), after, after + limit - 1)
        return [JobEvent.model_validate_json(raw) for raw in raws]

    async def list_for_owner(self, owner: str, offset: int, limit: int) -> list[Job]:
        ids = await self._redis.zrevrange(self._key("owner", owner), offset, offset + limit - 1)
        return await self._jobs([_text(i) for i in ids])

    async def record_turn(self, owner: str, at: float) -> None:
        await self._redis.hset(self._key("turns"), owner, repr(at))

    async def turns(self, owners: list[str]) -> dict[str, float]:
        if not owners:
            return {}
        values = await self._redis.hmget(self._key("turns"), owners)
        return {owner: float(value) for owner, value in zip(owners, values, strict=True) if value is not None}

    async def count_queued(self, owner: str | None = None) -> int:
        return int(await self._redis.zcard(self._key("queued") if owner is None else self._key("queued", owner)))

    async def load_input(self, job_id: str) -> bytes | None:
        image = await self._redis.get(self._key("input", job_id))
        return image if isinstance(image, bytes) else None

    async def drop_input(self, job_id: str) -> None:
        await self._redis.delete(self._key("input", job_id))

    async def delete(self, job_id: str) -> None:
        job = await self.get(job_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._key("job", job_id), self._key("input", job_id), self._key("events", job_id))
            for index in INDEXES:
                pipe.zrem(self._key(index), job_id)
            if job is not None:
                pipe.zrem(self._key("owner", job.owner), job_id)
                pipe.zrem(self._key("queued", job.owner), job_id)
            await pipe.execute()

    async def cache_get(self, key: str) -> CacheEntry | None:
        raw = await self._redis.get(self._key("cache", key))
        if raw is None:
            return None
        entry = CacheEntry.model_validate_json(raw).model_copy(update={"last_used": time.time()})
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._key("cache", key), entry.model_dump_json(), xx=True)
            pipe.zadd(self._key("cache", "lru"), {key: entry.last_used}, xx=True)
            await pipe.execute()
        return entry

    async def cache_put(self, entry: CacheEntry, max_bytes: int) -> list[str]:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(self._key("cache", entry.key), entry.model_dump_json())
            pipe.zadd(self._key("cache", "lru"), {entry.key: entry.last_used})
            pipe.hset(self._key("cache", "sizes"), entry.key, entry.size_bytes)
            await pipe.execute()
        sizes = {_text(k): int(v) for k, v in (await self._redis.hgetall(self._key("cache", "sizes"))).items()}
        total = sum(sizes.values())
        evicted: list[str] = []
        if total > max_bytes:
            for raw_key in await self._redis.zrange(self._key("cache", "lru"), 0, -1):
                if total <= max_bytes:
                    break
                key = _text(raw_key)
                total -= sizes.get(key, 0)
                evicted.append(key)
                await self.cache_drop(key)
        return evicted

    async def cache_drop(self, key: str) -> None:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._key("cache", key))
            pipe.zrem(self._key("cache", "lru"), key)
            pipe.hdel(self._key("cache", "sizes"), key)
            await pipe.execute()

    async def cache_older_than(self, before: float) -> list[str]:
        keys = [_text(k) for k in await self._redis.zrange(self._key("cache", "lru"), 0, -1)]
        raws = await self._redis.mget([self._key("cache", k) for k in keys]) if keys else []
        return [k for k, raw in zip(keys, raws, strict=True)
                if raw is None or CacheEntry.model_validate_json(raw).created_at < before]

    async def close(self) -> None:
        """The client is the caller's to close."""
