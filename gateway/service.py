"""Generation as a service object: image in, MP4 out. Knows nothing of HTTP."""

from __future__ import annotations

import asyncio
import logging
import time

from gateway.config import Settings
from gateway.errors import InvalidFieldError
from gateway.images import ImageLimits, prepare_image
from gateway.outputs import OutputStore
from gateway.schemas import GenerateRequest, GenerateResponse
from gateway.triton_client import TritonClient
from gateway.triton_inputs import VideoRequest
from gateway.video import encode_mp4

logger = logging.getLogger("gateway.generation")


class GenerationService:
    def __init__(self, settings: Settings, triton: TritonClient, outputs: OutputStore) -> None:
        self.settings = settings
        self.triton = triton
        self.outputs = outputs
        self.image_limits = ImageLimits(settings.max_image_bytes, settings.max_image_pixels)

    def _check_prompts(self, body: GenerateRequest) -> None:
        limit = self.settings.max_prompt_chars
        for name in ("prompt", "negative_prompt"):
            text = getattr(body, name)
            if text is not None and len(text) > limit:
                raise InvalidFieldError(f"{name} is {len(text)} characters long; the limit is {limit}")

    async def generate(self, body: GenerateRequest, base_url: str) -> GenerateResponse:
        """Prepare the image, run the model, encode the MP4; raises ``ApiError`` subclasses."""
        started = time.perf_counter()
        self._check_prompts(body)
        width, height = body.resolution.size
        # Image decoding and MP4 encoding are CPU work: keep them off the event loop.
        image = await asyncio.to_thread(prepare_image, body.image_base64, width, height, body.fit, self.image_limits)
        generated = await self.triton.generate(VideoRequest(
            image=image, prompt=body.prompt, negative_prompt=body.negative_prompt, num_frames=body.num_frames,
            num_inference_steps=body.steps, guidance_scale=body.guidance_scale, height=height, width=width,
            seed=body.seed))
        path = self.outputs.new_path()
        await asyncio.to_thread(encode_mp4, generated.frames, body.fps, path)
        elapsed = time.perf_counter() - started
        logger.info("video %s: %dx%d, %d frames, %d steps in %.2f s", path.name, width, height, body.num_frames,
                    body.steps, elapsed)
        return GenerateResponse(
            success=True, message="video generated", video_path=self.outputs.relative_path(path),
            video_url=self.outputs.url(self.settings.public_base_url or base_url, path),
            inference_time=round(elapsed, 3), seed=generated.seed, width=width, height=height,
            num_frames=body.num_frames, fps=body.fps)
