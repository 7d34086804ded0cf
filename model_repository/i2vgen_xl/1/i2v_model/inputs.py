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


# The formats the README documents; any other (ICO, PPM, TGA, QOI, ... which Pillow also knows)
# is refused before a decoder runs, keeping the parser surface a caller can reach small.
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")
ACCEPTED_FORMAT_NAMES = "PNG, JPEG, WebP, BMP, GIF or TIFF"


def decode_image(data: bytes, max_bytes: int = 20 * 1024 * 1024, max_pixels: int = 40_000_000) -> PIL.Image.Image:
    """Decode encoded image bytes of an accepted format, within the byte and pixel limits.

    The limits are checked before anything is decoded (the pixel count from the header). Any
    failure of a decoder is the caller's bad input: hostile files make Pillow raise more than
    OSError (IndexError for a truncated QOI, for one), so every exception becomes an
    ``InvalidRequestError`` that names the problem without Pillow's internals.
    """
    if not data:
        raise InvalidRequestError("IMAGE is empty")
    if len(data) > max_bytes:
        raise InvalidRequestError(f"IMAGE is {len(data)} bytes; the limit is {max_bytes}")
    try:
        opened = PIL.Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except PIL.UnidentifiedImageError:
        raise InvalidRequestError(f"IMAGE is not a decodable image of an accepted format "
                                  f"({ACCEPTED_FORMAT_NAMES})") from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad IMAGE
        raise InvalidRequestError(f"IMAGE is not a decodable image (corrupt header: {_reason(exc)})") from None
    with opened:
        pixels = opened.width * opened.height
        if pixels > max_pixels:
            raise InvalidRequestError(f"IMAGE is {opened.width}x{opened.height} = {pixels} pixels; "
                                      f"the limit is {max_pixels}")
        try:
            opened.load()
            image = PIL.ImageOps.exif_transpose(opened) or opened
            return image if image.mode == "RGB" else image.convert("RGB")
        except Exception as exc:  # noqa: BLE001 - as above
            raise InvalidRequestError(f"IMAGE is not a decodable image (truncated or corrupt: {_reason(exc)})") \
                from None


def _reason(exc: Exception) -> str:
    """A decoder's complaint, short and without anything but its first line."""
    text = str(exc).splitlines()[0][:120] if str(exc) else ""
    return text or type(exc).__name__


def fit_image(image: PIL.Image.Image, width: int, height: int) -> PIL.Image.Image:
    """Cover ``width`` x ``height`` and keep the centre, as upstream does, cropping before scaling.

    Only the centred region of the target's aspect ratio is scaled (``resize`` with a ``box``),
    so the work and memory are those of the output, whatever the input's shape: scaling a 1x8000
    image whole to cover 256x256 would make a 256x2048000 intermediate (2.5 GB). Done per image
    here because the upstream helper sizes a whole batch by its first image.
    """
    if image.size == (width, height):
        return image
    scale = max(width / image.width, height / image.height)
    box_width, box_height = min(image.width, width / scale), min(image.height, height / scale)
    left, top = (image.width - box_width) / 2, (image.height - box_height) / 2
    return image.resize((width, height), resample=PIL.Image.BICUBIC,
                        box=(left, top, left + box_width, top + box_height))


def build_request(settings: ModelSettings, *, image: bytes, prompt: str, negative_prompt: str | None,
                  num_frames: int, num_inference_steps: int, guidance_scale: float,
                  height: int, width: int, seed: int | None,
                  step_cache_interval: int | None = None) -> GenerationRequest:
    """Validate raw inputs against the model's limits; raise ``InvalidRequestError`` with the reason.

    Every limit is checked before any work starts: the cheap checks first, the image decoded last.
    ``step_cache_interval`` None takes the model's configured default.
    """
    for name, text in (("PROMPT", prompt), ("NEGATIVE_PROMPT", negative_prompt or "")):
        if len(text) > settings.max_prompt_chars:
            raise InvalidRequestError(f"{name} is {len(text)} characters; the limit is {settings.max_prompt_chars}")
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
    work = height * width * num_frames * num_inference_steps
    if work > settings.max_work:
        raise InvalidRequestError(
            f"HEIGHT x WIDTH x NUM_FRAMES x NUM_INFERENCE_STEPS = {work} exceeds the model's work limit of "
            f"{settings.max_work}; ask for fewer steps, frames or pixels")
    if step_cache_interval is None:
        step_cache_interval = settings.step_cache_interval
    elif not 0 <= step_cache_interval <= settings.max_inference_steps:
        raise InvalidRequestError(f"STEP_CACHE_INTERVAL must be between 0 (off) and {settings.max_inference_steps}, "
                                  f"got {step_cache_interval}")
    if seed is None:
        seed = secrets.randbelow(MAX_SEED + 1)
    elif not 0 <= seed <= MAX_SEED:
        raise InvalidRequestError(f"SEED must be between 0 and {MAX_SEED}, got {seed}")
    decoded = decode_image(image, settings.max_image_bytes, settings.max_image_pixels)
    return GenerationRequest(
        image=fit_image(decoded, width, height), prompt=prompt, negative_prompt=negative_prompt or "",
        num_frames=num_frames, num_inference_steps=num_inference_steps,
        guidance_scale=float(guidance_scale), height=height, width=width, seed=seed,
        step_cache_interval=step_cache_interval)


def group_by_batch_key(requests: Sequence[GenerationRequest]) -> list[list[int]]:
    """Indices of ``requests`` grouped by ``batch_key``, in order of first appearance."""
    groups: dict[tuple, list[int]] = {}
    for index, request in enumerate(requests):
        groups.setdefault(request.batch_key, []).append(index)
    return list(groups.values())
