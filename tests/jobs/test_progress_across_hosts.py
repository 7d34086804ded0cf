"""Per-step progress with tritonserver and the gateway as on two hosts: different working
directories, no folder in common, only Triton's gRPC port between them."""

from __future__ import annotations

import httpx
import pytest

from i2v_tools.servers import GatewayServer, TritonServer
from tests.gateway.test_api import AUTH, body
from tests.jobs.conftest import JOB_ENV
from tests.support.sse import read_events

pytestmark = pytest.mark.integration


def test_a_jobs_progress_grows_step_by_step_with_no_shared_folder(start_gateway, triton: TritonServer) -> None:
    gateway: GatewayServer = start_gateway(JOB_ENV)
    assert gateway.cwd != triton.cwd
    assert not any(name.startswith("I2V_PROGRESS") for name in (*gateway.env, *triton.env))
    accepted = httpx.post(f"{gateway.url}/api/v1/jobs", json=body(steps=12), headers=AUTH, timeout=30).json()
    events = read_events(f"{gateway.url}/api/v1/jobs/{accepted['job_id']}/events", AUTH)
    running = [e.data for e in events if e.type == "running" and "step" in e.data]
    assert [p["step"] for p in running] == list(range(1, 13)), events
    assert {p["total"] for p in running} == {12}
    assert events[-1].type == "succeeded", events[-1]
    # Nothing was written where either process runs but its own logs and data.
    for folder in (gateway.cwd, triton.cwd):
        assert not (folder / "run").exists() and not (folder / "progress").exists()
