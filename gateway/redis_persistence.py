"""Does the Redis the gateway is given keep what it is told? Checked once at start, logged in one line.

With ``I2V_REDIS_URL`` the jobs live in Redis. Without persistence a restart of redis-server loses
every accepted job; with RDB snapshots alone (Redis's default) it loses those accepted since the
last snapshot and rolls finished ones back, so they run, and call their webhooks, again. The
shipped configuration (docker/redis/redis.conf, README "Stores") is an append-only file fsynced
every second.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

logger = logging.getLogger("gateway.redis")
ADVICE = "run it with appendonly yes and appendfsync everysec (docker/redis/redis.conf)"


@dataclass(frozen=True)
class Persistence:
    durable: bool | None  # None: it could not be told
    summary: str


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def _config(redis: aioredis.Redis, name: str) -> str:
    answer = await redis.config_get(name)
    return next((_text(value) for key, value in answer.items() if _text(key) == name), "")


async def persistence(redis: aioredis.Redis) -> Persistence:
    """From CONFIG GET; from INFO persistence where CONFIG is disabled (managed Redis services
    often rename or forbid it), which tells the append-only file but not the snapshot rules."""
    try:
        appendonly, fsync, save = [await _config(redis, name) for name in ("appendonly", "appendfsync", "save")]
    except ResponseError:
        pass
    else:
        if appendonly == "yes":
            if fsync == "no":
                return Persistence(False, "an append-only file that the OS flushes when it likes "
                                          "(appendfsync no): a power failure loses up to ~30 s of jobs")
            return Persistence(True, f"an append-only file, appendfsync {fsync}")
        if save.strip():
            return Persistence(False, f"RDB snapshots only (save '{save}'): a crash loses the jobs accepted "
                                      "since the last snapshot and runs finished ones again")
        return Persistence(False, "persistence off (appendonly no, save ''): a restart loses every job")
    try:
        info = await redis.info("persistence")
    except ResponseError:
        return Persistence(None, "persistence could not be checked: CONFIG and INFO are both refused")
    if int(info.get("aof_enabled", 0)) == 1:
        return Persistence(True, "an append-only file (from INFO; CONFIG is not allowed)")
    return Persistence(False, "no append-only file (from INFO; CONFIG is not allowed, so snapshot rules are "
                              "unknown): a crash loses the jobs since the last snapshot, or all of them")


def _where(redis: aioredis.Redis) -> str:
    """host:port/db, never the URL (it may hold a password)."""
    kwargs = redis.connection_pool.connection_kwargs
    return f"{kwargs.get('host', kwargs.get('path', '?'))}:{kwargs.get('port', '')}/{kwargs.get('db', 0)}"


async def log_persistence(redis: aioredis.Redis, timeout_s: float = 5.0) -> Persistence:
    """One line: info when durable, a warning otherwise. Never stops the start: Redis may come later."""
    try:
        found = await asyncio.wait_for(persistence(redis), timeout_s)
    except (RedisError, OSError, asyncio.TimeoutError) as exc:
        reason = str(exc) or type(exc).__name__
        found = Persistence(None, f"persistence could not be checked: Redis did not answer ({reason})")
    if found.durable:
        logger.info("Redis at %s keeps jobs in %s", _where(redis), found.summary)
    else:
        logger.warning("Redis at %s: %s; %s", _where(redis), found.summary, ADVICE)
    return found
