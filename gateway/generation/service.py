"""Generation as a service object: image in, video (in the chosen format) and poster out. Knows
nothing of HTTP or of jobs."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Awaitable
from dataclasses import dataclass
from pathlib import Path

from gateway import metrics
from gateway.config import Settings
from gateway.errors import InferenceTimeoutError, InvalidFieldError
from gateway.generation.cache import ResultCache, cache_key
from gateway.generation.images import ImageLimits, prepare_image
from gateway.generation.outputs import OutputStore, poster_path
from gateway.generation.progress import Progress
from gateway.generation.results import VideoResult
from gateway.generation.triton_client import TritonClient
from gateway.generation.triton_inputs import VideoRequest
from gateway.generation.video import ENCODERS, encode_video, write_poster
from gateway.logs import prompt_for_log
from gateway.schemas import GenerateRequest, VideoParams

logger = logging.getLogger("gateway.generation")


async def _written(writing: Awaitable[None], paths: list[Path]) -> None:
    """Await files being written in a thread. A cancel (a job whose worker lost it) does not stop
    the thread: wait for it, then remove the files, which nobody will point to."""
    task = asyncio.ensure_future(writing)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await task
        for path in paths:
            path.unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class PreparedInput:
    """The caller's image, checked and fitted to the output size (PNG bytes)."""

    image: bytes
    width: int
    height: int


def video_request(prepared: PreparedInput, params: VideoParams) -> VideoRequest:
    return VideoRequest(
        image=prepared.image, prompt=params.prompt, negative_prompt=params.negative_prompt,
        num_frames=params.num_frames, num_inference_steps=params.steps, guidance_scale=params.guidance_scale,
        height=prepared.height, width=prepared.width, seed=params.seed,
        step_cache_interval=params.step_cache_interval)


class GenerationService:
    def __init__(self, settings: Settings, triton: TritonClient, outputs: OutputStore,
                 cache: ResultCache | None = None) -> None:
        self.settings = settings
        self.triton = triton
        self.outputs = outputs
        self.cache = cache if cache is not None and cache.enabled else None
        self.image_limits = ImageLimits(settings.max_image_bytes, settings.max_image_pixels)

    def _check_prompts(self, params: VideoParams) -> None:
        limit = self.settings.max_prompt_chars
        for name in ("prompt", "negative_prompt"):
            text = getattr(params, name)
            if text is not None and len(text) > limit:
                raise InvalidFieldError(f"{name} is {len(text)} characters long; the limit is {limit}")

    async def prepare(self, body: GenerateRequest) -> PreparedInput:
        """Check the prompts and the image; raises 400/413/422 ``ApiError``s."""
        self._check_prompts(body)
        width, height = body.size
        limit = await self.max_pixels()
        if width * height > limit:
            raise InvalidFieldError(f"width x height = {width}x{height} is {width * height} pixels; the model makes "
                                    f"at most {limit}")
        # Image decoding and video encoding are CPU work: keep them off the event loop.
        image = await asyncio.to_thread(prepare_image, body.image_base64, width, height, body.fit, self.image_limits)
        return PreparedInput(image=image, width=width, height=height)

    async def max_pixels(self) -> int:
        """The largest video, width x height: the model's max_pixels, and at most I2V_MAX_VIDEO_PIXELS."""
        model = await self.triton.max_pixels()
        return self.settings.max_video_pixels if model is None else min(model, self.settings.max_video_pixels)

    async def render(self, prepared: PreparedInput, params: VideoParams, request_id: str = "",
                     timeout_s: float | None = None) -> VideoResult:
        """The video and poster for a prepared input: from the cache for a seeded repeat, else from Triton."""
        started = time.perf_counter()
        video = video_request(prepared, params)
        output_format = params.output_format
        key = None
        if self.cache is not None:
            key = cache_key(self.settings.triton_model, video, params.fps, output_format)
        if key is not None and self.cache is not None:
            hit = await self.cache.lookup(key)
            metrics.count_cache_lookup(hit)
            if hit is not None:
                logger.info("video %s: served from the cache", hit.video_file)
                return hit.model_copy(update={"inference_time": time.perf_counter() - started})
        model_started = time.perf_counter()
        generated = await self.triton.generate(video, timeout_s=timeout_s, request_id=request_id)
        model_seconds = time.perf_counter() - model_started
        path = self.outputs.new_path(ENCODERS[output_format].suffix)
        poster = poster_path(path)
        encode = metrics.ENCODE_SECONDS.labels(format=output_format.value).time()(encode_video)  # timed for /metrics
        def write_files() -> None:
            encode(generated.frames, params.fps, output_format, path)
            write_poster(generated.frames, poster)
        await _written(asyncio.to_thread(write_files), [path, poster])
        result = VideoResult(video_file=path.name, seed=generated.seed, width=video.width, height=video.height,
                             num_frames=video.num_frames, fps=params.fps, output_format=output_format,
                             poster_file=poster.name, inference_time=time.perf_counter() - started,
                             model_seconds=model_seconds)
        if key is not None and self.cache is not None:
            await self.cache.remember(key, result)
        logger.info("video %s: %dx%d, %d frames, %d steps in %.2f s, prompt %s", path.name, video.width,
                    video.height, video.num_frames, video.num_inference_steps, result.inference_time,
                    prompt_for_log(video.prompt, self.settings.log_prompts))
        return result

    def watch_progress(self, request_id: str) -> AsyncGenerator[Progress, None]:
        """Denoising steps of the Triton request ``request_id`` as the model reports them."""
        return self.triton.watch_progress(request_id)

    def discard(self, result: VideoResult) -> None:
        """Remove a video and its poster nobody will point to (its job went to another worker)."""
        for name in result.files:
            (self.outputs.directory / name).unlink(missing_ok=True)

    @metrics.in_progress(metrics.SYNC_GENERATIONS_RUNNING)
    async def generate(self, body: GenerateRequest, deadline: Deadline | None = None) -> VideoResult:
        """Prepare the image, run the model (or hit the cache), encode the video; raises ``ApiError``s.
        Past the caller's ``deadline`` (checked after the inputs, so bad input is still a 4xx) the
        render is cancelled, and its Triton request with it: a 504."""
        started = time.perf_counter()
        prepared = await self.prepare(body)
        if deadline is None:
            result = await self.render(prepared, body)
        else:
            try:
                result = await asyncio.wait_for(self.render(prepared, body), max(0.0, deadline.left_s()))
            except asyncio.TimeoutError:
                raise InferenceTimeoutError(f"cancelled: the Cancel-After deadline of {deadline.seconds:g} s "
                                            "passed") from None
        return result.model_copy(update={"inference_time": time.perf_counter() - started})


@dataclass(frozen=True)
class Deadline:
    """The caller's Cancel-After: ``seconds`` from ``since`` (``time.monotonic``, when the request arrived)."""

    seconds: float
    since: float

    def left_s(self) -> float:
        return self.seconds - (time.monotonic() - self.since)
