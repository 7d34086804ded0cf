"""The diffusers ``I2VGenXLPipeline`` with the two controls it lacks: seeded image latents and a
per-step hook (for progress and cancellation)."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from contextlib import contextmanager

StepHook = Callable[[int, int], None]
"""Called after each denoising step with (steps done, total); may raise to stop the call."""
StepTimer = Callable[[float], None]
"""Called after each denoising step with its seconds (from the end of the previous one, or from
the start of the denoising loop), before the ``StepHook``."""


@functools.cache
def controlled_pipeline_class():
    """An ``I2VGenXLPipeline`` subclass with seeded image latents and a per-step hook.

    Built lazily (and once) so importing this module does not import torch and diffusers.
    """
    import torch
    from diffusers import I2VGenXLPipeline

    class ControlledI2VGenXLPipeline(I2VGenXLPipeline):
        # Set for the duration of one __call__ by VideoGenerator; one call at a time per
        # instance, which is how Triton drives a Python model instance.
        _image_latent_generators: list[torch.Generator] | None = None
        _step_callback: StepHook | None = None
        _step_timer: StepTimer | None = None

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
            yield _StepCounter(total or 0, callback, self._step_timer)

    return ControlledI2VGenXLPipeline


class _StepCounter:
    def __init__(self, total: int, callback: StepHook | None, timer: StepTimer | None = None) -> None:
        self.total = total
        self.done = 0
        self.callback = callback
        self.timer = timer
        self.last = time.perf_counter()  # the loop starts right after progress_bar() is entered

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.timer is not None:
            now = time.perf_counter()
            self.timer((now - self.last) / max(n, 1))
            self.last = now
        if self.callback is not None:
            self.callback(self.done, self.total)
