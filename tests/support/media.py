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


def probe_mp4(data: bytes) -> dict:
    """What a player sees in an MP4: codec, size, frame count, fps, pixel format, faststart."""
    import av

    with av.open(io.BytesIO(data)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        info = {
            "codec": stream.codec_context.name,
            "width": stream.codec_context.width,
            "height": stream.codec_context.height,
            "pix_fmt": stream.codec_context.pix_fmt,
            "fps": float(stream.average_rate),
            "frames": frames,
        }
    # faststart: the index (moov) comes before the media data (mdat), so playback starts early.
    info["faststart"] = 0 <= data.find(b"moov") < data.find(b"mdat")
    return info
