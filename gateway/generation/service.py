"""Generation as a service object: image in, MP4 out. Knows nothing of HTTP."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from gateway.config import Settings
from gateway.errors import InvalidFieldError
from gateway.images import ImageLimits, prepare_image
from gateway.jobs.cache import ResultCache, cache_key
from gateway.logs import prompt_for_log
from gateway.outputs import OutputStore
from gateway.schemas import GenerateRequest, GenerateResponse, VideoParams
from gateway.triton_client import TritonClient
from gateway.triton_inputs import VideoRequest
from gateway.video import encode_mp4

logger = logging.getLogger("gateway.generation")


@dataclass(frozen=True)
class PreparedInput:
    """The caller's image, checked and fitted to the output size (PNG bytes)."""

    image: bytes
    width: int
    height: int


@dataclass(frozen=True)
class RenderedVideo:
    path: Path
    seed: int
    width: int
    height: int
    num_frames: int
    fps: int
    elapsed_s: float
    cached: bool


def video_request(prepared: PreparedInput, params: VideoParams) -> VideoRequest:
    return VideoRequest(
        image=prepared.image, prompt=params.prompt, negative_prompt=params.negative_prompt,
        num_frames=params.num_frames, num_inference_steps=params.steps, guidance_scale=params.guidance_scale,
        height=prepared.height, width=prepared.width, seed=params.seed)


class GenerationService:
    def __init__(self, settings: Settings, triton: TritonClient, outputs: OutputStore,
                 cache: ResultCache | None = None) -> None:
        self.settings = settings
        self.triton = triton
        self.outputs = outputs
        self.cache = cache
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
        width, height = body.resolution.size
        # Image decoding and MP4 encoding are CPU work: keep them off the event loop.
        image = await asyncio.to_thread(prepare_image, body.image_base64, width, height, body.fit, self.image_limits)
        return PreparedInput(image=image, width=width, height=height)

    async def render(self, prepared: PreparedInput, params: VideoParams, request_id: str = "",
                     timeout_s: float | None = None) -> RenderedVideo:
        """The MP4 for a prepared input: from the cache for a seeded repeat, else from Triton."""
        started = time.perf_counter()
        video = video_request(prepared, params)
        cache = self.cache if self.cache is not None and self.cache.enabled else None
        key = cache_key(self.settings.triton_model, video, params.fps) if cache is not None else None
        if key is not None and cache is not None:
            hit = await cache.lookup(key)
            if hit is not None:
                path, entry = hit
                logger.info("video %s: served from the cache", path.name)
                return RenderedVideo(path=path, seed=entry.seed, width=entry.width, height=entry.height,
                                     num_frames=entry.num_frames, fps=entry.fps,
                                     elapsed_s=time.perf_counter() - started, cached=True)
        generated = await self.triton.generate(video, timeout_s=timeout_s, request_id=request_id)
        path = self.outputs.new_path()
        await asyncio.to_thread(encode_mp4, generated.frames, params.fps, path)
        if key is not None and cache is not None:
            await cache.remember(key, path, generated.seed, video, params.fps)
        elapsed = time.perf_counter() - started
        logger.info("video %s: %dx%d, %d frames, %d steps in %.2f s, prompt %s", path.name, video.width,
                    video.height, video.num_frames, video.num_inference_steps, elapsed,
                    prompt_for_log(video.prompt, self.settings.log_prompts))
        return RenderedVideo(path=path, seed=generated.seed, width=video.width, height=video.height,
                             num_frames=video.num_frames, fps=params.fps, elapsed_s=elapsed, cached=False)

    def response(self, rendered: RenderedVideo, base_url: str, inference_time: float | None = None) -> GenerateResponse:
        return GenerateResponse(
            success=True, message="video served from the cache" if rendered.cached else "video generated",
            video_path=self.outputs.relative_path(rendered.path),
            video_url=self.outputs.url(self.settings.public_base_url or base_url, rendered.path),
            inference_time=round(rendered.elapsed_s if inference_time is None else inference_time, 3),
            seed=rendered.seed, width=rendered.width, height=rendered.height, num_frames=rendered.num_frames,
            fps=rendered.fps, cached=rendered.cached)

    async def generate(self, body: GenerateRequest, base_url: str) -> GenerateResponse:
        """Prepare the image, run the model (or hit the cache), encode the MP4; raises ``ApiError``s."""
        started = time.perf_counter()
        prepared = await self.prepare(body)
        rendered = await self.render(prepared, body)
        return self.response(rendered, base_url, inference_time=time.perf_counter() - started)
