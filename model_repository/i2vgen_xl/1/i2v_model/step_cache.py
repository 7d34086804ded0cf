"""Training-free step caching for the I2VGen-XL UNet (DeepCache, Ma et al. 2023).

Between neighbouring denoising steps the deep features of a UNet change little. Every
``interval`` steps the UNet runs whole and the output of each deep block is kept; on the steps
in between the deep blocks return what they kept, so only the shallow path (input convolution
and transformer, the first down block, the last up block, the output convolution) is computed.
The last up block takes the fresh skip connections of the first down block and the reused
output of the block below it, as in DeepCache.

Off by default: on random weights it changes the frames by design, and its visual quality
must be judged on the real weights before it is turned on anywhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def deep_blocks(unet: Any) -> list[Any]:
    """The UNet blocks whose outputs are reused: every down block but the first, the middle
    block, and every up block but the last."""
    return [*unet.down_blocks[1:], unet.mid_block, *unet.up_blocks[:-1]]


class StepCache:
    """Which UNet calls compute the deep blocks, counted from the start of one pipeline call."""

    def __init__(self, interval: int) -> None:
        self.interval = interval
        self.calls = 0
        self.deep_evaluations = 0

    @property
    def reusing(self) -> bool:
        """Whether the running UNet call reuses the kept deep outputs."""
        return self.interval > 1 and (self.calls - 1) % self.interval != 0


@contextmanager
def step_caching(unet: Any, interval: int) -> Iterator[StepCache]:
    """Run the UNet with step caching for the duration of the block (interval 0 or 1: off).

    The blocks are wrapped only inside the block, so the plain (and the compiled) path never
    sees the wrappers.
    """
    cache = StepCache(interval)
    if interval <= 1:
        yield cache
        return

    def count_call(module: Any, args: Any) -> None:
        cache.calls += 1
        if not cache.reusing:
            cache.deep_evaluations += 1

    kept: dict[int, Any] = {}
    wrapped = []
    for block in deep_blocks(unet):
        def cached_forward(*args: Any, _block: Any = block, _forward: Any = block.forward, **kwargs: Any) -> Any:
            if cache.reusing and id(_block) in kept:
                return kept[id(_block)]
            kept[id(_block)] = output = _forward(*args, **kwargs)
            return output

        block.forward = cached_forward
        wrapped.append(block)
    handle = unet.register_forward_pre_hook(count_call)
    try:
        yield cache
    finally:
        handle.remove()
        for block in wrapped:
            del block.forward  # back to the class's forward
