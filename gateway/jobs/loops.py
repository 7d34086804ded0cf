"""What every background loop of the job layer shares: run forever, sleep until woken."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from gateway.errors import STORE_ERRORS

logger = logging.getLogger("gateway.jobs")


class Wake:
    """Sleep up to a time, or until another part (a submit, a finished job) has work for us."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def set(self) -> None:
        self._event.set()

    async def sleep(self, seconds: float) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._event.wait(), seconds)
        self._event.clear()


async def run_forever(name: str, loop: Callable[[], Awaitable[None]]) -> None:
    """Run ``loop`` again whenever it fails: nothing but cancellation ends a background loop."""
    while True:
        try:
            await loop()
        except asyncio.CancelledError:
            raise
        except STORE_ERRORS as exc:
            # The store is away: one line, not a traceback a second; the loop tries again.
            logger.warning("job loop %s: job store unavailable (%s); retrying in 2 s", name, exc)
            await asyncio.sleep(2)
        except Exception:  # noqa: BLE001 - nothing may end the loop
            logger.exception("job loop %s failed; restarting it", name)
            await asyncio.sleep(1)
