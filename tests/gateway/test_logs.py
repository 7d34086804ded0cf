"""The gateway's captured log holds no prompt text, no token and no signature (JSON format)."""

from __future__ import annotations

import base64
import hashlib
import json
import time

import httpx
import jwt
import pytest

from tests.support.media import gradient_png

pytestmark = pytest.mark.integration
ALICE = "alice-log-key-0123456789"
JWT_SECRET = "log-test-jwt-secret-0123456789-abcdefgh"
PROMPTS = ["a confidential product launch video 7f3a", "my neighbour's private garden 91bc",
           "an unreleased logo spinning c0de"]
NEGATIVE = "blurry watermark 55aa"


def test_json_log_has_request_lines_and_no_prompts_or_secrets(start_gateway) -> None:
    gateway = start_gateway({"I2V_LOG_FORMAT": "json", "I2V_API_KEYS": f"alice={ALICE}", "I2V_JWT_SECRET": JWT_SECRET,
                             "I2V_RATE_LIMIT_PER_MINUTE": "0", "I2V_JOB_WORKERS": "1"})
    image = base64.b64encode(gradient_png((64, 64))).decode()
    request = {"image_base64": image, "resolution": "256p", "num_frames": 8, "steps": 1}
    web_token = jwt.encode({"sub": "carol", "exp": int(time.time()) + 60}, JWT_SECRET, algorithm="HS256")
    bearer = {"Authorization": f"Bearer {gateway.token}"}

    assert httpx.post(f"{gateway.url}/api/v1/generate", json={**request, "prompt": PROMPTS[0]}, headers=bearer,
                      timeout=120).status_code == 200
    legacy = httpx.post(f"{gateway.url}/api/v1/generate?token={ALICE}",
                        json={**request, "prompt": PROMPTS[1], "negative_prompt": NEGATIVE}, timeout=120)
    assert legacy.status_code == 200
    job = httpx.post(f"{gateway.url}/api/v1/jobs", json={**request, "prompt": PROMPTS[2]},
                     headers={"Authorization": f"Bearer {web_token}"}).json()
    for _ in range(100):
        if httpx.get(f"{gateway.url}/api/v1/jobs/{job['job_id']}",
                     headers={"Authorization": f"Bearer {web_token}"}).json()["status"] == "succeeded":
            break
        time.sleep(0.3)
    assert httpx.get(f"{gateway.url}/api/v1/jobs", headers={"Authorization": "Bearer wrong-token-abcdef"}
                     ).status_code == 401
    time.sleep(0.5)

    log = gateway.log_path.read_text()
    for secret in [*PROMPTS, NEGATIVE, gateway.token, ALICE, web_token, "wrong-token-abcdef", image[:40]]:
        assert secret not in log, f"the log shows {secret[:24]}..."
    lines = [json.loads(line) for line in log.splitlines() if line.strip()]
    access = [line for line in lines if line["logger"] == "gateway.access"]
    assert {"default", "alice", "jwt:carol", "-"} <= {line["key"] for line in access}
    assert all({"method", "path", "status", "duration_ms", "ip"} <= line.keys() for line in access)
    assert 401 in {line["status"] for line in access}
    hashed = "sha256:" + hashlib.sha256(PROMPTS[0].encode()).hexdigest()[:12]
    assert any(hashed in line["message"] for line in lines), "the prompt's hash lets repeats be correlated"
