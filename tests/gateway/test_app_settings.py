"""Settings that change how the app answers, checked on create_app in-process."""

from __future__ import annotations

import base64

from fastapi.testclient import TestClient

from gateway.app import create_app
from gateway.config import Settings
from tests.support.media import image_bytes

TOKEN = "settings-test-token-0123"
BODY = {"image_base64": base64.b64encode(image_bytes()).decode(), "prompt": "a cat", "resolution": "256p"}


def client(tmp_path, **settings) -> TestClient:
    # No Triton here: every request below is answered before the model would be called.
    return TestClient(create_app(Settings(api_token=TOKEN, outputs_dir=tmp_path, jobs_db=tmp_path / "jobs.sqlite3",
                                          cache_dir=tmp_path / "cache", triton_grpc_url="127.0.0.1:9", **settings)))


def test_query_token_can_be_switched_off(tmp_path) -> None:
    with client(tmp_path, allow_query_token=False) as api:
        response = api.post(f"/api/v1/generate?token={TOKEN}", json=BODY)
        assert response.status_code == 401
        assert "?token= parameter is disabled" in response.json()["message"]


def test_cors_is_closed_unless_origins_are_configured(tmp_path) -> None:
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    with client(tmp_path) as api:
        assert "access-control-allow-origin" not in api.options("/api/v1/generate", headers=preflight).headers
    with client(tmp_path, cors_origins=["https://app.example"]) as api:
        allowed = api.options("/api/v1/generate", headers=preflight)
        assert allowed.headers["access-control-allow-origin"] == "https://app.example"
        other = api.options("/api/v1/generate", headers={**preflight, "Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in other.headers
