"""The result cache: a seeded request seen before is answered with the stored video.

Only seeded requests are cached: without a seed every call must give a new video. The key
hashes everything that shapes the file (the fitted image, prompts, size, frames, steps,
guidance, seed, fps, output format and the model name). Cached files (the video and its poster,
``<key>.<suffix>``) live in their own folder, not under the served outputs; a hit hard-links them
into the outputs under a fresh random name, so each answer has its own URLs and retention while
the bytes are stored once.

The index of entries sits behind ``CacheIndex``, which the job store implements (replicas on
Redis share it); the dependency points down: jobs -> generation.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import shutil
import time
from abc import ABC, abstractmethod
from pathlib import Path

from pydantic import BaseModel

from gateway.generation.outputs import OutputStore, poster_path
from gateway.generation.results import VideoResult
from gateway.generation.triton_inputs import VideoRequest
from gateway.schemas import OutputFormat

logger = logging.getLogger("gateway.cache")


def cache_key(model: str, video: VideoRequest, fps: int, output_format: OutputFormat) -> str | None:
    """The key of a seeded request; None for unseeded ones, which are never cached."""
    if video.seed is None:
        return None
    fields = {
        "model": model, "image": hashlib.sha256(video.image).hexdigest(), "prompt": video.prompt,
        "negative_prompt": video.negative_prompt, "width": video.width, "height": video.height,
        "num_frames": video.num_frames, "steps": video.num_inference_steps,
        "guidance_scale": round(float(video.guidance_scale), 6), "seed": video.seed, "fps": fps,
        # Entries made before formats existed hashed no format: they are never hit and age out.
        "format": output_format.value,
    }
    if video.step_cache_interval is not None:  # absent keeps the keys of requests made without it
        fields["step_cache_interval"] = video.step_cache_interval
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


class CacheEntry(BaseModel):
    key: str
    video: VideoResult  # as first made; a hit answers a copy under a new file name
    size_bytes: int
    created_at: float
    last_used: float


class CacheIndex(ABC):
    """Where cache entries are indexed; the job stores implement it."""

    @abstractmethod
    async def cache_get(self, key: str) -> CacheEntry | None:
        """The entry, with ``last_used`` moved to now."""

    @abstractmethod
    async def cache_put(self, entry: CacheEntry, max_bytes: int) -> list[str]:
        """Add an entry, then evict least recently used ones until the total fits; evicted keys."""

    @abstractmethod
    async def cache_drop(self, key: str) -> None: ...

    @abstractmethod
    async def cache_older_than(self, before: float) -> list[str]: ...


def link_or_copy(source: Path, target: Path) -> None:
    """Hard link (instant, no extra space); a copy when the folders are on different disks."""
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    try:
        os.link(source, partial)
    except OSError:
        shutil.copyfile(source, partial)
    partial.replace(target)


class ResultCache:
    def __init__(self, index: CacheIndex, directory: Path, outputs: OutputStore, max_bytes: int) -> None:
        self.index = index
        self.directory = directory
        self.outputs = outputs
        self.max_bytes = max_bytes
        if self.enabled:
            directory.mkdir(parents=True, exist_ok=True)

    @property
    def enabled(self) -> bool:
        return self.max_bytes > 0

    def _file(self, key: str, output_name: str) -> Path:
        """Where the cache keeps the output file ``output_name`` of entry ``key``: same suffix."""
        return self.directory / f"{key}{Path(output_name).suffix}"

    def _remove(self, key: str) -> None:
        for path in self.directory.glob(f"{key}.*"):  # the video and its poster (keys are hex)
            path.unlink(missing_ok=True)

    async def lookup(self, key: str) -> VideoResult | None:
        """The cached video and poster under a new output name, or None on a miss."""
        if not self.enabled:
            return None
        entry = await self.index.cache_get(key)
        if entry is None:
            return None
        output = self.outputs.new_path(Path(entry.video.video_file).suffix)
        links = {entry.video.video_file: output}
        poster = None
        if entry.video.poster_file is not None:
            poster = links[entry.video.poster_file] = poster_path(output)
        try:
            for name, target in links.items():
                await asyncio.to_thread(link_or_copy, self._file(key, name), target)
        except FileNotFoundError:
            for target in links.values():
                target.unlink(missing_ok=True)
            await self.index.cache_drop(key)  # a file went (retention, a cleaned disk): a miss
            return None
        return entry.video.model_copy(update={
            "video_file": output.name, "poster_file": None if poster is None else poster.name, "cached": True})

    async def remember(self, key: str, video: VideoResult) -> None:
        if not self.enabled:
            return
        try:
            size = 0
            for name in video.files:
                path = self.outputs.directory / name
                await asyncio.to_thread(link_or_copy, path, self._file(key, name))
                size += path.stat().st_size
            now = time.time()
            entry = CacheEntry(key=key, video=video, size_bytes=size, created_at=now, last_used=now)
            for evicted in await self.index.cache_put(entry, self.max_bytes):
                self._remove(evicted)
        except OSError as exc:  # a cache that cannot write only costs speed
            logger.warning("could not cache %s: %s", video.video_file, exc)

    async def expire(self, before: float) -> int:
        keys = await self.index.cache_older_than(before)
        for key in keys:
            await self.index.cache_drop(key)
            self._remove(key)
        return len(keys)
