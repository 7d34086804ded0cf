"""Run batches of ``GenerationRequest`` on one loaded pipeline and turn the videos into uint8 frames."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from i2v_model.inputs import GenerationRequest, group_by_batch_key
from i2v_model.pipeline import controlled_pipeline_class
from i2v_model.settings import ModelSettings

logger = logging.getLogger("i2vgen_xl")

StepCallback = Callable[[Sequence[int], int, int], None]
"""Called after each denoising step with (indices of the requests in the running call, steps done,
total steps); may raise to stop the call."""


class GenerationCancelledError(RuntimeError):
    """Every request of a pipeline call was cancelled, so the call stopped early."""


class GenerationFailedError(RuntimeError):
    """The model ran but produced no usable frames for this request."""


def frames_to_uint8(video: np.ndarray) -> np.ndarray:
    """Float frames in [0, 1] to uint8 RGB, rounding rather than truncating."""
    return np.clip(np.rint(video * 255.0), 0, 255).astype(np.uint8)


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
        pipeline = controlled_pipeline_class().from_pretrained(
            settings.model_path, torch_dtype=getattr(torch, settings.dtype), variant=settings.variant or None)
        generator = cls.from_pipeline(pipeline, settings)
        logger.info("loaded %s on %s as %s in %.2f s", settings.model_path, settings.device, settings.dtype,
                    time.perf_counter() - started)
        return generator

    @classmethod
    def from_pipeline(cls, pipeline: Any, settings: ModelSettings) -> VideoGenerator:
        """Wrap an in-memory ``I2VGenXLPipeline`` and apply the runtime options of ``settings``."""
        import torch

        controlled_class = controlled_pipeline_class()
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
