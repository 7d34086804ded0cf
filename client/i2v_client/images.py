"""Images as the ``image_base64`` the API expects: from a path, bytes or a PIL image."""

from __future__ import annotations

import base64
import io
import os
from pathlib import Path
from typing import Any, Union

# A PIL.Image.Image too; PIL stays optional, so it is not named in the type.
ImageInput = Union[str, "os.PathLike[str]", bytes, Any]


def image_bytes(image: ImageInput) -> bytes:
    """The encoded file of ``image``: a path's contents, bytes as they are, a PIL image as PNG."""
    if isinstance(image, (bytes, bytearray, memoryview)):
        return bytes(image)
    if isinstance(image, (str, os.PathLike)):
        return Path(image).read_bytes()
    if hasattr(image, "save") and hasattr(image, "mode"):  # a PIL image, without importing PIL
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()
    raise TypeError(f"an image is a path, bytes or a PIL image, not {type(image).__name__}")


def encode_image(image: ImageInput) -> str:
    """A file path, raw bytes or a PIL image as the base64 text ``image_base64`` expects."""
    return base64.b64encode(image_bytes(image)).decode("ascii")


def with_image(fields: dict[str, Any], image: ImageInput | None = None) -> dict[str, Any]:
    """Request fields with ``image`` (argument or an ``image`` key) turned into ``image_base64``."""
    fields = dict(fields)
    image = fields.pop("image", image)
    if image is not None:
        fields["image_base64"] = encode_image(image)
    return fields
