"""Retention: finished jobs, their videos and cache entries are deleted after ``retention_s``."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path

from gateway.config import Settings
from gateway.generation.cache import ResultCache
from gateway.jobs.store import JobStore

logger = logging.getLogger("gateway.jobs")


class Retention:
    def __init__(self, settings: Settings, store: JobStore, outputs_dir: Path, cache: ResultCache | None) -> None:
        self.settings = settings
        self.store = store
        self.outputs_dir = outputs_dir
        self.cache = cache

    async def loop(self) -> None:
        interval = min(60.0, self.settings.retention_s / 4)
        while True:
            cutoff = time.time() - self.settings.retention_s
            for job_id in await self.store.due("finished", cutoff, limit=200):
                await self.store.delete(job_id)
            if self.cache is not None:
                await self.cache.expire(cutoff)
            removed = await asyncio.to_thread(remove_files_older_than, self.outputs_dir, cutoff)
            if removed:
                logger.info("retention: removed %d videos older than %.0f s", removed, self.settings.retention_s)
            await asyncio.sleep(interval)


def remove_files_older_than(directory: Path, cutoff: float) -> int:
    removed = 0
    for path in directory.glob("*.*"):  # videos of every format, their posters, stale partials
        with contextlib.suppress(FileNotFoundError):
            if path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
    return removed
