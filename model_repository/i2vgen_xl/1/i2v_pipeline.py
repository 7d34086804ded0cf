"""The I2VGen-XL work of the Triton model, importable and testable without Triton.

``model.py`` beside this file only turns Triton tensors into ``GenerationRequest``
objects and results back into tensors. Everything else lives here: settings, input
validation, loading, grouping requests into batched pipeline calls, per-request seeding,
cancellation between denoising steps, and the conversion to uint8 frames.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import PIL.ImageOps

logger = logging.getLogger("i2vgen_xl")

# Seeds are reported back to callers, some of them JavaScript: keep them exact in a double.
MAX_SEED = 2**53 - 1
DTYPES = ("float32", "float16", "bfloat16")


class InvalidRequestError(ValueError):
    """The request itself is wrong; the caller can fix it."""


class GenerationCancelledError(RuntimeError):
    """Every request of a pipeline call was cancelled, so the call stopped early."""


class GenerationFailedError(RuntimeError):
    """The model ran but produced no usable frames for this request."""


def _parse_bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {value!r}")


@dataclass(frozen=True)
class ModelSettings:
    """Model tunables, read once from the Triton config ``parameters`` (all strings there)."""

    model_path: str = ""
    variant: str = ""  # e.g. "fp16": load the hub's half-precision files
    device: str = "cpu"
    dtype: str = "float32"
    max_num_frames: int = 64
    max_inference_steps: int = 150
    max_pixels: int = 1280 * 1280
    # True: each request of a group runs as its own pipeline call, so its frames cannot depend
    # on its neighbours. False: one batched call per group (faster on CPU for small videos),
    # where ATen's vectorised element-wise kernels make a seeded item differ by rounding.
    batch_invariant: bool = True
    vae_tiling: bool = False  # decode in overlapping tiles: less memory at high resolution
    channels_last: bool = False
    torch_compile: bool = False
    cpu_threads: int = 0
    # Where per-request progress files go (see ProgressFiles); empty: no progress reports.
    progress_dir: str = ""

    @classmethod
    def from_parameters(cls, parameters: dict[str, str], environ: dict[str, str] | None = None,
                        base_dir: Path | None = None) -> ModelSettings:
        """Build settings from string parameters; ``I2V_MODEL_PATH`` overrides ``model_path``.

        A relative ``model_path`` is resolved against ``base_dir`` (the model's folder in
        the repository) when it exists there; otherwise it is kept as a hub id.
        """
        environ = dict(os.environ) if environ is None else environ
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(parameters) - set(known))
        if unknown:
            raise ValueError(f"unknown model parameters: {', '.join(unknown)}")
        values: dict[str, Any] = {}
        for name, raw in parameters.items():
            kind = known[name].type
            try:
                if kind == "bool":
                    values[name] = _parse_bool(raw)
                elif kind == "int":
                    values[name] = int(raw)
                else:
                    values[name] = raw
            except ValueError as exc:
                raise ValueError(f"model parameter {name}: {exc}") from None
        if environ.get("I2V_MODEL_PATH"):
            values["model_path"] = environ["I2V_MODEL_PATH"]
        if environ.get("I2V_PROGRESS_DIR"):
            values["progress_dir"] = environ["I2V_PROGRESS_DIR"]
        settings = cls(**values)
        if base_dir is not None and settings.model_path and not Path(settings.model_path).is_absolute():
            candidate = (base_dir / settings.model_path).resolve()
            if candidate.exists():
                settings = cls(**{**values, "model_path": str(candidate)})
        settings.validate()
        return settings

    def validate(self) -> None:
        if not self.model_path:
            raise ValueError("model_path is empty: set the model parameter or I2V_MODEL_PATH")
        if self.dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, not {self.dtype!r}")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ValueError(f"device must be 'cpu' or 'cuda[:N]', not {self.device!r}")
        for name in ("max_num_frames", "max_inference_steps", "max_pixels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")


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

    @property
    def batch_key(self) -> tuple[int, int, int, int, float]:
        """What must be equal for requests to share one pipeline call."""
        return (self.height, self.width, self.num_frames, self.num_inference_steps, self.guidance_scale)


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
                  height: int, width: int, seed: int | None) -> GenerationRequest:
    """Validate raw inputs against the model's limits; raise ``InvalidRequestError`` with the reason."""
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
    if seed is None:
        seed = secrets.randbelow(MAX_SEED + 1)
    elif not 0 <= seed <= MAX_SEED:
        raise InvalidRequestError(f"SEED must be between 0 and {MAX_SEED}, got {seed}")
    return GenerationRequest(
        image=fit_image(decode_image(image), width, height), prompt=prompt, negative_prompt=negative_prompt or "",
        num_frames=num_frames, num_inference_steps=num_inference_steps,
        guidance_scale=float(guidance_scale), height=height, width=width, seed=seed)


def group_by_batch_key(requests: Sequence[GenerationRequest]) -> list[list[int]]:
    """Indices of ``requests`` grouped by ``batch_key``, in order of first appearance."""
    groups: dict[tuple, list[int]] = {}
    for index, request in enumerate(requests):
        groups.setdefault(request.batch_key, []).append(index)
    return list(groups.values())


def frames_to_uint8(video: np.ndarray) -> np.ndarray:
    """Float frames in [0, 1] to uint8 RGB, rounding rather than truncating."""
    return np.clip(np.rint(video * 255.0), 0, 255).astype(np.uint8)


class ProgressFiles:
    """Per-request denoising progress as tiny files, for a gateway on the same host or pod.

    Triton answers a request only when it is done, so progress goes by another path: the file
    ``<directory>/<request id>`` holds ``"<done> <total>"`` and is replaced atomically each
    step. Request ids that are not plain tokens are ignored, so a name cannot escape the folder.
    """

    def __init__(self, directory: str) -> None:
        self.directory = Path(directory) if directory else None
        if self.directory is not None:
            self.directory.mkdir(parents=True, exist_ok=True)

    def _path(self, request_id: str) -> Path | None:
        if self.directory is None or not request_id or not _PLAIN_ID.fullmatch(request_id):
            return None
        return self.directory / request_id

    def report(self, request_id: str, done: int, total: int) -> None:
        path = self._path(request_id)
        if path is None:
            return
        partial = path.with_name(f".{path.name}.tmp")
        try:
            partial.write_text(f"{done} {total}")
            partial.replace(path)
        except OSError as exc:  # progress is best effort; generation goes on
            logger.warning("cannot write progress for %s: %s", request_id, exc)

    def clear(self, request_id: str) -> None:
        path = self._path(request_id)
        if path is not None:
            path.unlink(missing_ok=True)


_PLAIN_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


# (indices of the requests in the running call, steps done, total steps)
StepCallback = Callable[[Sequence[int], int, int], None]
"""Called after each denoising step with (steps done, total); may raise to stop the call."""


@functools.cache
def _controlled_pipeline_class():
    """An ``I2VGenXLPipeline`` subclass with seeded image latents and a per-step hook.

    Built lazily (and once) so importing this module does not import torch and diffusers.
    """
    import torch
    from diffusers import I2VGenXLPipeline

    class ControlledI2VGenXLPipeline(I2VGenXLPipeline):
        # Set for the duration of one __call__ by VideoGenerator; one call at a time per
        # instance, which is how Triton drives a Python model instance.
        _image_latent_generators: list[torch.Generator] | None = None
        _step_callback: StepCallback | None = None

        def prepare_image_latents(self, image, device, num_frames, num_videos_per_prompt):
            # Upstream samples the VAE posterior from the global RNG, so a seed alone is
            # not reproducible and batch neighbours disturb each other. Sample each item
            # from its own generator instead; the rest is unchanged.
            generators = self._image_latent_generators
            if generators is None:
                return super().prepare_image_latents(image, device, num_frames, num_videos_per_prompt)
            posterior = self.vae.encode(image.to(device=device)).latent_dist
            noise = torch.cat([
                torch.randn(posterior.mean[i:i + 1].shape, generator=g, device=g.device,
                            dtype=posterior.mean.dtype).to(device)
                for i, g in enumerate(generators)])
            image_latents = (posterior.mean + posterior.std * noise) * self.vae.config.scaling_factor
            image_latents = image_latents.unsqueeze(2)
            if num_frames > 1:
                scales = torch.arange(1, num_frames, device=device, dtype=image_latents.dtype) / (num_frames - 1)
                position_mask = torch.ones_like(image_latents).repeat(1, 1, num_frames - 1, 1, 1)
                position_mask = position_mask * scales.view(1, 1, -1, 1, 1)
                image_latents = torch.cat([image_latents, position_mask], dim=2)
            image_latents = image_latents.repeat(num_videos_per_prompt, 1, 1, 1, 1)
            if self.do_classifier_free_guidance:
                image_latents = torch.cat([image_latents] * 2)
            return image_latents

        @contextmanager
        def progress_bar(self, iterable=None, total=None):
            # The pipeline has no callback_on_step_end; it does call progress_bar.update()
            # once per denoising step, which is the hook used for progress and cancellation.
            callback = self._step_callback
            yield _StepCounter(total or 0, callback)

    return ControlledI2VGenXLPipeline


class _StepCounter:
    def __init__(self, total: int, callback: StepCallback | None) -> None:
        self.total = total
        self.done = 0
        self.callback = callback

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.callback is not None:
            self.callback(self.done, self.total)


@dataclass
class GenerationResult:
    """Per-request outcome: frames ``[F, H, W, 3]`` uint8, or the error to report."""

    seed: int
    frames: np.ndarray | None = None
    error: Exception | None = None


class VideoGenerator:
    """Owns one loaded pipeline and runs batches of ``GenerationRequest``."""

    def __init__(self, pipeline: Any, batch_invariant: bool = True) -> None:
        self.pipeline = pipeline
        self.batch_invariant = batch_invariant

    @classmethod
    def load(cls, settings: ModelSettings) -> VideoGenerator:
        """Load weights once with ``from_pretrained`` (a local folder or a hub id)."""
        import torch

        if settings.cpu_threads > 0:
            torch.set_num_threads(settings.cpu_threads)
        started = time.perf_counter()
        pipeline = _controlled_pipeline_class().from_pretrained(
            settings.model_path, torch_dtype=getattr(torch, settings.dtype), variant=settings.variant or None)
        generator = cls.from_pipeline(pipeline, settings)
        logger.info("loaded %s on %s as %s in %.2f s", settings.model_path, settings.device, settings.dtype,
                    time.perf_counter() - started)
        return generator

    @classmethod
    def from_pipeline(cls, pipeline: Any, settings: ModelSettings) -> VideoGenerator:
        """Wrap an in-memory ``I2VGenXLPipeline`` and apply the runtime options of ``settings``."""
        import torch

        controlled_class = _controlled_pipeline_class()
        if not isinstance(pipeline, controlled_class):
            pipeline = controlled_class(**pipeline.components)
        pipeline.set_progress_bar_config(disable=True)
        pipeline.to(settings.device, getattr(torch, settings.dtype))
        if settings.vae_tiling:
            # Frames are already decoded one at a time (decode_chunk_size=1); tiling also
            # splits each frame, which bounds decoder memory at 1280x720 and above.
            pipeline.vae.enable_tiling()
        if settings.channels_last:
            # The 3-D UNet also has 5-D weights, which have no channels-last layout.
            for module in pipeline.unet.modules():
                if isinstance(module, torch.nn.Conv2d):
                    module.to(memory_format=torch.channels_last)
        if settings.torch_compile:
            pipeline.unet = torch.compile(pipeline.unet)
        return cls(pipeline, settings.batch_invariant)

    def generate(self, requests: Sequence[GenerationRequest],
                 is_cancelled: Callable[[int], bool] | None = None,
                 on_step: StepCallback | None = None) -> list[GenerationResult]:
        """Run every request, grouped by ``batch_key`` into pipeline calls.

        A group is one batched call, or one call per request when ``batch_invariant``.
        ``is_cancelled(i)`` is polled between denoising steps; a call stops early once all
        of its requests are cancelled. Errors stay per request: one call failing never
        fails another.
        """
        results = [GenerationResult(seed=r.seed) for r in requests]
        calls = [[i] for group in group_by_batch_key(requests) for i in group] if self.batch_invariant \
            else group_by_batch_key(requests)
        for call in calls:
            if is_cancelled is not None and all(is_cancelled(i) for i in call):
                for i in call:
                    results[i].error = GenerationCancelledError("request was cancelled before it started")
                continue
            try:
                videos = self._run_group([requests[i] for i in call], call, is_cancelled, on_step)
            except GenerationCancelledError as exc:
                logger.info("pipeline call for %d request(s) %s", len(call), exc)
                for i in call:
                    results[i].error = exc
                continue
            except Exception as exc:  # noqa: BLE001 - reported per request, never crashes the stub
                logger.exception("pipeline call failed for %d request(s)", len(call))
                for i in call:
                    results[i].error = GenerationFailedError(f"generation failed: {exc}")
                continue
            for i, video in zip(call, videos, strict=True):
                if is_cancelled is not None and is_cancelled(i):
                    results[i].error = GenerationCancelledError("request was cancelled")
                elif not np.isfinite(video).all():
                    # fp16 has produced NaN frames for some users of the real weights.
                    results[i].error = GenerationFailedError(
                        "the model produced NaN frames; run it in float32 or bfloat16")
                else:
                    results[i].frames = frames_to_uint8(video)
        return results

    def _run_group(self, group: list[GenerationRequest], indices: list[int],
                   is_cancelled: Callable[[int], bool] | None, on_step: StepCallback | None) -> np.ndarray:
        import torch

        first = group[0]

        def step_hook(done: int, total: int) -> None:
            if on_step is not None:
                on_step(indices, done, total)
            if is_cancelled is not None and all(is_cancelled(i) for i in indices):
                raise GenerationCancelledError(f"cancelled after {done} of {total} denoising steps")

        # One CPU generator per item: CPU random streams are the same on every device,
        # and an item's noise never depends on its neighbours in the batch.
        latent_generators = [torch.Generator("cpu").manual_seed(r.seed) for r in group]
        image_generators = [torch.Generator("cpu").manual_seed(r.seed + 1) for r in group]
        pipeline = self.pipeline
        pipeline._image_latent_generators = image_generators
        pipeline._step_callback = step_hook
        started = time.perf_counter()
        try:
            with torch.inference_mode():
                output = pipeline(
                    prompt=[r.prompt for r in group],
                    negative_prompt=[r.negative_prompt for r in group],
                    image=[r.image for r in group],
                    height=first.height,
                    width=first.width,
                    num_frames=first.num_frames,
                    num_inference_steps=first.num_inference_steps,
                    guidance_scale=first.guidance_scale,
                    generator=latent_generators,
                    output_type="np",
                    return_dict=False,
                )[0]
        finally:
            pipeline._image_latent_generators = None
            pipeline._step_callback = None
        logger.info("pipeline call: batch=%d size=%dx%d frames=%d steps=%d in %.2f s", len(group), first.width,
                    first.height, first.num_frames, first.num_inference_steps, time.perf_counter() - started)
        return np.asarray(output, dtype=np.float32)

