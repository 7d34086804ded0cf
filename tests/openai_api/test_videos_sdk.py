"""The OpenAI-compatible Videos API (/v1, issue 21) driven by the official ``openai`` package, sync and
async, against the real gateway and tritonserver on the tiny model."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import threading
import warnings
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import openai
import PIL.Image
import pytest
from openai import AsyncOpenAI, OpenAI

from i2v_client.signing import signature_headers
from i2v_tools.servers import GatewayServer
from tests.openai_api.conftest import ALICE, BOB, LIMITED, METRICS_TOKEN, PLAIN
from tests.support.decoders import ffprobe
from tests.support.media import gradient_png
from tests.support.sse import read_events

pytestmark = [pytest.mark.integration,
              # The SDK marks its videos resource deprecated (OpenAI's hosted Sora closed); it still works.
              pytest.mark.filterwarnings("ignore::DeprecationWarning")]
warnings.filterwarnings("ignore", category=DeprecationWarning, module="openai")

# Tiny and fast: 64x64 is the smallest size, 8 frames the fewest, 2 steps.
FAST = {"num_inference_steps": 2}
IMAGE = gradient_png((96, 64))
DATA_URL = "data:image/png;base64," + base64.b64encode(IMAGE).decode()


def client(gateway: GatewayServer, key: str = ALICE, **options) -> OpenAI:
    return OpenAI(base_url=f"{gateway.url}/v1", api_key=key, **options)


@pytest.fixture(scope="module")
def image_server() -> Iterator[str]:
    """A real HTTP server with the image at /image.png (and a 404 elsewhere)."""
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            found = self.path == "/image.png"
            self.send_response(200 if found else 404)
            self.send_header("content-type", "image/png")
            self.end_headers()
            if found:
                self.wfile.write(IMAGE)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_models_list_and_retrieve_by_alias(v1_gateway: GatewayServer) -> None:
    sdk = client(v1_gateway)
    models = sdk.models.list()
    assert [m.id for m in models.data] == ["i2vgen_xl"]
    assert sdk.models.retrieve("ali-vilab/i2vgen-xl").id == "i2vgen_xl"
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.models.retrieve("sora-2")
    assert caught.value.code == "model_not_found"


def test_create_with_a_file_polls_to_completed_and_downloads(v1_gateway: GatewayServer, tmp_path: Path) -> None:
    seen: list[int] = []

    def note_progress(response: httpx.Response) -> None:
        if response.request.method == "GET" and "/videos/" in response.request.url.path \
                and "/content" not in response.request.url.path:
            response.read()
            seen.append(response.json()["progress"])

    sdk = client(v1_gateway, http_client=openai.DefaultHttpxClient(event_hooks={"response": [note_progress]}))
    before = metric_values(v1_gateway)
    video = sdk.videos.create_and_poll(
        prompt="a gradient drifts", input_reference=("photo.png", IMAGE, "image/png"), size="64x64", seconds="1",
        poll_interval_ms=100, extra_body={"num_inference_steps": 6, "seed": 7})
    assert video.status == "completed", video
    assert (video.size, video.seconds, video.progress, video.model) == ("64x64", "1", 100, "i2vgen_xl")
    assert video.completed_at is not None and video.expires_at is not None and video.expires_at > video.completed_at
    assert seen[-1] == 100 and seen == sorted(seen), seen
    # Every denoising step was recorded as it happened (the event log the progress is read from);
    # how many of them a poll catches depends on the machine's speed, so the log is what is checked.
    steps = [e.data["step"] for e in read_events(f"{v1_gateway.url}/api/v1/jobs/{video.id}/events",
                                                 {"Authorization": f"Bearer {ALICE}"}, last_event_id="0")
             if e.type == "running" and "step" in e.data]
    assert steps[-6:] == [1, 2, 3, 4, 5, 6], steps

    path = tmp_path / "video.mp4"
    path.write_bytes(sdk.videos.download_content(video.id).read())
    probed = ffprobe(path)
    assert (probed["codec"], probed["width"], probed["height"], probed["frames"]) == ("h264", 64, 64, 8)
    thumbnail = PIL.Image.open(io.BytesIO(sdk.videos.download_content(video.id, variant="thumbnail").read()))
    assert (thumbnail.format, thumbnail.size) == ("JPEG", (64, 64))
    sheet = PIL.Image.open(io.BytesIO(sdk.videos.download_content(video.id, variant="spritesheet").read()))
    assert (sheet.format, sheet.size) == ("JPEG", (8 * 64, 64))  # 8 frames in one row

    # The same video is a native job, and the gateway's metrics count it.
    headers = {"Authorization": f"Bearer {ALICE}"}
    job = httpx.get(f"{v1_gateway.url}/api/v1/jobs/{video.id}", headers=headers).json()
    assert (job["status"], job["result"]["width"], job["result"]["num_frames"]) == ("succeeded", 64, 8)
    after = metric_values(v1_gateway)
    assert after.get('i2v_jobs_ended_total{state="succeeded"}', 0) >= before.get(
        'i2v_jobs_ended_total{state="succeeded"}', 0) + 1
    created = 'i2v_http_requests_total{key="alice",method="POST",route="/v1/videos",status="200"}'
    assert after.get(created, 0) >= before.get(created, 0) + 1, [name for name in after if "/v1" in name]


def metric_values(gateway: GatewayServer) -> dict[str, float]:
    """Each sample of the gateway's /metrics, by name and labels (in the order the text has them)."""
    text = httpx.get(f"{gateway.url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if line and not line.startswith("#")}


def test_json_creates_take_both_input_reference_forms(v1_gateway: GatewayServer, image_server: str) -> None:
    sdk = client(v1_gateway)
    # OpenAI's object form as JSON (the SDK's own create sends multipart, so the raw POST of the SDK).
    made = [sdk.post("/videos", cast_to=openai.types.Video, body={
        "prompt": "object form", "input_reference": {"image_url": DATA_URL}, "size": "64x64", "num_frames": 8,
        **FAST})]
    # SGLang's plain string form, an http URL the gateway fetches.
    made.append(sdk.post("/videos", cast_to=openai.types.Video, body={
        "prompt": "string form", "input_reference": f"{image_server}/image.png", "size": "64x64", "seconds": 1,
        **FAST}))
    # The SDK's create with the object form: its create takes only files, so through extra_body (sent
    # as the multipart field input_reference[image_url]).
    made.append(sdk.videos.create(prompt="sdk object form", size="64x64", seconds="1",
                                  extra_body={"input_reference": {"image_url": DATA_URL}, **FAST}))
    for video in made:
        done = sdk.videos.poll(video.id, poll_interval_ms=100)
        assert (done.status, done.size, done.seconds) == ("completed", "64x64", "1"), done


def test_list_paginates_and_delete_then_retrieve_is_not_found(v1_gateway: GatewayServer) -> None:
    sdk = client(v1_gateway, BOB)
    ids = [sdk.videos.create(prompt=f"clip {n}", input_reference=("p.png", IMAGE, "image/png"), size="64x64",
                             seconds="1", extra_body=FAST).id for n in range(3)]
    listed = [video.id for video in sdk.videos.list(limit=2)]  # two pages, followed by the SDK
    assert listed == ids[::-1]
    assert [video.id for video in sdk.videos.list(limit=1, order="asc")] == ids
    page = sdk.videos.list(limit=2)
    assert page.has_more and len(page.data) == 2
    # Another key sees none of them.
    assert not {video.id for video in client(v1_gateway, ALICE).videos.list(limit=100)} & set(ids)

    deleted = sdk.videos.delete(ids[0])  # queued or running: cancelled, then deleted
    assert (deleted.id, deleted.deleted, deleted.object) == (ids[0], True, "video.deleted")
    with pytest.raises(openai.NotFoundError):
        sdk.videos.retrieve(ids[0])
    done = sdk.videos.poll(ids[2], poll_interval_ms=100)
    assert done.status == "completed"
    sdk.videos.delete(ids[2])
    job = httpx.get(f"{v1_gateway.url}/api/v1/jobs/{ids[2]}", headers={"Authorization": f"Bearer {BOB}"})
    assert job.status_code == 404


def test_remix_reuses_the_image_and_settings(v1_gateway: GatewayServer) -> None:
    sdk = client(v1_gateway)
    source = sdk.videos.create_and_poll(prompt="before", input_reference=("p.png", IMAGE, "image/png"),
                                        size="64x72", seconds="1", poll_interval_ms=100, extra_body=FAST)
    remix = sdk.videos.remix(source.id, prompt="after")
    assert remix.remixed_from_video_id == source.id and remix.id != source.id
    done = sdk.videos.poll(remix.id, poll_interval_ms=100)
    assert (done.status, done.size, done.seconds, done.prompt, done.seed) == ("completed", "64x72", "1", "after",
                                                                               source.seed)


def test_a_cancelled_video_is_failed_with_code_cancelled(v1_gateway: GatewayServer) -> None:
    sdk = client(v1_gateway)
    video = sdk.videos.create(prompt="stopped", input_reference=("p.png", IMAGE, "image/png"), size="64x64",
                              seconds="1", extra_body={"num_inference_steps": 150})
    cancelled = httpx.delete(f"{v1_gateway.url}/api/v1/jobs/{video.id}", headers={"Authorization": f"Bearer {ALICE}"})
    assert cancelled.status_code == 200, cancelled.text
    ended = sdk.videos.poll(video.id, poll_interval_ms=100)
    assert (ended.status, ended.error.code if ended.error else None) == ("failed", "cancelled"), ended
    with pytest.raises(openai.ConflictError):  # no content for a video that did not complete
        client(v1_gateway, max_retries=0).videos.download_content(video.id)


def test_a_retried_create_with_an_idempotency_key_renders_once(v1_gateway: GatewayServer) -> None:
    sdk = client(v1_gateway)
    key = {"Idempotency-Key": "retry-test-1"}
    first = sdk.videos.create(prompt="once", input_reference=("p.png", IMAGE, "image/png"), size="64x64",
                              seconds="1", extra_body=FAST, extra_headers=key)
    again = sdk.videos.create(prompt="once", input_reference=("p.png", IMAGE, "image/png"), size="64x64",
                              seconds="1", extra_body=FAST, extra_headers=key)
    assert again.id == first.id
    assert [v.id for v in sdk.videos.list(limit=100) if v.prompt == "once"] == [first.id]


def test_errors_are_the_sdks_own_classes(v1_gateway: GatewayServer, strict_gateway: GatewayServer) -> None:
    with pytest.raises(openai.AuthenticationError):
        client(v1_gateway, "wrong-key-0123456789").videos.list()
    sdk = client(v1_gateway, max_retries=0)
    cases = [({"size": "100x64"}, "size"), ({"seconds": "9"}, "seconds"),
             ({"input_reference": None}, "input_reference"),
             ({"input_reference": {"file_id": "file-abc"}}, "input_reference"),
             ({"guidance_scale": 99}, "guidance_scale"), ({"num_inference_steps": 0}, "num_inference_steps"),
             ({"size": "4096x4096"}, "size")]
    for change, param in cases:
        fields = {"prompt": "p", "input_reference": {"image_url": DATA_URL}, "size": "64x64", **change}
        with pytest.raises(openai.BadRequestError) as caught:
            sdk.post("/videos", cast_to=openai.types.Video, body={k: v for k, v in fields.items() if v is not None})
        assert caught.value.param == param, (change, caught.value.body)
        assert caught.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as caught:  # the model's max_pixels, read from Triton, holds
        sdk.videos.create(prompt="p", input_reference=("p.png", IMAGE, "image/png"), size="1600x1600")
    assert caught.value.param == "size" and "at most 1638400" in caught.value.message
    with pytest.raises(openai.BadRequestError) as caught:  # multipart, from the SDK's own create
        sdk.videos.create(prompt="p", input_reference=("p.png", b"not an image", "image/png"))
    assert caught.value.param == "input_reference"
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.post("/videos", cast_to=openai.types.Video,
                 body={"prompt": "p", "input_reference": DATA_URL, "model": "sora-2"})
    assert (caught.value.code, caught.value.param) == ("model_not_found", "model")
    with pytest.raises(openai.NotFoundError):
        sdk.videos.retrieve("no-such-video")
    # The allow-list (127.0.0.1 only), with the caller's address from a trusted proxy's header.
    with pytest.raises(openai.PermissionDeniedError) as denied:
        client(strict_gateway, PLAIN).models.list(extra_headers={"X-Forwarded-For": "203.0.113.9"})
    assert denied.value.body["type"] == "permission_error"
    # A private image URL is refused as a webhook's is (this gateway does not allow them).
    with pytest.raises(openai.BadRequestError) as caught:
        client(strict_gateway, PLAIN, max_retries=0).videos.create(
            prompt="p", extra_body={"input_reference": {"image_url": "http://127.0.0.1:9/x.png"}})
    assert caught.value.param == "input_reference" and "private" in caught.value.message
    # One submission a minute: the second is a 429 with Retry-After.
    limited = client(strict_gateway, LIMITED, max_retries=0)
    with pytest.raises(openai.BadRequestError):
        limited.videos.create(prompt="p")  # no image: a 400, which spends the budget all the same
    with pytest.raises(openai.RateLimitError) as caught:
        limited.videos.create(prompt="p")
    assert int(caught.value.response.headers["retry-after"]) > 0
    assert caught.value.body["type"] == "rate_limit_error"
    # The body limit answers before any route, and still in OpenAI's shape under /v1.
    with pytest.raises(openai.APIStatusError) as caught:
        client(strict_gateway, PLAIN, max_retries=0).videos.create(
            prompt="p", input_reference=("big.bin", b"x" * 300_000, "image/png"))
    assert caught.value.status_code == 413 and caught.value.body["code"] == "request_too_large"
    # The native routes keep their own shape.
    native = httpx.get(f"{v1_gateway.url}/api/v1/jobs/nope", headers={"Authorization": f"Bearer {ALICE}"})
    assert native.status_code == 404 and native.json()["success"] is False


def test_signed_requests_from_the_sdk_pass_and_unsigned_are_refused(start_gateway) -> None:
    """With I2V_REQUEST_SIGNING_SECRET, /v1 checks the native signature: the SDK signs through an
    httpx request hook (multipart bodies included), and an unsigned call is a 401."""
    secret = "signing-secret-0123456789abcdef"
    gateway = start_gateway({"I2V_API_KEYS": f"alice={ALICE}", "I2V_REQUEST_SIGNING_SECRET": secret,
                             "I2V_JOB_WORKERS": "0"})

    def sign(request: httpx.Request) -> None:
        body = request.read()
        request.headers.update(signature_headers(secret, request.method, request.url.path,
                                                 request.url.query.decode(), body))

    with pytest.raises(openai.AuthenticationError) as caught:
        client(gateway, max_retries=0).models.list()
    assert "signed" in caught.value.message
    signed = client(gateway, max_retries=0, http_client=openai.DefaultHttpxClient(event_hooks={"request": [sign]}))
    video = signed.videos.create(prompt="signed", input_reference=("p.png", IMAGE, "image/png"), size="64x64",
                                 seconds="1")
    assert (video.status, signed.videos.retrieve(video.id).id) == ("queued", video.id)


def test_async_client_creates_and_polls(v1_gateway: GatewayServer) -> None:
    async def run() -> openai.types.Video:
        async with AsyncOpenAI(base_url=f"{v1_gateway.url}/v1", api_key=ALICE) as sdk:
            assert [m.id async for m in sdk.models.list()] == ["i2vgen_xl"]
            video = await sdk.videos.create_and_poll(
                prompt="async", input_reference=("p.png", IMAGE, "image/png"), size="64x64", seconds="1",
                poll_interval_ms=100, extra_body=FAST)
            data = (await sdk.videos.download_content(video.id, variant="thumbnail")).read()
            assert PIL.Image.open(io.BytesIO(data)).size == (64, 64)
            return video
    assert asyncio.run(run()).status == "completed"


def test_native_api_makes_1280x704_and_free_sizes(v1_gateway: GatewayServer) -> None:
    headers = {"Authorization": f"Bearer {ALICE}"}
    image = base64.b64encode(IMAGE).decode()
    trained = httpx.post(f"{v1_gateway.url}/api/v1/jobs", headers={**headers, "Prefer": "wait=60"}, timeout=90,
                         json={"image_base64": image, "prompt": "native size", "resolution": "720p",
                               "num_frames": 8, "steps": 1})
    free = httpx.post(f"{v1_gateway.url}/api/v1/jobs", headers=headers, json={
        "image_base64": image, "prompt": "free size", "width": 72, "height": 64, "num_frames": 8, "steps": 1})
    half = httpx.post(f"{v1_gateway.url}/api/v1/jobs", headers=headers, json={
        "image_base64": image, "prompt": "half a size", "width": 72, "num_frames": 8, "steps": 1})
    assert half.status_code == 422 and "width and height" in half.json()["message"]
    assert trained.status_code in (200, 202), trained.text
    job = trained.json()
    sdk = client(v1_gateway)
    assert sdk.videos.poll(job["job_id"], poll_interval_ms=200).size == "1280x704"
    result = httpx.get(f"{v1_gateway.url}/api/v1/jobs/{job['job_id']}", headers=headers).json()["result"]
    assert (result["width"], result["height"]) == (1280, 704)
    assert sdk.videos.poll(free.json()["job_id"], poll_interval_ms=100).size == "72x64"


def test_the_web_ui_gallery_shows_a_v1_video(v1_gateway: GatewayServer) -> None:
    from playwright.sync_api import expect

    from tests.support.browser import loopback_page

    sdk = client(v1_gateway, BOB)
    video = sdk.videos.create_and_poll(prompt="seen in the gallery", input_reference=("p.png", IMAGE, "image/png"),
                                       size="64x64", seconds="1", poll_interval_ms=100, extra_body=FAST)
    assert video.status == "completed"
    with loopback_page() as browser:
        page = browser.page
        page.goto(f"{v1_gateway.url}/ui/")
        page.fill("#key", BOB)
        page.click("#sign-in")
        page.locator("#i2v-gallery .thumbnail-item").first.wait_for()
        page.locator("#i2v-gallery .thumbnail-item").first.click()
        expect(page.locator("#i2v-prompt textarea")).to_have_value("seen in the gallery")


def test_the_openapi_document_has_the_v1_routes() -> None:
    document = json.loads((Path(__file__).resolve().parents[2] / "openapi.json").read_text())
    assert {"/v1/videos", "/v1/videos/{video_id}", "/v1/videos/{video_id}/content", "/v1/videos/{video_id}/remix",
            "/v1/models", "/v1/models/{model_id}"} <= set(document["paths"])
    assert set(document["paths"]["/v1/videos"]["post"]["requestBody"]["content"]) == {
        "application/json", "multipart/form-data"}
