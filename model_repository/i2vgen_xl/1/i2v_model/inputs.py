"""Inputs of one video: decoding, fitting and validating what a caller sent, and batch grouping."""

from __future__ import annotations

import io
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import PIL.Image
import PIL.ImageOps

from i2v_model.settings import ModelSettings

# Seeds are reported back to callers, some of them JavaScript: keep them exact in a double.
MAX_SEED = 2**53 - 1


class InvalidRequestError(ValueError):
    """The request itself is wrong; the caller can fix it."""


@dataclass(frozen=True)
class GenerationRequest:
    """One video to generate, already decoded and validated."""

    image: PIL.Image.Image = field(compare=False)
    prompt: str
    negative_prompt: str
    num_frames: int
    num_inference_steps: int
    guidance_scale: float
    height: int
    width: int
    seed: int
    step_cache_interval: int = 0  # reuse the deep UNet features for this many steps (0, 1: off)

    @property
    def batch_key(self) -> tuple[int, int, int, int, float, int]:
        """What must be equal for requests to share one pipeline call."""
        return (self.height, self.width, self.num_frames, self.num_inference_steps, self.guidance_scale,
                self.step_cache_interval)


def decode_image(data: bytes) -> PIL.Image.Image:
    """Decode encoded image bytes (PNG, JPEG, WebP, ...) into an RGB image."""
    if not data:
        raise InvalidRequestError("IMAGE is empty")
    try:
        with PIL.Image.open(io.BytesIO(data)) as opened:
            opened.load()
            image = PIL.ImageOps.exif_transpose(opened) or opened
            return image.convert("RGB")
    except PIL.Image.DecompressionBombError as exc:
        raise InvalidRequestError(f"IMAGE is too large: {exc}") from None
    except PIL.UnidentifiedImageError:
        raise InvalidRequestError("IMAGE is not a decodable image (expected PNG, JPEG, WebP, BMP or GIF)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidRequestError(f"IMAGE is not a decodable image (truncated or corrupt: {exc})") from None


def fit_image(image: PIL.Image.Image, width: int, height: int) -> PIL.Image.Image:
    """Scale to cover ``width`` x ``height`` and crop the centre, as upstream does.

    Done per image here because the upstream helper sizes a whole batch by its first image.
    """
    if image.size == (width, height):
        return image
    scale = max(width / image.width, height / image.height)
    resized = image.resize((max(width, round(image.width * scale)), max(height, round(image.height * scale))),
                           resample=PIL.Image.BICUBIC)
    left = (resized.width - width) // 2
    top = (resized.height - height) // 2
    return resized.crop((left, top, left + width, top + height))


def build_request(settings: ModelSettings, *, image: bytes, prompt: str, negative_prompt: str | None,
                  num_frames: int, num_inference_steps: int, guidance_scale: float,
                  height: int, width: int, seed: int | None,
                  step_cache_interval: int | None = None) -> GenerationRequest:
    """Validate raw inputs against the model's limits; raise ``InvalidRequestError`` with the reason.

    ``step_cache_interval`` None takes the model's configured default.
    """
    if not 1 <= num_frames <= settings.max_num_frames:
        raise InvalidRequestError(f"NUM_FRAMES must be between 1 and {settings.max_num_frames}, got {num_frames}")
    if not 1 <= num_inference_steps <= settings.max_inference_steps:
        raise InvalidRequestError(
            f"NUM_INFERENCE_STEPS must be between 1 and {settings.max_inference_steps}, got {num_inference_steps}")
    if not np.isfinite(guidance_scale) or not 0.0 <= guidance_scale <= 50.0:
        raise InvalidRequestError(f"GUIDANCE_SCALE must be a number between 0 and 50, got {guidance_scale}")
    for name, value in (("HEIGHT", height), ("WIDTH", width)):
        if value < 64 or value % 8:
            raise InvalidRequestError(f"{name} must be a multiple of 8 and at least 64, got {value}")
    if height * width > settings.max_pixels:
        raise InvalidRequestError(
            f"HEIGHT x WIDTH = {height * width} pixels exceeds the limit of {settings.max_pixels}")
    if step_cache_interval is None:
        step_cache_interval = settings.step_cache_interval
    elif not 0 <= step_cache_interval <= settings.max_inference_steps:
        raise InvalidRequestError(f"STEP_CACHE_INTERVAL must be between 0 (off) and {settings.max_inference_steps}, "
                                  f"got {step_cache_interval}")
    if seed is None:
        seed = secrets.randbelow(MAX_SEED + 1)
    elif not 0 <= seed <= MAX_SEED:
        raise InvalidRequestError(f"SEED must be between 0 and {MAX_SEED}, got {seed}")
    return GenerationRequest(
        image=fit_image(decode_image(image), width, height), prompt=prompt, negative_prompt=negative_prompt or "",
        num_frames=num_frames, num_inference_steps=num_inference_steps,
        guidance_scale=float(guidance_scale), height=height, width=width, seed=seed,
        step_cache_interval=step_cache_interval)


def group_by_batch_key(requests: Sequence[GenerationRequest]) -> list[list[int]]:
    """Indices of ``requests`` grouped by ``batch_key``, in order of first appearance."""
    groups: dict[tuple, list[int]] = {}
    for index, request in enumerate(requests):
        groups.setdefault(request.batch_key, []).append(index)
    return list(groups.values())
