"""Decoders other than the one that wrote the file: Debian's ffprobe for MP4 and WebM, Pillow for
GIF, PNG and JPEG. A file the gateway's PyAV wrote and read back with the same PyAV would prove
little about what players see."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import zipfile
from fractions import Fraction
from pathlib import Path

import numpy as np
import PIL.Image

FFPROBE = "ffprobe"


def ffprobe(path: Path) -> dict:
    """What ffprobe sees in the first video stream: container, codec, size, pixel format, fps and
    the frames it decoded (``-count_frames``, not the header's claim)."""
    if shutil.which(FFPROBE) is None:
        raise RuntimeError("ffprobe is missing: run scripts/setup.sh --dev (it installs Debian's ffmpeg)")
    completed = subprocess.run(
        [FFPROBE, "-v", "error", "-count_frames", "-select_streams", "v:0", "-of", "json",
         "-show_entries", "stream=codec_name,width,height,pix_fmt,avg_frame_rate,nb_read_frames",
         "-show_entries", "format=format_name", str(path)],
        capture_output=True, text=True, timeout=60, check=True)
    probed = json.loads(completed.stdout)
    stream = probed["streams"][0]
    return {"container": probed["format"]["format_name"], "codec": stream["codec_name"],
            "width": stream["width"], "height": stream["height"], "pix_fmt": stream["pix_fmt"],
            "fps": float(Fraction(stream["avg_frame_rate"])), "frames": int(stream["nb_read_frames"])}


def gif_info(data: bytes) -> dict:
    """Frames, size, loop count and the total of the frame delays (ms), as Pillow reads them."""
    with PIL.Image.open(io.BytesIO(data)) as image:
        durations = []
        for index in range(image.n_frames):
            image.seek(index)
            durations.append(image.info["duration"])
        return {"format": image.format, "frames": image.n_frames, "size": image.size,
                "loop": image.info.get("loop"), "duration_ms": sum(durations)}


def zip_frames(data: bytes) -> tuple[list[str], list[np.ndarray]]:
    """The member names of a frames zip and each member decoded by Pillow (checked to be PNG)."""
    names, frames = [], []
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for name in archive.namelist():
            with PIL.Image.open(io.BytesIO(archive.read(name))) as image:
                assert image.format == "PNG", (name, image.format)
                names.append(name)
                frames.append(np.asarray(image.convert("RGB")))
    return names, frames


def jpeg_pixels(data: bytes) -> np.ndarray:
    """A JPEG's pixels; fails for anything Pillow does not read as JPEG."""
    with PIL.Image.open(io.BytesIO(data)) as image:
        assert image.format == "JPEG", image.format
        return np.asarray(image.convert("RGB"))


def mean_abs_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())
