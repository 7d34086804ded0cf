"""Inputs the benchmark and smoke scripts send: a reproducible noise image."""

from __future__ import annotations

import io

import numpy as np
import PIL.Image


def noise_png(width: int, height: int, seed: int = 0) -> bytes:
    """A ``width`` x ``height`` RGB PNG of seeded noise (the same bytes on every run)."""
    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    PIL.Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()
