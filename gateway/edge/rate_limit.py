"""Per-caller request rate: a token bucket per key (generation slots are ``fair_queue.py``).

``TokenBucketLimiter`` keeps buckets in memory, so each gateway process has its own budget;
``RedisTokenBucketLimiter`` keeps them in Redis, so replicas share one budget per key.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis.asyncio as aioredis

from gateway.errors import RateLimitedError


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    limit: int  # the burst size
    remaining: int
    reset_s: int  # until the bucket is full again
    retry_after_s: int  # until one more request is allowed (0 when allowed)

    def headers(self) -> dict[str, str]:
        headers = {"RateLimit-Limit": str(self.limit), "RateLimit-Remaining": str(self.remaining),
                   "RateLimit-Reset": str(self.reset_s)}
        if not self.allowed:
            headers["Retry-After"] = str(self.retry_after_s)
        return headers


def _decision(allowed: bool, tokens: float, burst: int, rate: float) -> RateDecision:
    missing = burst - tokens
    return RateDecision(
        allowed=allowed, limit=burst, remaining=int(tokens),
        reset_s=math.ceil(missing / rate) if rate else 0,
        retry_after_s=0 if allowed else max(1, math.ceil((1.0 - tokens) / rate)))


class TokenBucketLimiter:
    """``burst`` requests at once, refilled at ``per_minute`` a minute, per key."""

    def __init__(self, per_minute: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = per_minute / 60.0
        self.burst = burst
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, key: str) -> RateDecision:
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate)
            allowed = tokens >= 1.0
            if allowed:
                tokens -= 1.0
            self._buckets[key] = (tokens, now)
        return _decision(allowed, tokens, self.burst, self.rate)

    async def acquire(self, key: str) -> RateDecision:
        return self.take(key)

    async def peek(self, key: str) -> RateDecision:
        """What ``acquire`` would decide now, spending nothing."""
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        return _decision(tokens >= 1.0, tokens, self.burst, self.rate)


# The same bucket as above, computed inside Redis so that replicas cannot race. Redis's own
# clock is used, not the replicas' (which may disagree). Returns {allowed, tokens * 1000}.
_TAKE_SCRIPT = """
local rate, burst, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, last = tonumber(bucket[1]) or burst, tonumber(bucket[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - last) * rate)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', tostring(now))
redis.call('EXPIRE', KEYS[1], ttl)
return {allowed, math.floor(tokens * 1000)}
"""
# The bucket's tokens now, changing nothing: {tokens * 1000}.
_PEEK_SCRIPT = """
local rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens, last = tonumber(bucket[1]) or burst, tonumber(bucket[2]) or now
return math.floor(math.min(burst, tokens + math.max(0, now - last) * rate) * 1000)
"""


class RedisTokenBucketLimiter:
    """The token bucket in Redis: every gateway replica draws from the same budget per key."""

    def __init__(self, redis: aioredis.Redis, per_minute: float, burst: int) -> None:
        self.rate = per_minute / 60.0
        self.burst = burst
        self._take = redis.register_script(_TAKE_SCRIPT)
        self._peek = redis.register_script(_PEEK_SCRIPT)
        # A bucket left alone refills completely in burst / rate seconds; then it can go.
        self._ttl_s = max(60, math.ceil(burst / self.rate) + 60) if self.rate else 3600

    async def acquire(self, key: str) -> RateDecision:
        allowed, tokens_milli = await self._take(keys=[f"i2v:rate:{key}"], args=[self.rate, self.burst, self._ttl_s])
        return _decision(bool(allowed), int(tokens_milli) / 1000, self.burst, self.rate)

    async def peek(self, key: str) -> RateDecision:
        """What ``acquire`` would decide now, spending nothing."""
        tokens = int(await self._peek(keys=[f"i2v:rate:{key}"], args=[self.rate, self.burst])) / 1000
        return _decision(tokens >= 1.0, tokens, self.burst, self.rate)


Limiter = TokenBucketLimiter | RedisTokenBucketLimiter


@dataclass(frozen=True)
class Budget:
    """One of a key's budgets: its buckets' prefix, and what a refusal calls it."""

    bucket: str
    name: str


SUBMISSIONS = Budget("key", "rate limit")  # requests that start work, from the API or the web UI
READS = Budget("read", "read rate limit")  # reads and cancels of jobs


async def spend(limiter: Limiter | None, budget: Budget, caller: str) -> dict[str, str]:
    """One request from ``caller``'s ``budget``: the RateLimit headers to answer with (none when
    the limit is off), or a 429 when the budget is spent."""
    if limiter is None:
        return {}
    decision = await limiter.acquire(f"{budget.bucket}:{caller}")
    if not decision.allowed:
        raise RateLimitedError(f"{budget.name} for key '{caller}' reached; retry in {decision.retry_after_s} s",
                               decision.headers())
    return decision.headers()


class KeyLimiters:
    """Limiters at the rates stored keys ask for (their own limits, issue 24), each made once: in
    Redis when the gateway has one (the bucket is the same Redis key; the rate comes with each
    call), else in this process."""

    def __init__(self, redis: aioredis.Redis | None) -> None:
        self._redis = redis
        self._made: dict[tuple[float, int], Limiter] = {}

    def at(self, per_minute: float, burst: int) -> Limiter:
        if (per_minute, burst) not in self._made:
            self._made[(per_minute, burst)] = RedisTokenBucketLimiter(self._redis, per_minute, burst) \
                if self._redis is not None else TokenBucketLimiter(per_minute, burst)
        return self._made[(per_minute, burst)]
