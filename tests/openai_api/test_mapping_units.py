"""Unit tests of the /v1 adapter's pure parts: the mapping rules, the error shape, the spritesheet."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from pydantic import SecretStr

from gateway.config import Settings
from gateway.generation.spritesheet import spritesheet_jpeg
from gateway.generation.video import encode_video
from gateway.openai.errors import InvalidParamError, _reshape, openai_error, param_of
from gateway.openai.protocol import VideoCreateRequest
from gateway.openai.serving import VideoServing
from gateway.schemas import OutputFormat, VideoParams

LIMIT = 1280 * 704


class _Generation:
    async def max_pixels(self) -> int:
        return LIMIT


class _Services:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.generation = _Generation()


@pytest.fixture
def serving() -> VideoServing:
    settings = Settings(api_token=SecretStr("unit-test-token-0123"))
    return VideoServing(_Services(settings))  # type: ignore[arg-type]  # only these two are used here


@pytest.mark.parametrize(("size", "expected"),
                         [("1280x704", (1280, 704)), ("64x64", (64, 64)), (" 72 X 64 ", (72, 64))])
def test_sizes_the_model_takes(serving: VideoServing, size: str, expected: tuple[int, int]) -> None:
    assert serving._size(size, LIMIT) == expected


@pytest.mark.parametrize("size", ["100x64", "56x64", "1280x720x1", "big", "1288x704", "-64x64"])
def test_sizes_refused_name_size(serving: VideoServing, size: str) -> None:
    with pytest.raises(InvalidParamError) as caught:
        serving._size(size, LIMIT)
    assert caught.value.param == "size"


@pytest.mark.parametrize(("seconds", "fps", "frames"), [("1", 8, 8), (2, 8, 16), ("4", 8, 32), ("1.5", 8, 12),
                                                        ("0.5", 16, 8), (2.0, 16, 32)])
def test_seconds_times_fps_gives_frames(seconds: str | float, fps: int, frames: int) -> None:
    assert VideoServing._frames(seconds, fps) == frames


@pytest.mark.parametrize("seconds", ["0.5", "5", "1.1", "nan", "inf", "four", -1, 1.7976931348623155e308, "1e308"])
def test_seconds_outside_the_frame_limits_name_seconds(seconds: str | float) -> None:
    with pytest.raises(InvalidParamError) as caught:
        VideoServing._frames(seconds, 8)
    assert caught.value.param == "seconds" and "1 to 4" in caught.value.message


def test_num_frames_wins_over_seconds_and_fields_map_to_the_native_ones(serving: VideoServing) -> None:
    request = VideoCreateRequest(prompt="p", input_reference="data:image/png;base64,AAAA", size="1280x704",
                                 seconds="4", num_frames=16, num_inference_steps=3, fps=8)
    body = asyncio.run(serving.job_request(request, None))
    assert (body.width, body.height, body.num_frames, body.steps, body.size) == (1280, 704, 16, 3, (1280, 704))
    defaults = asyncio.run(serving.job_request(VideoCreateRequest(prompt="p", input_reference="data:,x"), None))
    assert (defaults.size, defaults.num_frames, defaults.fps) == ((512, 512), 16, 8)


def test_a_file_id_or_no_image_is_a_400_naming_input_reference(serving: VideoServing) -> None:
    for reference in ({"file_id": "file-1"}, None, "ftp://example.com/a.png"):
        request = VideoCreateRequest.model_validate({"prompt": "p", "input_reference": reference})
        with pytest.raises(InvalidParamError) as caught:
            asyncio.run(serving.job_request(request, None))
        assert caught.value.param == "input_reference"


def test_native_names_become_v1_params() -> None:
    assert param_of(("body", "steps")) == "num_inference_steps"
    assert param_of(("body", "image_base64")) == "input_reference"
    assert param_of(("query", "limit")) == "limit" and param_of(("body",)) is None


def test_error_shape_and_statuses() -> None:
    response = openai_error(422, "bad", "seed")
    assert response.status_code == 400
    assert json.loads(bytes(response.body)) == {"error": {"message": "bad", "type": "invalid_request_error",
                                                          "param": "seed", "code": "invalid_value"}}
    conflict = openai_error(409, "busy")
    assert conflict.headers["x-should-retry"] == "false"
    native = _reshape(403, b'{"success":false,"message":"your address is not allowed","video_path":null}',
                      {"content-length": "70", "connection": "close"})
    assert native is not None and native.headers["connection"] == "close"
    assert json.loads(bytes(native.body))["error"]["type"] == "permission_error"
    assert _reshape(404, b"not json", {}) is None and _reshape(400, b'{"error": {}}', {}) is None


def test_the_native_api_takes_free_sizes_and_720p() -> None:
    assert VideoParams(prompt="p", resolution="720p").size == (1280, 704)
    assert VideoParams(prompt="p", width=72, height=64).size == (72, 64)
    for sides in ({"width": 72}, {"width": 70, "height": 64}, {"width": 32, "height": 64}):
        with pytest.raises(ValueError):
            VideoParams(prompt="p", **sides)
    assert "width" not in VideoParams(prompt="p").model_dump()  # stored jobs stay readable by older replicas


@pytest.mark.parametrize("output_format", list(OutputFormat))
def test_spritesheet_of_every_output_format(output_format: OutputFormat, tmp_path: Path) -> None:
    frames = np.zeros((10, 64, 96, 3), dtype=np.uint8)
    for index in range(10):
        frames[index, :, :, 0] = index * 25  # each frame its own red
    path = tmp_path / f"video.{output_format.value}"
    encode_video(frames, 8, output_format, path)
    sheet = PIL.Image.open(io.BytesIO(spritesheet_jpeg(path, output_format)))
    assert (sheet.format, sheet.size) == ("JPEG", (8 * 96, 2 * 64))  # 8 a row, 2 rows
    reds = [sheet.getpixel((column * 96 + 48, 32))[0] for column in range(8)]
    assert reds == sorted(reds) and reds[-1] - reds[0] > 120, reds
