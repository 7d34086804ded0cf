"""Small images made in memory for tests."""

from __future__ import annotations

import io

import PIL.Image


def image_bytes(color: str = "red", size: tuple[int, int] = (96, 64), fmt: str = "PNG", mode: str = "RGB") -> bytes:
    buffer = io.BytesIO()
    image = PIL.Image.new(mode, size, color if mode in ("RGB", "RGBA") else 128)
    image.save(buffer, fmt)
    return buffer.getvalue()


def gradient_png(size: tuple[int, int] = (96, 64)) -> bytes:
    """An image with structure, so that different crops give different pixels."""
    width, height = size
    image = PIL.Image.new("RGB", size)
    image.putdata([(x * 255 // width, y * 255 // height, 128) for y in range(height) for x in range(width)])
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()
