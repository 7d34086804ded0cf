"""A spritesheet: the frames of a made video as one JPEG grid (the /v1 content variant of that name).

Made on request from the file the job already has, in any output format, so no job stores a third
file and retention has nothing new to clean up.
"""

from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Iterator
from pathlib import Path

import av
import PIL.Image

from gateway.schemas import OutputFormat

TILE_MAX_SIDE = 256  # each frame is scaled to fit this, so a grid of 32 large frames stays small
MAX_COLUMNS = 8
SPRITESHEET_QUALITY = 85


def _frames(path: Path, output_format: OutputFormat) -> Iterator[PIL.Image.Image]:
    if output_format in (OutputFormat.mp4, OutputFormat.webm):
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                yield frame.to_image()
    elif output_format is OutputFormat.gif:
        with PIL.Image.open(path) as image:
            for index in range(getattr(image, "n_frames", 1)):
                image.seek(index)
                yield image.convert("RGB")
    else:
        with zipfile.ZipFile(path) as archive:
            for name in sorted(archive.namelist()):
                with PIL.Image.open(io.BytesIO(archive.read(name))) as image:
                    yield image.convert("RGB")


def spritesheet_jpeg(path: Path, output_format: OutputFormat) -> bytes:
    """Every frame of the video at ``path``, left to right and top to bottom, as one JPEG."""
    tiles = []
    for frame in _frames(path, output_format):
        frame.thumbnail((TILE_MAX_SIDE, TILE_MAX_SIDE))
        tiles.append(frame)
    if not tiles:
        raise ValueError(f"{path.name} holds no frames")
    columns = min(MAX_COLUMNS, len(tiles))
    rows = math.ceil(len(tiles) / columns)
    width, height = tiles[0].size
    sheet = PIL.Image.new("RGB", (columns * width, rows * height))
    for index, tile in enumerate(tiles):
        sheet.paste(tile, ((index % columns) * width, (index // columns) * height))
    buffer = io.BytesIO()
    sheet.save(buffer, "JPEG", quality=SPRITESHEET_QUALITY)
    return buffer.getvalue()
