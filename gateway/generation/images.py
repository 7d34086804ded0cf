"""Turn the caller's ``image_base64`` into exactly-sized PNG bytes for the model."""

from __future__ import annotations

import base64
import binascii
import io
import re
from dataclasses import dataclass

import PIL.Image
import PIL.ImageOps

from gateway.errors import InvalidImageError, PayloadTooLargeError
from gateway.schemas import FitMode

_DATA_URL = re.compile(r"^\s*data:[\w/+.-]*(;[\w=.-]+)*;base64,", re.IGNORECASE)
_WHITESPACE = re.compile(r"\s+")
# The formats README.md and SECURITY.md document; Pillow tries no other decoder.
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")
ACCEPTED_NAMES = "PNG, JPEG, WebP, BMP, GIF or TIFF"
# Our own pixel limit is checked before decoding; PIL's is only a second line of defence.
PIL.Image.MAX_IMAGE_PIXELS = None


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int
    max_pixels: int


def decode_base64(data: str, max_bytes: int) -> bytes:
    """Strip a ``data:`` prefix and line breaks, check the size, and decode strictly."""
    payload = _WHITESPACE.sub("", _DATA_URL.sub("", data, count=1))
    if len(payload) // 4 * 3 > max_bytes + 3:
        raise PayloadTooLargeError(f"image is larger than {max_bytes} bytes after base64 decoding")
    try:
        raw = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidImageError("image_base64 is not valid base64") from None
    if not raw:
        raise InvalidImageError("image_base64 is empty")
    return raw


def load_image(raw: bytes, max_pixels: int) -> PIL.Image.Image:
    """Decode to RGB, upright per EXIF; refuse bombs before decoding pixels. Only the documented
    formats are tried (a smaller parser surface than every format Pillow knows), and any failure
    of a decoder is the caller's bad image (a 400), never a 500."""
    try:
        image: PIL.Image.Image = PIL.Image.open(io.BytesIO(raw), formats=ACCEPTED_FORMATS)
    except PIL.UnidentifiedImageError:
        raise InvalidImageError(f"image_base64 does not hold an image in an accepted format ({ACCEPTED_NAMES})") \
            from None
    except Exception as exc:  # noqa: BLE001 - decoders raise anything (IndexError, struct.error, ...)
        raise InvalidImageError(f"the image could not be read: {_reason(exc)}") from None
    width, height = image.size
    if width * height > max_pixels:
        raise PayloadTooLargeError(
            f"image is {width}x{height} = {width * height} pixels; the limit is {max_pixels} pixels")
    try:
        image.load()
        image = PIL.ImageOps.exif_transpose(image) or image
        return _to_rgb(image)
    except Exception as exc:  # noqa: BLE001 - as above
        raise InvalidImageError(f"the image is truncated or corrupt ({_reason(exc)})") from None


def _reason(exc: Exception) -> str:
    return (str(exc) or type(exc).__name__)[:200]


def _to_rgb(image: PIL.Image.Image) -> PIL.Image.Image:
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # High bit-depth grayscale: scale to 8 bits instead of clipping.
        image = PIL.ImageOps.autocontrast(image.convert("F").convert("L")) if image.mode == "F" else \
            image.point(lambda v: v / 256).convert("L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        # Transparent areas become white, as viewers show them.
        background = PIL.Image.new("RGBA", image.size, (255, 255, 255, 255))
        return PIL.Image.alpha_composite(background, image.convert("RGBA")).convert("RGB")
    return image.convert("RGB")


def fit_image(image: PIL.Image.Image, width: int, height: int, mode: FitMode) -> PIL.Image.Image:
    """Fit to ``width`` x ``height`` keeping the aspect ratio: crop the centre, or pad with black."""
    if image.size == (width, height):
        return image
    if mode is FitMode.crop:
        return PIL.ImageOps.fit(image, (width, height), method=PIL.Image.Resampling.LANCZOS)
    return PIL.ImageOps.pad(image, (width, height), method=PIL.Image.Resampling.LANCZOS, color=(0, 0, 0))


def prepare_image(image_base64: str, width: int, height: int, mode: FitMode, limits: ImageLimits) -> bytes:
    """The caller's image as a ``width`` x ``height`` RGB PNG."""
    image = fit_image(load_image(decode_base64(image_base64, limits.max_bytes), limits.max_pixels),
                      width, height, mode)
    buffer = io.BytesIO()
    image.save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()
