"""Image preparation alone: base64 forms, modes, EXIF, limits, fitting."""

from __future__ import annotations

import base64
import io

import PIL.Image
import pytest

from gateway.errors import InvalidImageError, PayloadTooLargeError
from gateway.generation.images import ImageLimits, decode_base64, fit_image, load_image, prepare_image
from gateway.schemas import FitMode
from i2v_tools.sample_inputs import png_declaring
from tests.support.media import image_bytes

LIMITS = ImageLimits(max_bytes=1_000_000, max_pixels=4_000_000)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def encoded(image: PIL.Image.Image, fmt: str = "PNG", **save) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


class TestBase64:
    def test_data_url_prefix_and_line_breaks_are_accepted(self) -> None:
        raw = image_bytes()
        text = b64(raw)
        wrapped = "data:image/png;base64," + "\n".join(text[i:i + 76] for i in range(0, len(text), 76))
        assert decode_base64(wrapped, LIMITS.max_bytes) == raw

    @pytest.mark.parametrize("text", ["not base64!", "abc", "====", ""])
    def test_invalid_base64_is_a_400(self, text: str) -> None:
        with pytest.raises(InvalidImageError):
            decode_base64(text, LIMITS.max_bytes)

    def test_too_many_bytes_is_refused_before_decoding(self) -> None:
        with pytest.raises(PayloadTooLargeError, match="larger than 1000 bytes"):
            decode_base64("A" * 2000, 1000)


class TestDecoding:
    def test_not_an_image(self) -> None:
        with pytest.raises(InvalidImageError, match="does not hold an image"):
            load_image(b"hello world", LIMITS.max_pixels)

    def test_truncated_image(self) -> None:
        data = encoded(PIL.Image.effect_noise((200, 200), 50).convert("RGB"), "JPEG")
        with pytest.raises(InvalidImageError, match="truncated or corrupt"):
            load_image(data[: len(data) // 2], LIMITS.max_pixels)

    def test_declared_size_over_the_pixel_limit_is_refused_before_decoding(self) -> None:
        with pytest.raises(PayloadTooLargeError, match="30000x30000 = 900000000 pixels"):
            load_image(png_declaring(30000, 30000), LIMITS.max_pixels)

    @pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "LA", "I;16", "1"])
    def test_every_mode_becomes_rgb(self, mode: str) -> None:
        image = PIL.Image.new(mode, (40, 30))
        fmt = "JPEG" if mode == "CMYK" else "PNG"
        assert load_image(encoded(image, fmt), LIMITS.max_pixels).mode == "RGB"

    def test_transparent_pixels_become_white(self) -> None:
        image = PIL.Image.new("RGBA", (10, 10), (255, 0, 0, 0))
        assert load_image(encoded(image), LIMITS.max_pixels).getpixel((5, 5)) == (255, 255, 255)

    def test_exif_orientation_is_applied(self) -> None:
        image = PIL.Image.new("RGB", (80, 40), "blue")
        exif = PIL.Image.Exif()
        exif[0x0112] = 6  # rotate 90 degrees clockwise to display
        loaded = load_image(encoded(image, "JPEG", exif=exif), LIMITS.max_pixels)
        assert loaded.size == (40, 80)


class TestFitting:
    def test_crop_fills_the_frame(self) -> None:
        image = PIL.Image.new("RGB", (400, 100), "red")
        fitted = fit_image(image, 256, 256, FitMode.crop)
        assert fitted.size == (256, 256) and fitted.getpixel((0, 0)) == (255, 0, 0)

    def test_pad_keeps_everything_and_adds_black_bars(self) -> None:
        image = PIL.Image.new("RGB", (400, 100), "red")
        fitted = fit_image(image, 256, 256, FitMode.pad)
        assert fitted.size == (256, 256)
        assert fitted.getpixel((128, 0)) == (0, 0, 0)
        assert fitted.getpixel((128, 128)) == (255, 0, 0)

    def test_prepare_returns_a_png_of_the_target_size(self) -> None:
        png = prepare_image(b64(image_bytes(size=(300, 200), fmt="JPEG")), 1024, 576, FitMode.crop, LIMITS)
        with PIL.Image.open(io.BytesIO(png)) as result:
            assert result.format == "PNG" and result.size == (1024, 576)
