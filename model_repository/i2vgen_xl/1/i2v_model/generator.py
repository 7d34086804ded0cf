"""Run batches of ``GenerationRequest`` on one loaded pipeline and turn the videos into uint8 frames."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from i2v_model.compiled_unet import CompiledUNet, save_cache_artifacts, use_cache_dir
from i2v_model.inputs import GenerationRequest, group_by_batch_key
from i2v_model.pipeline import controlled_pipeline_class
from i2v_model.settings import ModelSettings
from i2v_model.step_cache import step_caching

logger = logging.getLogger("i2vgen_xl")

# decode_chunk_size "auto" on CPU: memory is rarely the limit there, and 8 frames a chunk
# already amortise the per-call overhead of the decoder.
AUTO_CPU_DECODE_CHUNK = 8
# Bytes of decoder activations a frame of one pixel needs, per byte of dtype: the widest
# full-resolution decoder stage holds 128 channels, with a few tensors of that size alive at
# once; 16 x 128 leaves room for the allocator.
DECODE_BYTES_PER_PIXEL_AND_DTYPE_BYTE = 16 * 128
# Share of free CUDA memory a decode chunk may take.
DECODE_FREE_MEMORY_SHARE = 0.5


def decode_chunk_frames(setting: str, device: str, height: int, width: int, num_frames: int,
                        dtype_bytes: int) -> int:
    """Frames the VAE decodes at once: the configured number, or for "auto" as many as half of
    the free CUDA memory holds (a fixed chunk on CPU); between 1 and ``num_frames``."""
    if setting != "auto":
        return max(1, min(int(setting), num_frames))
    if not device.startswith("cuda"):
        return min(AUTO_CPU_DECODE_CHUNK, num_frames)
    import torch

    free_bytes, _ = torch.cuda.mem_get_info(torch.device(device))
    per_frame = height * width * dtype_bytes * DECODE_BYTES_PER_PIXEL_AND_DTYPE_BYTE
    return max(1, min(int(free_bytes * DECODE_FREE_MEMORY_SHARE // per_frame), num_frames))


StepCallback = Callable[[Sequence[int], int, int], None]
"""Called after each denoising step with (indices of the requests in the running call, steps done,
total steps); may raise to stop the call."""
DoneCallback = Callable[[Sequence[int], Sequence["GenerationResult"]], None]
"""Called once a pipeline call has ended with the indices of its requests and their final results:
the host answers them at once instead of at the end of the whole batch."""


@dataclass(frozen=True)
class GeneratorMetrics:
    """What the host records about the work (Triton's model.py turns these into custom metrics).
    Plain callbacks, so this package never imports Triton."""

    step_seconds: Callable[[float, int], None]
    """One denoising step took this many seconds, in a pipeline call of this many videos."""
    nan_guard: Callable[[], None]
    """A video came out with NaN or infinite values, and its request failed."""


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

    def __init__(self, pipeline: Any, batch_invariant: bool = True, metrics: GeneratorMetrics | None = None,
                 decode_chunk_size: str = "auto", compiled_unet: CompiledUNet | None = None) -> None:
        self.pipeline = pipeline
        self.batch_invariant = batch_invariant
        self.metrics = metrics
        self.decode_chunk_size = decode_chunk_size
        self.compiled_unet = compiled_unet
        self.warmup_seconds = 0.0

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
            # Chunks bound decoder memory by frames (decode_chunk_size); tiling also splits
            # each frame, which bounds it at 1280x720 and above.
            pipeline.vae.enable_tiling()
        if settings.channels_last:
            # The 3-D UNet also has 5-D weights, which have no channels-last layout.
            for module in pipeline.unet.modules():
                if isinstance(module, torch.nn.Conv2d):
                    module.to(memory_format=torch.channels_last)
        compiled_unet = None
        if settings.torch_compile:
            if settings.compile_cache_dir:
                use_cache_dir(settings.compile_cache_dir)
            compiled_unet = CompiledUNet(pipeline.unet, settings.compile_mode, settings.compile_backend)
        generator = cls(pipeline, settings.batch_invariant, decode_chunk_size=settings.decode_chunk_size,
                        compiled_unet=compiled_unet)
        if compiled_unet is not None:
            if not settings.buckets:
                logger.warning("torch_compile is on but compile_buckets is empty: every shape runs eagerly")
            generator.warm_up(settings.buckets)
            if settings.compile_cache_dir:
                save_cache_artifacts(settings.compile_cache_dir)
        return generator

    def warm_up(self, buckets: Sequence[tuple[int, int, int]]) -> None:
        """Compile the UNet for each (width, height, frames) bucket with a one-step video, so no
        request waits for a compile. The shapes are those of one video with guidance (the CFG
        pair); a batched call or a guidance of 1 or less runs eagerly."""
        import PIL.Image

        if self.compiled_unet is None or not buckets:
            return
        started = time.perf_counter()
        image = PIL.Image.new("RGB", (64, 64), (127, 127, 127))
        requests = [GenerationRequest(image=image.resize((width, height)), prompt="warm-up", negative_prompt="",
                                      num_frames=frames, num_inference_steps=1, guidance_scale=9.0,
                                      height=height, width=width, seed=0)
                    for width, height, frames in buckets]
        with self.compiled_unet.warming_up():
            for request in requests:
                [result] = self.generate([request])
                if result.error is not None:
                    raise RuntimeError(f"warm-up of {request.width}x{request.height}x{request.num_frames} "
                                       f"failed: {result.error}")
        self.warmup_seconds = time.perf_counter() - started
        logger.info("compiled and warmed up %d shape bucket(s) in %.1f s", len(buckets), self.warmup_seconds)

    def generate(self, requests: Sequence[GenerationRequest],
                 is_cancelled: Callable[[int], bool] | None = None,
                 on_step: StepCallback | None = None, on_done: DoneCallback | None = None) -> list[GenerationResult]:
        """Run every request, grouped by ``batch_key`` into pipeline calls.

        A group is one batched call, or one call per request when ``batch_invariant``; ``on_done``
        hears of each call's requests as soon as it ends.
        ``is_cancelled(i)`` is polled between denoising steps; a call stops early once all
        of its requests are cancelled. Errors stay per request: one call failing never
        fails another.
        """
        results = [GenerationResult(seed=r.seed) for r in requests]
        calls = [[i] for group in group_by_batch_key(requests) for i in group] if self.batch_invariant \
            else group_by_batch_key(requests)
        for call in calls:
            self._run_call(requests, call, results, is_cancelled, on_step)
            if on_done is not None:
                on_done(call, [results[i] for i in call])
        return results

    def _run_call(self, requests: Sequence[GenerationRequest], call: list[int], results: list[GenerationResult],
                  is_cancelled: Callable[[int], bool] | None, on_step: StepCallback | None) -> None:
        """One pipeline call for the requests ``call`` indexes; its outcome goes into ``results``."""
        if is_cancelled is not None and all(is_cancelled(i) for i in call):
            for i in call:
                results[i].error = GenerationCancelledError("request was cancelled before it started")
            return
        try:
            videos = self._run_group([requests[i] for i in call], call, is_cancelled, on_step)
        except GenerationCancelledError as exc:
            logger.info("pipeline call for %d request(s) %s", len(call), exc)
            for i in call:
                results[i].error = exc
            return
        except Exception as exc:  # noqa: BLE001 - reported per request, never crashes the stub
            logger.exception("pipeline call failed for %d request(s)", len(call))
            for i in call:
                # The exception's text may hold paths and internals: it stays in the log.
                results[i].error = GenerationFailedError(f"the pipeline call failed ({type(exc).__name__}); "
                                                         "the model's log has the details")
            return
        for i, video in zip(call, videos, strict=True):
            if is_cancelled is not None and is_cancelled(i):
                results[i].error = GenerationCancelledError("request was cancelled")
            elif not np.isfinite(video).all():
                # fp16 has produced NaN frames for some users of the real weights.
                if self.metrics is not None:
                    self.metrics.nan_guard()
                results[i].error = GenerationFailedError(
                    "the model produced NaN frames; run it in float32 or bfloat16")
            else:
                results[i].frames = frames_to_uint8(video)

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
        metrics = self.metrics
        pipeline._step_timer = None if metrics is None else (lambda seconds: metrics.step_seconds(seconds, len(group)))
        interval = first.step_cache_interval
        compiled = self.compiled_unet
        chunk = decode_chunk_frames(self.decode_chunk_size, str(pipeline.unet.device), first.height, first.width,
                                    first.num_frames, pipeline.vae.dtype.itemsize)
        started = time.perf_counter()
        try:
            # Step caching wraps the UNet's blocks in Python, so those calls run eagerly.
            with torch.inference_mode(), step_caching(pipeline.unet, interval), \
                    (compiled.eager() if compiled is not None and interval > 1 else contextlib.nullcontext()):
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
                    decode_chunk_size=chunk,
                    output_type="np",
                    return_dict=False,
                )[0]
        finally:
            pipeline._image_latent_generators = None
            pipeline._step_callback = None
            pipeline._step_timer = None
        logger.info("pipeline call: batch=%d size=%dx%d frames=%d steps=%d in %.2f s", len(group), first.width,
                    first.height, first.num_frames, first.num_inference_steps, time.perf_counter() - started)
        return np.asarray(output, dtype=np.float32)
