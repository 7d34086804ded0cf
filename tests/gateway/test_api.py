"""The REST contract over HTTP, against the real gateway and a real tritonserver."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import tritonclient.http as httpclient

from i2v_tools.sample_inputs import png_declaring
from i2v_tools.servers import REPO_ROOT, GatewayServer, TritonServer, free_port, rss_mib
from i2v_tools.triton_stats import model_counts, settled_counts
from tests.conftest import API_TOKEN
from tests.support.media import gradient_png, image_bytes, probe_mp4

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


def body(**overrides) -> dict:
    fields = {"image_base64": base64.b64encode(gradient_png((160, 120))).decode(), "prompt": "a cat",
              "resolution": "256p", "num_frames": 8, "fps": 8, "steps": 2, "guidance_scale": 9.0}
    fields.update(overrides)
    return fields


@pytest.fixture(scope="module")
def api(gateway: GatewayServer) -> httpx.Client:
    with httpx.Client(base_url=gateway.url, timeout=300) as client:
        yield client


def assert_error(response: httpx.Response, status: int, fragment: str) -> None:
    assert response.status_code == status, response.text
    payload = response.json()
    assert payload["success"] is False and payload["video_url"] is None
    assert fragment.lower() in payload["message"].lower(), payload["message"]


def test_generate_returns_the_contract_and_a_downloadable_mp4(api: httpx.Client, gateway: GatewayServer) -> None:
    response = api.post("/api/v1/generate", json=body(fps=12, seed=5), headers=AUTH)
    assert response.status_code == 200, response.text
    payload = response.json()
    assert payload["success"] is True and payload["seed"] == 5
    assert {"message", "video_path", "video_url", "inference_time"} <= payload.keys()
    assert (payload["width"], payload["height"], payload["num_frames"], payload["fps"]) == (256, 256, 8, 12)
    assert re.fullmatch(r"outputs/[A-Za-z0-9_-]{22}\.mp4", payload["video_path"])
    assert payload["video_url"] == f"{gateway.url}/{payload['video_path']}"
    video = httpx.get(payload["video_url"], timeout=30)
    assert video.status_code == 200 and video.headers["content-type"] == "video/mp4"
    assert probe_mp4(video.content) == {"codec": "h264", "width": 256, "height": 256, "pix_fmt": "yuv420p",
                                        "fps": 12.0, "frames": 8, "faststart": True}


def test_legacy_query_token_and_1024p(api: httpx.Client) -> None:
    response = api.post(f"/api/v1/generate?token={API_TOKEN}", json=body(resolution="1024p", steps=1, fit="pad"))
    assert response.status_code == 200, response.text
    assert (response.json()["width"], response.json()["height"]) == (1024, 576)


def test_same_seed_same_video_and_step_caching_changes_it(api: httpx.Client) -> None:
    first = api.post("/api/v1/generate", json=body(seed=99), headers=AUTH).json()
    second = api.post("/api/v1/generate", json=body(seed=99), headers=AUTH).json()
    assert first["video_path"] != second["video_path"]
    assert httpx.get(first["video_url"]).content == httpx.get(second["video_url"]).content
    # Reusing the deep UNet features on the second step reaches the model.
    step_cached = api.post("/api/v1/generate", json=body(seed=99, step_cache_interval=2), headers=AUTH).json()
    assert httpx.get(step_cached["video_url"]).content != httpx.get(first["video_url"]).content


BAD_REQUESTS = [
    ("invalid base64", dict(image_base64="not base64 at all!"), {}, 400, "not valid base64"),
    ("not an image", dict(image_base64=base64.b64encode(b"plain text").decode()), {}, 400, "does not hold an image"),
    ("truncated image", dict(image_base64=base64.b64encode(image_bytes(size=(300, 300), fmt="JPEG")[:300]).decode()),
     {}, 400, "truncated"),
    ("bomb", dict(image_base64=base64.b64encode(png_declaring(30000, 30000)).decode()), {}, 413, "pixels"),
    ("image bytes", dict(image_base64=base64.b64encode(os.urandom(2_500_000)).decode()), {}, 413, "bytes"),
    ("too few frames", dict(num_frames=7), {}, 422, "num_frames"),
    ("too many frames", dict(num_frames=33), {}, 422, "num_frames"),
    ("zero steps", dict(steps=0), {}, 422, "steps"),
    ("step cache interval", dict(step_cache_interval=-1), {}, 422, "step_cache_interval"),
    ("fps", dict(fps=0), {}, 422, "fps"),
    ("guidance", dict(guidance_scale=-1), {}, 422, "guidance_scale"),
    ("resolution", dict(resolution="2160p"), {}, 422, "resolution"),
    ("unknown field", dict(colour="red"), {}, 422, "colour"),
    ("empty prompt", dict(prompt=""), {}, 422, "prompt"),
    ("long prompt", dict(prompt="x" * 2001), {}, 422, "limit is 2000"),
    ("no token", {}, {"Authorization": None}, 401, "missing token"),
    ("wrong token", {}, {"Authorization": "Bearer wrong-token-123"}, 401, "invalid token"),
    ("wrong scheme", {}, {"Authorization": f"Basic {API_TOKEN}"}, 401, "Bearer"),
]


@pytest.mark.parametrize("name, overrides, headers, status, fragment", BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS])
def test_bad_input_gets_its_status_and_the_error_body(api, name, overrides, headers, status, fragment) -> None:
    sent_headers = {k: v for k, v in {**AUTH, **headers}.items() if v is not None}
    assert_error(api.post("/api/v1/generate", json=body(**overrides), headers=sent_headers), status, fragment)


def test_malformed_json_and_oversized_body(api: httpx.Client) -> None:
    assert_error(api.post("/api/v1/generate", content=b"{not json", headers={**AUTH, "Content-Type":
                                                                              "application/json"}), 400, "malformed")
    assert_error(api.post("/api/v1/generate", content=b"x" * (5 * 1024 * 1024), headers=AUTH), 413, "larger than")
    # Without Content-Length (chunked), the body is counted as it arrives.
    chunks = iter([b"x" * (1024 * 1024)] * 5)
    assert_error(api.post("/api/v1/generate", content=chunks, headers=AUTH), 413, "larger than")


def test_a_50mb_body_is_refused_without_being_held_in_memory(start_gateway) -> None:
    """Default limits (30 MiB): 413 from Content-Length before reading, or counted as chunks
    arrive; the gateway's memory does not grow by anything like the body's size."""
    gateway = start_gateway({"I2V_RATE_LIMIT_PER_MINUTE": "0"})
    pid = gateway.process.pid
    fifty_mb = 50 * 1024 * 1024
    httpx.get(f"{gateway.url}/healthz")
    # A small refused POST first: what the first request of a route loads (validators, the UI's
    # and the metrics middleware's first use) is not the body being held.
    assert httpx.post(f"{gateway.url}/api/v1/generate", json={}, headers=AUTH).status_code == 422
    before = rss_mib(pid)
    declared = httpx.post(f"{gateway.url}/api/v1/generate", content=b"x" * fifty_mb, headers=AUTH, timeout=60)
    assert_error(declared, 413, "larger than")
    try:
        streamed = httpx.post(f"{gateway.url}/api/v1/generate", content=iter([b"x" * (1 << 20)] * 50),
                              headers=AUTH, timeout=60)
        assert_error(streamed, 413, "larger than")
    except (httpx.WriteError, httpx.RemoteProtocolError):
        pass  # the gateway answered 413 and closed while the client was still sending
    growth = rss_mib(pid) - before
    print(f"RSS {before:.1f} -> {before + growth:.1f} MiB")
    assert growth < 20, f"gateway RSS grew by {growth:.1f} MiB for a 50 MiB body"
    assert httpx.get(f"{gateway.url}/healthz").status_code == 200


def test_service_keeps_serving_after_bad_input(api: httpx.Client) -> None:
    for _, overrides, _, _, _ in BAD_REQUESTS[:5]:
        api.post("/api/v1/generate", json=body(**overrides), headers=AUTH)
    response = api.post("/api/v1/generate", json=body(), headers=AUTH)
    assert response.status_code == 200, response.text


def test_concurrent_requests_all_succeed_and_share_executions(gateway: GatewayServer, triton: TritonServer) -> None:
    stats = httpclient.InferenceServerClient(triton.http_url)
    before_requests, before_executions = model_counts(stats)
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(
            lambda seed: httpx.post(f"{gateway.url}/api/v1/generate", json=body(seed=seed), headers=AUTH,
                                    timeout=300), range(8)))
    assert [r.status_code for r in responses] == [200] * 8, [r.text for r in responses if r.status_code != 200]
    assert len({r.json()["video_path"] for r in responses}) == 8
    requests, executions = settled_counts(stats, before_requests + 8)
    assert requests - before_requests == 8
    assert executions - before_executions < 8, "concurrent gateway requests should share model executions"


def test_outputs_refuse_traversal_and_answer_ranges(api: httpx.Client) -> None:
    video_url = api.post("/api/v1/generate", json=body(), headers=AUTH).json()["video_url"]
    for path in ("/outputs/../README.md", "/outputs/%2e%2e/README.md", "/outputs/..%2fgateway/config.py",
                 "/outputs/does-not-exist.mp4", "/outputs/"):
        response = api.get(path)
        assert response.status_code == 404, path
        assert "I2V_API_TOKEN" not in response.text
    ranged = httpx.get(video_url, headers={"Range": "bytes=0-99"})
    assert ranged.status_code == 206
    assert len(ranged.content) == 100 and ranged.headers["content-range"].startswith("bytes 0-99/")


def test_health_readiness_and_docs(api: httpx.Client) -> None:
    assert api.get("/healthz").json()["status"] == "ok"
    assert api.get("/readyz").json() == {"status": "ready", "message": ""}
    assert api.get("/docs").status_code == 200
    spec = api.get("/openapi.json").json()
    operation = spec["paths"]["/api/v1/generate"]["post"]
    assert {"400", "401", "403", "413", "422", "429", "502", "503", "504"} <= set(operation["responses"])
    # Each route documents the errors it can raise, and only those: a job has a 404, generate has not.
    assert "404" not in operation["responses"]
    assert "404" in spec["paths"]["/api/v1/jobs/{job_id}"]["get"]["responses"]
    assert "409" in spec["paths"]["/api/v1/jobs"]["post"]["responses"]


def test_triton_down_gives_503(start_gateway) -> None:
    orphan = start_gateway(triton_grpc_url=f"127.0.0.1:{free_port()}")
    ready = httpx.get(f"{orphan.url}/readyz")
    # Never ready since it started: "starting", with the reason.
    assert ready.status_code == 503 and ready.json()["status"] == "starting", ready.text
    assert "not reachable" in ready.json()["message"]
    response = httpx.post(f"{orphan.url}/api/v1/generate", json=body(), headers=AUTH, timeout=60)
    assert_error(response, 503, "not reachable")
    assert response.headers["retry-after"]


def test_redis_down_gives_503_not_500(start_gateway) -> None:
    gateway = start_gateway({"I2V_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    ready = httpx.get(f"{gateway.url}/readyz")
    assert ready.status_code == 503 and "job store" in ready.json()["message"]
    for method, path in (("POST", "/api/v1/jobs"), ("GET", "/api/v1/jobs"), ("POST", "/api/v1/generate")):
        response = httpx.request(method, f"{gateway.url}{path}", json=body(), headers=AUTH, timeout=30)
        assert_error(response, 503, "unavailable")
        assert response.headers["retry-after"]
    assert "Traceback" not in gateway.log_path.read_text()


def test_triton_timeout_gives_504_and_frees_the_model(start_gateway, api: httpx.Client) -> None:
    impatient = start_gateway({"I2V_INFERENCE_TIMEOUT_S": "1.5"})
    response = httpx.post(f"{impatient.url}/api/v1/generate", json=body(steps=150), headers=AUTH, timeout=60)
    assert_error(response, 504, "did not finish in time")
    started = time.monotonic()
    assert api.post("/api/v1/generate", json=body(), headers=AUTH).status_code == 200
    assert time.monotonic() - started < 20, "the timed-out request kept the model busy"


def test_client_disconnect_cancels_the_triton_request(gateway: GatewayServer, triton: TritonServer) -> None:
    pattern = re.compile(r"cancelled after (\d+) of 140 denoising steps")
    before = len(pattern.findall(triton.server_log.read_text()))
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{gateway.url}/api/v1/generate", json=body(steps=140), headers=AUTH, timeout=3)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(pattern.findall(triton.server_log.read_text())) == before:
        time.sleep(0.25)
    found = pattern.findall(triton.server_log.read_text())
    assert len(found) > before, "the model never saw the cancellation"
    assert int(found[-1]) < 140


def test_the_documented_example_makes_a_playable_video(gateway: GatewayServer, tmp_path) -> None:
    """client/examples/generate_video.py with the API document's 512p and 16 frames and a Bearer
    token; 4 denoising steps instead of its default 50, which cost 3 minutes of the suite on 2 cores."""
    photo = tmp_path / "input.jpg"
    photo.write_bytes(image_bytes("orange", (640, 480), "JPEG"))
    output = tmp_path / "output.mp4"
    env = {**os.environ, "I2V_API_URL": gateway.url, "I2V_API_TOKEN": API_TOKEN}
    example = REPO_ROOT / "client" / "examples" / "generate_video.py"
    result = subprocess.run([sys.executable, str(example), str(photo), str(output), "--steps", "4"], env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "video generated" in result.stdout
    info = probe_mp4(output.read_bytes())
    assert info == {"codec": "h264", "width": 512, "height": 512, "pix_fmt": "yuv420p", "fps": 8.0, "frames": 16,
                    "faststart": True}
