"""Frames to a file in the chosen output format, and the poster (the first frame as JPEG).

All in-process: PyAV for the videos (H.264 MP4 with the index first, VP9 WebM), Pillow for GIF,
PNG and JPEG, zipfile for the frames. Each file is written beside its target and renamed into
place, so ``/outputs/`` never serves half a file.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import av
import numpy as np
import PIL.Image

from gateway.schemas import OutputFormat

POSTER_QUALITY = 90
# GIF delays are whole centiseconds, and browsers play delays under 2 cs as 10 cs: faster videos
# play at 50 fps as GIF.
GIF_MAX_FPS = 50


def _encode_av(frames: np.ndarray, fps: int, path: Path, container_format: str,
               codec: Literal["libx264", "libvpx-vp9"], codec_options: dict[str, str],
               container_options: dict[str, str] | None = None) -> None:
    height, width = frames.shape[1:3]
    with av.open(str(path), mode="w", format=container_format, options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=fps, options=codec_options)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"  # what every browser decodes
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def write_mp4(frames: np.ndarray, fps: int, path: Path) -> None:
    # faststart: the index (moov) before the media, so a player starts before the download ends.
    _encode_av(frames, fps, path, "mp4", "libx264", {"crf": "18", "preset": "veryfast"},
               {"movflags": "+faststart"})


def write_webm(frames: np.ndarray, fps: int, path: Path) -> None:
    # Constant quality (crf with b=0). Measured on 16 noisy frames of 512x512: 0.4 s with the
    # realtime deadline, 3 s with "good" at cpu-used 4.
    _encode_av(frames, fps, path, "webm", "libvpx-vp9",
               {"crf": "30", "b": "0", "deadline": "realtime", "cpu-used": "5", "row-mt": "1"})


def gif_durations_ms(count: int, fps: int) -> list[int]:
    """Per-frame delays that add up to the video's length: frame i starts at round(i / fps) in
    centiseconds, so 8 fps alternates 120 and 130 ms instead of drifting at 120."""
    tick = 100 / min(fps, GIF_MAX_FPS)
    starts = [round(index * tick) for index in range(count + 1)]
    return [(end - start) * 10 for start, end in zip(starts, starts[1:], strict=False)]


def write_gif(frames: np.ndarray, fps: int, path: Path) -> None:
    # Each frame gets its own 256-colour palette. Fast octree: 8 frames of 1024x576 in 0.2 s where
    # Pillow's default median cut takes 4 s, for a mean error of 9 instead of 5 levels in 255.
    # Identical neighbours merge into one longer frame (Pillow), which plays the same.
    images = [PIL.Image.fromarray(frame).quantize(256, method=PIL.Image.Quantize.FASTOCTREE) for frame in frames]
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:],
                   duration=gif_durations_ms(len(images), fps), loop=0)


def frame_name(index: int) -> str:
    return f"frame_{index:04d}.png"


def write_frames_zip(frames: np.ndarray, fps: int, path: Path) -> None:
    # PNG is compressed already: the zip only stores. Level 1 PNGs take 60% of the default's
    # time for files 12% larger (noisy 1024x576 frames).
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        for index, frame in enumerate(frames):
            buffer = io.BytesIO()
            PIL.Image.fromarray(frame).save(buffer, format="PNG", compress_level=1)
            archive.writestr(frame_name(index), buffer.getvalue())


@dataclass(frozen=True)
class Encoder:
    suffix: str
    media_type: str  # what /outputs/ answers as Content-Type for the suffix
    write: Callable[[np.ndarray, int, Path], None]


ENCODERS: dict[OutputFormat, Encoder] = {
    OutputFormat.mp4: Encoder(".mp4", "video/mp4", write_mp4),
    OutputFormat.webm: Encoder(".webm", "video/webm", write_webm),
    OutputFormat.gif: Encoder(".gif", "image/gif", write_gif),
    OutputFormat.frames: Encoder(".zip", "application/zip", write_frames_zip),
}


def check_frames(frames: np.ndarray) -> None:
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or not len(frames):
        raise ValueError(f"expected uint8 frames [F, H, W, 3], got {frames.dtype} {frames.shape}")
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"yuv420p needs an even width and height, got {width}x{height}")


def _write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    # A hidden name while partial, like the cache's links. PyAV and Pillow are given the format,
    # so the .partial suffix misleads neither.
    partial = path.with_name(f".{path.name}.partial")
    try:
        write(partial)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)


def encode_video(frames: np.ndarray, fps: int, output_format: OutputFormat, path: Path) -> None:
    """Write ``frames`` (uint8 ``[F, H, W, 3]`` RGB, even H and W) to ``path`` in ``output_format``."""
    check_frames(frames)
    encoder = ENCODERS[output_format]
    _write_atomically(path, lambda partial: encoder.write(frames, fps, partial))


def encode_mp4(frames: np.ndarray, fps: int, path: Path) -> None:
    """The default format; scripts/bench.py times it."""
    encode_video(frames, fps, OutputFormat.mp4, path)


def write_poster(frames: np.ndarray, path: Path) -> None:
    """The first frame as a JPEG: what a player shows before it plays, and a thumbnail."""
    check_frames(frames)
    _write_atomically(path, lambda partial: PIL.Image.fromarray(frames[0]).save(
        partial, format="JPEG", quality=POSTER_QUALITY))
