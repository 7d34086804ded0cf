"""Per-caller limits: a token bucket for request rate and a cap on generations in flight.

In memory, so each gateway process has its own budget (a shared Redis budget is future work).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass


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
        missing = self.burst - tokens
        return RateDecision(
            allowed=allowed, limit=self.burst, remaining=int(tokens),
            reset_s=math.ceil(missing / self.rate) if self.rate else 0,
            retry_after_s=0 if allowed else max(1, math.ceil((1.0 - tokens) / self.rate)))


class ConcurrencyLimiter:
    """At most ``limit`` holders per key at a time."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._active: dict[str, int] = {}
        self._lock = threading.Lock()

    @contextmanager
    def slot(self, key: str) -> Iterator[bool]:
        """Yields whether a slot was granted; a granted slot is released on exit."""
        with self._lock:
            granted = self._active.get(key, 0) < self.limit
            if granted:
                self._active[key] = self._active.get(key, 0) + 1
        try:
            yield granted
        finally:
            if granted:
                with self._lock:
                    self._active[key] -= 1
