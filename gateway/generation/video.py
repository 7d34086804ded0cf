"""Frames to a browser-playable MP4: H.264, yuv420p, moov atom first (faststart)."""

from __future__ import annotations

import os
from pathlib import Path

import av
import numpy as np


def encode_mp4(frames: np.ndarray, fps: int, path: Path, crf: int = 18) -> None:
    """Write ``frames`` (uint8 ``[F, H, W, 3]`` RGB, even H and W) to ``path`` atomically."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames [F, H, W, 3], got {frames.dtype} {frames.shape}")
    count, height, width, _ = frames.shape
    if height % 2 or width % 2:
        raise ValueError(f"yuv420p needs an even width and height, got {width}x{height}")
    partial = path.with_name(path.name + ".partial")
    with av.open(str(partial), mode="w", format="mp4", options={"movflags": "+faststart"}) as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast"}
        for index in range(count):
            frame = av.VideoFrame.from_ndarray(frames[index], format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    os.replace(partial, path)
