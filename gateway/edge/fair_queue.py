"""Fair admission of synchronous generations: a slot per call, a waiting line per key, keys in turn.

A call over its key's cap (``per_key`` generations in flight) or over the gateway's
(``total``) waits in its key's line instead of failing. When a slot frees, the keys with
someone waiting are served round-robin, one call each, so a key with a long line cannot starve
another. A line is bounded in length (``max_waiting``) and in wait (``max_wait_s``); only beyond
those is a call refused (``QueueRejected``, a 429 with Retry-After at the edge). A caller's own
deadline (Cancel-After) bounds its wait too: past it the call leaves the line
(``DeadlinePassed``, a 504 at the edge) and never starts.

The lines live in this process: each gateway replica keeps its own (its own ``total`` protects
its own Triton connection); the per-key rate budget is what replicas share.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

logger = logging.getLogger("gateway.edge")


@dataclass(frozen=True)
class QueueRejected(Exception):
    """The call was not admitted: its key's line is full, or it waited too long."""

    reason: str
    retry_after_s: int


@dataclass(frozen=True)
class DeadlinePassed(Exception):
    """The caller's own deadline passed while its call waited for a slot; it left the line."""

    waited_s: float


class FairQueue:
    def __init__(self, per_key: int, total: int, max_waiting: int, max_wait_s: float) -> None:
        self.per_key = per_key or math.inf  # 0: no limit
        self.total = total or math.inf
        self.max_waiting = max_waiting
        self.max_wait_s = max_wait_s
        self._running: dict[str, int] = {}
        self._running_total = 0
        self._lines: dict[str, deque[asyncio.Future[None]]] = {}
        self._grants = 0
        self._caps: dict[str, float] = {}  # keys with a cap of their own (a stored key's limits)
        self._last_grant: dict[str, int] = {}  # key -> number of its latest grant: who had the last turn

    def waiting(self, key: str) -> int:
        return sum(1 for waiter in self._lines.get(key, ()) if not waiter.done())

    def running(self, key: str) -> int:
        return self._running.get(key, 0)

    def cap(self, key: str) -> float:
        return self._caps.get(key, self.per_key)

    @asynccontextmanager
    async def slot(self, key: str, deadline_s: float | None = None, cap: int | None = None) -> AsyncIterator[None]:
        """Hold a generation slot for ``key`` while the block runs; raises ``QueueRejected``, or
        ``DeadlinePassed`` when the caller's ``deadline_s`` (seconds left to it) ends its wait first.
        ``cap``: the key's own limit of generations in flight (0: none), instead of ``per_key``."""
        if cap is None:
            self._caps.pop(key, None)
        else:
            self._caps[key] = cap or math.inf
        await self._acquire(key, deadline_s)
        try:
            yield
        finally:
            self._release(key)

    async def _acquire(self, key: str, deadline_s: float | None) -> None:
        if not self._lines.get(key) and self._may_start(key):
            self._start(key)
            return
        if deadline_s is not None and deadline_s <= 0:
            raise DeadlinePassed(0.0)
        if self.waiting(key) >= self.max_waiting:
            raise QueueRejected(f"key '{key}' has {self.running(key)} generations running and {self.max_waiting} "
                                "waiting; wait for some to finish", self._retry_after_s())
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._lines.setdefault(key, deque()).append(waiter)
        logger.info("key %s waits for a generation slot: %d running, %d waiting", key, self.running(key),
                    self.waiting(key))
        # The caller's deadline, when it comes first, ends the wait as the line's own bound would.
        caller_first = deadline_s is not None and deadline_s < self.max_wait_s
        wait_s = deadline_s if deadline_s is not None and caller_first else self.max_wait_s
        try:
            await asyncio.wait_for(asyncio.shield(waiter), wait_s)
        except (asyncio.TimeoutError, asyncio.CancelledError) as exc:
            if waiter.done() and not waiter.cancelled():
                self._release(key)  # granted just as the wait ended: hand the slot on
            else:
                waiter.cancel()
                self._forget(key, waiter)
            if isinstance(exc, asyncio.TimeoutError) and caller_first:
                raise DeadlinePassed(wait_s) from None
            if isinstance(exc, asyncio.TimeoutError):
                raise QueueRejected(f"key '{key}' waited {self.max_wait_s:g} s for a generation slot; "
                                    "retry later", self._retry_after_s()) from None
            raise

    def _may_start(self, key: str) -> bool:
        return self._running_total < self.total and self.running(key) < self.cap(key)

    def _start(self, key: str) -> None:
        self._running[key] = self.running(key) + 1
        self._running_total += 1
        self._grants += 1
        self._last_grant[key] = self._grants

    def _release(self, key: str) -> None:
        self._running[key] -= 1
        if not self._running[key]:
            del self._running[key]
            if key not in self._lines:
                self._last_grant.pop(key, None)  # idle keys are forgotten (and first in turn next time)
        self._running_total -= 1
        self._dispatch()

    def _dispatch(self) -> None:
        """Hand free slots to waiting calls: each to the key, among those waiting and under their
        cap, whose last turn is the oldest (round-robin)."""
        while self._running_total < self.total:
            ready = [key for key, line in self._lines.items() if line and self.running(key) < self.cap(key)]
            if not ready:
                return
            key = min(ready, key=lambda k: self._last_grant.get(k, 0))
            line = self._lines[key]
            self._start(key)
            line.popleft().set_result(None)
            if not line:
                del self._lines[key]

    def _forget(self, key: str, waiter: asyncio.Future[None]) -> None:
        line = self._lines.get(key)
        if line is not None and waiter in line:
            line.remove(waiter)
        if not line:
            self._lines.pop(key, None)

    def _retry_after_s(self) -> int:
        return max(1, min(60, math.ceil(self.max_wait_s / 10)))
