"""Schema-driven fuzzing of the whole API (schemathesis against /openapi.json), bounded in
examples and time: no 500, no hang, and every answer matches what the schema documents.

Run twice: with the default settings, and with every optional feature on (webhooks with private
callbacks refused, so callback URLs go through the full check; Redis; metrics; JWT; CORS). The
events stream of an ended job is fuzzed too, with generated Last-Event-IDs (tests/support/
fuzz_hooks.py). CI uses a fixed seed and I2V_FUZZ_EXAMPLES examples an operation (50);
``I2V_FUZZ_EXAMPLES=500 I2V_FUZZ_SEED=random`` runs longer and finds new cases.
"""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.jobs.conftest import WEBHOOK_SECRET
from tests.support.media import gradient_png

pytestmark = pytest.mark.integration
CHECKS = ",".join(("not_a_server_error", "status_code_conformance", "content_type_conformance",
                   "response_schema_conformance", "response_headers_conformance"))
HOOKS = Path(__file__).resolve().parents[1] / "support" / "fuzz_hooks.py"
EXAMPLES = int(os.environ.get("I2V_FUZZ_EXAMPLES", "50"))
SEED = os.environ.get("I2V_FUZZ_SEED", "20261124")
# No job workers (accepted jobs need not run) and a short model deadline, so no case can hang.
BASE = {"I2V_JOB_WORKERS": "0", "I2V_RATE_LIMIT_PER_MINUTE": "0", "I2V_INFERENCE_TIMEOUT_S": "20"}
EVERY_FEATURE = {"I2V_WEBHOOK_SECRET": WEBHOOK_SECRET, "I2V_WEBHOOK_ALLOW_PRIVATE": "false",
                 "I2V_METRICS_TOKEN": "metrics-token-0123456789", "I2V_JWT_SECRET": "j" * 32,
                 "I2V_CORS_ORIGINS": "https://app.example.com"}


def ended_job(gateway) -> tuple[str, int]:
    """A job that has ended (cancelled while queued), and the id of its last event."""
    auth = {"Authorization": f"Bearer {gateway.token}"}
    image = base64.b64encode(gradient_png((32, 32))).decode()
    job = httpx.post(f"{gateway.url}/api/v1/jobs", headers=auth, timeout=30,
                     json={"image_base64": image, "prompt": "a cat", "resolution": "256p", "steps": 1})
    assert job.status_code == 202, job.text
    cancelled = httpx.delete(f"{gateway.url}/api/v1/jobs/{job.json()['job_id']}", headers=auth, timeout=30)
    assert cancelled.json()["status"] == "cancelled", cancelled.text
    return cancelled.json()["job_id"], 2  # queued, cancelled


@pytest.mark.parametrize("features", ["defaults", "every-feature"])
def test_fuzzing_the_openapi_schema_finds_no_server_error(start_gateway, request: pytest.FixtureRequest,
                                                          features: str) -> None:
    env = dict(BASE)
    if features == "every-feature":
        env.update(EVERY_FEATURE, I2V_REDIS_URL=request.getfixturevalue("new_redis_url")())
    gateway = start_gateway(env)
    job_id, last_event = ended_job(gateway)
    st = Path(sys.executable).with_name("st")
    seed = [] if SEED == "random" else ["--seed", SEED]
    result = subprocess.run(
        [str(st), "run", f"{gateway.url}/openapi.json", "-H", f"Authorization: Bearer {gateway.token}",
         "--max-examples", str(EXAMPLES), "--request-timeout", "30", "--checks", CHECKS, *seed],
        capture_output=True, text=True, timeout=1800,
        env={**os.environ, "SCHEMATHESIS_HOOKS": str(HOOKS), "I2V_FUZZ_ENDED_JOB": job_id,
             "I2V_FUZZ_ENDED_JOB_EVENTS": str(last_event)})
    report = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, report
    assert "Test cases:" in result.stdout and "generated" in result.stdout, report
    assert "Traceback" not in gateway.log_path.read_text(), gateway.log_tail(80)
    # The ended job's stream was fuzzed: it answered streams (200) and refused ids (400).
    log = gateway.log_path.read_text()
    assert f"GET /api/v1/jobs/{job_id}/events 200" in log and f"GET /api/v1/jobs/{job_id}/events 400" in log, \
        gateway.log_tail(80)
