"""Bad input against the real gateway (and tritonserver behind it): each is answered with its
documented status, the API's one error shape and a message naming the field and the rule;
none reaches a 500."""

from __future__ import annotations

import base64
import json
import re
import socket

import httpx
import pytest

from i2v_tools.servers import GatewayServer
from tests.gateway.test_api import AUTH, assert_error, body
from tests.observability.servers import wait_for
from tests.support.media import image_bytes

pytestmark = pytest.mark.integration
BODY_ROUTES = ("/api/v1/generate", "/api/v1/jobs", "/api/v1/batch")
# 14 bytes of a QOI header: Pillow's own QOI decoder raises IndexError on it.
AUTH_LINE = "".join(f"{name}: {value}" for name, value in AUTH.items())
TRUNCATED_QOI = b"qoif" + (16).to_bytes(4, "big") * 2 + b"\x03\x00"


@pytest.fixture(scope="module")
def api(gateway: GatewayServer) -> httpx.Client:
    with httpx.Client(base_url=gateway.url, timeout=120) as client:
        yield client


@pytest.mark.parametrize(("overrides", "field", "rule"), [
    ({"prompt": " \n\t "}, "prompt", "empty or only whitespace"),
    ({"steps": True}, "steps", "valid integer"),
    ({"seed": False}, "seed", "valid integer"),
    ({"num_frames": 16.0}, "num_frames", "valid integer"),
    ({"fps": "8"}, "fps", "valid integer"),
    ({"guidance_scale": True}, "guidance_scale", "valid number"),
], ids=["blank prompt", "steps true", "seed false", "frames float", "fps string", "guidance true"])
def test_fields_are_strict(api: httpx.Client, overrides: dict, field: str, rule: str) -> None:
    for route in ("/api/v1/generate", "/api/v1/jobs"):
        answer = api.post(route, json=body(**overrides), headers=AUTH)
        assert_error(answer, 422, f"{field}: ")
        assert rule in answer.json()["message"], answer.json()["message"]


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity"])
def test_guidance_scale_and_cancel_after_must_be_finite(api: httpx.Client, number: str) -> None:
    for field in ("guidance_scale", "cancel_after_s"):
        text = json.dumps(body())[:-1] + f', "{field}": {number}}}'  # what json.loads takes, beyond JSON
        answer = api.post("/api/v1/generate", content=text, headers={**AUTH, "Content-Type": "application/json"})
        assert_error(answer, 422, f"{field}: Input should be a finite number")


def test_webhook_events_without_a_callback_url_is_refused(api: httpx.Client) -> None:
    answer = api.post("/api/v1/jobs", json=body(webhook_events=["start", "completed"]), headers=AUTH)
    assert_error(answer, 422, "webhook_events needs a callback_url")


@pytest.mark.parametrize(("content", "content_type", "fragment"), [
    (b'{"prompt": "a cat",, "steps": 2}', "application/json",
     "malformed JSON: Expecting property name enclosed in double quotes at line 1, column 20 (character 19)"),
    (b'{\n  "prompt": "a cat"\n  "steps": 2\n}', "application/json",
     "malformed JSON: Expecting ',' delimiter at line 3, column 3"),
    (b"{not json", "application/json", "malformed JSON"),
    (b"\xff\xfe{}", "application/json", "malformed JSON"),
    (b"prompt=a+cat", "application/x-www-form-urlencoded", "not JSON"),
    (b'{"prompt": "a cat"}', "text/plain", "not JSON"),
    (b"", "application/json", "the body is empty"),
], ids=["double comma", "missing comma", "not json", "bad utf-8", "form", "text/plain", "empty"])
def test_a_body_that_is_not_json_is_a_400_on_every_route(api: httpx.Client, content: bytes, content_type: str,
                                                          fragment: str) -> None:
    for route in BODY_ROUTES:
        answer = api.post(route, content=content, headers={**AUTH, "Content-Type": content_type})
        assert_error(answer, 400, fragment)
    # JSON that is not an object is a JSON body with the wrong shape: a 422, as any wrong field.
    assert_error(api.post("/api/v1/jobs", json=["a cat"], headers=AUTH), 422, "valid dictionary")


def test_a_batch_whose_every_item_is_rejected_is_a_422_listing_each(api: httpx.Client) -> None:
    items = [{"num_frames": 99}, {"prompt": "   "}, {"image_base64": "not an image!"}]
    answer = api.post("/api/v1/batch", json={"defaults": body(), "items": items}, headers=AUTH)
    assert_error(answer, 422, "every item of the batch was rejected")
    message = answer.json()["message"]
    assert "item 0: invalid request: num_frames" in message and "item 1: invalid request: prompt" in message
    assert "item 2: image_base64 is not valid base64" in message, message


@pytest.mark.parametrize("fmt", ["ICO", "PPM", "TGA", "PCX", "SGI", "IM", "DDS", "QOI"])
def test_only_the_documented_image_formats_are_decoded(api: httpx.Client, fmt: str) -> None:
    image = base64.b64encode(image_bytes(size=(32, 32), fmt=fmt)).decode()
    answer = api.post("/api/v1/generate", json=body(image_base64=image), headers=AUTH)
    assert_error(answer, 400, "not hold an image in an accepted format (PNG, JPEG, WebP, BMP, GIF or TIFF)")


def test_a_truncated_qoi_file_is_a_400_not_a_500(api: httpx.Client) -> None:
    for route in ("/api/v1/generate", "/api/v1/jobs"):
        answer = api.post(route, json=body(image_base64=base64.b64encode(TRUNCATED_QOI).decode()), headers=AUTH)
        assert_error(answer, 400, "accepted format")


def test_a_404_for_an_unknown_job_echoes_a_short_prefix_of_its_id(api: httpx.Client) -> None:
    long_id = "x" * 40 + "y" * 4000
    for method, path in (("GET", f"/api/v1/jobs/{long_id}"), ("GET", f"/api/v1/jobs/{long_id}/events"),
                         ("DELETE", f"/api/v1/jobs/{long_id}"), ("POST", f"/api/v1/jobs/{long_id}/cancel")):
        answer = api.request(method, path, headers=AUTH)
        assert_error(answer, 404, "no job " + "x" * 40 + "...")
        assert "y" not in answer.json()["message"] and len(answer.json()["message"]) < 60
    assert_error(api.get("/api/v1/jobs/abc", headers=AUTH), 404, "no job abc")


def test_outputs_ignore_a_range_in_another_unit_and_answer_416_in_the_error_shape(api: httpx.Client) -> None:
    generated = api.post("/api/v1/generate", json=body(steps=1), headers=AUTH)
    assert generated.status_code == 200, generated.text
    path = "/" + generated.json()["video_path"]
    whole = api.get(path)
    length = len(whole.content)
    # RFC 9110: a range unit the server does not know is ignored: the whole file.
    for header in ("items=0-10", "pages=1", "bytes"):
        answer = api.get(path, headers={"Range": header})
        if header == "bytes":  # the unit is known, the range is not there: unsatisfiable
            assert answer.status_code == 416, header
            continue
        assert answer.status_code == 200 and answer.content == whole.content, header
    for header in (f"bytes={length}-", f"bytes={length + 10}-{length + 20}", "bytes=abc", "bytes=9-2"):
        answer = api.get(path, headers={"Range": header})
        assert_error(answer, 416, "which has")
        assert answer.headers["content-range"] == f"bytes */{length}", header
    ranged = api.get(path, headers={"Range": "bytes=2-5"})
    assert ranged.status_code == 206 and ranged.content == whole.content[2:6]
    assert_error(api.get("/outputs/does-not-exist.mp4"), 404, "not found")


@pytest.mark.parametrize(("route", "status"), [("/v1/videos", 499), ("/api/v1/jobs", 400), ("/api/v1/generate", 400)])
def test_a_client_gone_while_its_body_is_read_is_not_a_server_error(gateway: GatewayServer, route: str,
                                                                     status: int) -> None:
    """Half a body, then the connection closed. /v1/videos reads its body itself, and Starlette's
    ClientDisconnect became a 500 with a traceback (the load run's slowed gateway met it); it is a
    499 now. FastAPI's own body parsing answers 400 ("error parsing the body") to the gone client."""
    host, port = gateway.url.removeprefix("http://").split(":")
    seen = len(gateway.log_path.read_text(errors="replace"))
    with socket.create_connection((host, int(port)), timeout=30) as raw:
        raw.sendall((f"POST {route} HTTP/1.1\r\nHost: {host}\r\n{AUTH_LINE}\r\nContent-Type: application/json\r\n"
                     "Content-Length: 100000\r\n\r\n" + '{"prompt": "half a body').encode())
    answered = re.compile(rf"POST {re.escape(route)} (\d{{3}}) ")
    found = wait_for(lambda: answered.search(gateway.log_path.read_text(errors="replace")[seen:]), 60,
                     f"an answer to POST {route} in the gateway's log")
    assert int(found.group(1)) == status
    assert "Exception in ASGI" not in gateway.log_path.read_text(errors="replace")[seen:]
