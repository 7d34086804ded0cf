"""Output formats and posters against the real gateway and tritonserver: every file read back by a
decoder other than the gateway's PyAV (ffprobe, Pillow), the cache keyed on the format, a job in
WebM, and a WebM that plays in headless Chromium."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient

from gateway.generation.video import ENCODERS
from gateway.schemas import OutputFormat
from i2v_tools.servers import GatewayServer, TritonServer
from i2v_tools.triton_stats import settled_counts
from tests.gateway.test_api import AUTH, body
from tests.jobs.test_jobs import finished
from tests.support.browser import loopback_page
from tests.support.decoders import ffprobe, gif_info, jpeg_pixels, mean_abs_difference, zip_frames

pytestmark = pytest.mark.integration
SIZE, FRAMES, FPS = 256, 8, 8  # body(): 256p, 8 frames at 8 fps, 2 steps


@pytest.fixture(scope="module")
def formats_gateway(start_gateway) -> GatewayServer:
    # The result cache is on, as by default (the shared `gateway` turns it off).
    return start_gateway({"I2V_RATE_LIMIT_PER_MINUTE": "0", "I2V_MAX_CONCURRENT_PER_KEY": "0"})


def generate(gateway: GatewayServer, **overrides) -> dict:
    response = httpx.post(f"{gateway.url}/api/v1/generate", json=body(**overrides), headers=AUTH, timeout=300)
    assert response.status_code == 200, response.text
    return response.json()


def download(url: str, media_type: str) -> bytes:
    response = httpx.get(url, timeout=30)
    assert response.status_code == 200 and response.headers["content-type"] == media_type, response.headers
    return response.content


@pytest.fixture(scope="module")
def made(formats_gateway: GatewayServer) -> dict[OutputFormat, dict]:
    """One answer per format for the same seeded inputs."""
    return {fmt: generate(formats_gateway, seed=31, prompt="formats", output_format=fmt.value) for fmt in OutputFormat}


@pytest.mark.parametrize("fmt", list(OutputFormat), ids=[f.value for f in OutputFormat])
def test_each_format_decodes_back(made: dict[OutputFormat, dict], fmt: OutputFormat, tmp_path: Path) -> None:
    answer = made[fmt]
    encoder = ENCODERS[fmt]
    assert answer["output_format"] == fmt.value and answer["cached"] is False
    name = re.fullmatch(rf"outputs/([A-Za-z0-9_-]{{22}}){re.escape(encoder.suffix)}", answer["video_path"])
    assert name is not None, answer["video_path"]
    assert answer["poster_path"] == f"outputs/{name.group(1)}.jpg"
    data = download(answer["video_url"], encoder.media_type)
    if fmt in (OutputFormat.mp4, OutputFormat.webm):
        path = tmp_path / f"video{encoder.suffix}"
        path.write_bytes(data)
        codec = {OutputFormat.mp4: "h264", OutputFormat.webm: "vp9"}[fmt]
        probed = ffprobe(path)
        assert fmt.value in probed.pop("container").split(",")
        assert probed == {"codec": codec, "width": SIZE, "height": SIZE, "pix_fmt": "yuv420p", "fps": float(FPS),
                          "frames": FRAMES}
    elif fmt is OutputFormat.gif:
        assert gif_info(data) == {"format": "GIF", "frames": FRAMES, "size": (SIZE, SIZE), "loop": 0,
                                  "duration_ms": FRAMES * 1000 // FPS}
    else:
        names, frames = zip_frames(data)
        assert names == [f"frame_{i:04d}.png" for i in range(FRAMES)]
        assert {frame.shape for frame in frames} == {(SIZE, SIZE, 3)}


def test_every_poster_is_a_jpeg_of_the_first_frame(made: dict[OutputFormat, dict]) -> None:
    _, frames = zip_frames(download(made[OutputFormat.frames]["video_url"], "application/zip"))
    posters = {fmt: download(answer["poster_url"], "image/jpeg") for fmt, answer in made.items()}
    for fmt, poster in posters.items():
        pixels = jpeg_pixels(poster)
        assert pixels.shape == (SIZE, SIZE, 3), fmt
        # The tiny model's frames are near noise, the worst case for JPEG: measured, the poster is
        # 11.7 levels from the first frame's lossless PNG and 35-37 from every other frame.
        differences = [mean_abs_difference(pixels, frame) for frame in frames]
        assert differences[0] < 16 and differences[0] < min(differences[1:]) / 2, (fmt, differences)
    # The same seed gives the same frames whatever the format, so the same poster.
    assert len(set(posters.values())) == 1


def test_the_cache_answers_the_same_format_and_renders_another(formats_gateway: GatewayServer,
                                                               triton: TritonServer) -> None:
    client = httpclient.InferenceServerClient(triton.http_url)
    seeded = dict(seed=32, prompt="cache by format")
    first = generate(formats_gateway, output_format="webm", **seeded)
    requests = settled_counts(client, 0)[0]

    repeat = generate(formats_gateway, output_format="webm", **seeded)
    assert repeat["cached"] is True and repeat["output_format"] == "webm"
    assert repeat["video_path"] != first["video_path"] and repeat["poster_path"] != first["poster_path"]
    assert download(repeat["video_url"], "video/webm") == download(first["video_url"], "video/webm")
    assert download(repeat["poster_url"], "image/jpeg") == download(first["poster_url"], "image/jpeg")

    other = generate(formats_gateway, output_format="gif", **seeded)
    assert other["cached"] is False and other["video_path"].endswith(".gif")
    # Exactly one more request reached Triton: the gif's, not the cached repeat's.
    assert settled_counts(client, requests + 1)[0] == requests + 1


def test_a_job_delivers_webm(formats_gateway: GatewayServer, tmp_path: Path) -> None:
    response = httpx.post(f"{formats_gateway.url}/api/v1/jobs", json=body(seed=33, output_format="webm"),
                          headers={**AUTH, "Prefer": "wait=120"}, timeout=180)
    assert response.status_code in (200, 202), response.text
    job = response.json()
    if response.status_code == 202:  # a machine slower than Prefer: wait
        job = finished(formats_gateway, job["job_id"])
    assert job["status"] == "succeeded", job
    result = job["result"]
    assert result["output_format"] == "webm" and result["video_path"].endswith(".webm")
    path = tmp_path / "job.webm"
    path.write_bytes(download(result["video_url"], "video/webm"))
    assert ffprobe(path)["codec"] == "vp9" and ffprobe(path)["frames"] == FRAMES
    assert jpeg_pixels(download(result["poster_url"], "image/jpeg")).shape == (SIZE, SIZE, 3)


def test_webm_plays_in_headless_chromium(made: dict[OutputFormat, dict]) -> None:
    answer = made[OutputFormat.webm]
    with loopback_page() as browser:
        page = browser.page
        page.set_content("<video muted playsinline></video>")
        page.eval_on_selector("video", "(video, src) => { video.src = src; video.play(); }", answer["video_url"])
        page.wait_for_function("""() => {
            const video = document.querySelector('video');
            if (video.error) throw new Error('media error ' + video.error.code + ': ' + video.error.message);
            return video.readyState >= 2 && video.duration > 0 && video.currentTime > 0;
        }""")
        state = page.eval_on_selector("video", "v => [v.videoWidth, v.videoHeight, v.duration]")
        assert browser.blocked == [], browser.blocked
    assert state[:2] == [SIZE, SIZE]
    assert np.isclose(state[2], FRAMES / FPS, atol=0.2), state
