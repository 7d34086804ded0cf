"""A Triton that comes back is noticed within seconds, however long it was away.

gRPC's default reconnect backoff grows to 10-20 s over an outage of half a minute, so a gateway
probed all along (as a load balancer does) kept refusing work long after Triton was ready again.
"""

from __future__ import annotations

import time

import httpx
import pytest

from i2v_tools.servers import TritonServer, http_ok
from tests.gateway.test_api import AUTH, body

pytestmark = pytest.mark.integration
# From Triton's model answering ready to the gateway's /readyz answering ready. The reconnect
# backoff is capped at 1 s (gateway/generation/triton_client.py); the rest is slack for a busy CPU.
RECOVERY_S = 5.0
PROBE_EVERY_S = 0.25
# Triton stays away this long before its restart (which adds its own start time): the outage of
# the fault, not a wait for anything.
OUTAGE_S = 15.0


def readyz(gateway) -> int:
    return httpx.get(f"{gateway.url}/readyz", timeout=10).status_code


def test_the_gateway_is_ready_within_seconds_of_triton(spare_triton: TritonServer, start_gateway) -> None:
    gateway = start_gateway({"I2V_JOB_WORKERS": "0", "I2V_RATE_LIMIT_PER_MINUTE": "0",
                             "I2V_MAX_CONCURRENT_PER_KEY": "0", "I2V_CACHE_MAX_BYTES": "0"},
                            triton_grpc_url=spare_triton.grpc_url)
    gateway.wait_until(lambda: readyz(gateway) == 200, 30, "ready /readyz")

    spare_triton.kill()
    gateway.wait_until(lambda: readyz(gateway) == 503, 30, "/readyz noticing that Triton is gone")
    # Probe throughout the outage, as a load balancer does: each probe is a connection attempt,
    # and that is what grows gRPC's backoff (to 10-17 s between attempts after 20-30 s away).
    outage_ends = time.monotonic() + OUTAGE_S
    while time.monotonic() < outage_ends:
        assert readyz(gateway) == 503
        time.sleep(PROBE_EVERY_S)
    spare_triton.start()
    model_ready = f"http://{spare_triton.http_url}/v2/models/i2vgen_xl/ready"
    restart_ends = time.monotonic() + 300
    while not http_ok(model_ready):
        assert spare_triton.running, spare_triton.log_tail()
        assert time.monotonic() < restart_ends, "Triton did not come back"
        readyz(gateway)
        time.sleep(PROBE_EVERY_S)
    triton_ready_at = time.monotonic()

    while (status := readyz(gateway)) != 200 and time.monotonic() - triton_ready_at < RECOVERY_S:
        time.sleep(PROBE_EVERY_S)
    noticed_s = time.monotonic() - triton_ready_at
    assert status == 200, f"/readyz still {status} {noticed_s:.1f} s after Triton was ready again"
    response = httpx.post(f"{gateway.url}/api/v1/generate", json=body(steps=1), headers=AUTH, timeout=120)
    assert response.status_code == 200, response.text
    print(f"ready {noticed_s:.2f} s and a video {time.monotonic() - triton_ready_at:.2f} s after Triton")
