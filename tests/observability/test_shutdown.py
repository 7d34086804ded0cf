"""The gateway's shutdown grace (I2V_SHUTDOWN_GRACE_S): a synchronous generation still running
when the process gets SIGTERM (a rolling update, `docker compose stop`) finishes with its 200,
no new connection is taken meanwhile, an open event stream ends at once (its client reconnects
elsewhere) instead of holding the shutdown, and then the process exits by itself."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from i2v_tools.servers import free_port, http_ok
from tests.gateway.test_api import AUTH, body
from tests.observability.servers import wait_for
from tests.observability.test_replicas import in_flight
from tests.support.media import probe_mp4

pytestmark = pytest.mark.integration
BOUND_S = 180
# Long enough on a CI CPU to outlast uvicorn's old 10 s grace; nothing here depends on it.
VIDEO = {"resolution": "256p", "num_frames": 8, "steps": 8, "seed": 5}


def events_until_closed(lines: Iterator[str]) -> list[str]:
    """The event lines left before the server ends the stream. sse-starlette ends it at shutdown
    without the closing chunk (uvicorn: "ASGI callable returned without completing response"):
    an abrupt close is an end too, and an EventSource client reconnects either way."""
    events: list[str] = []
    with contextlib.suppress(httpx.RemoteProtocolError):
        events.extend(line for line in lines if line.startswith("event:"))
    return events


def test_sigterm_lets_a_running_generation_finish_then_exits(start_gateway) -> None:
    gateway = start_gateway({"I2V_METRICS_PORT": str(free_port()), "I2V_CACHE_MAX_BYTES": "0",
                             # No job workers: the job below stays queued, its event stream open.
                             "I2V_JOB_WORKERS": "0",
                             "I2V_INFERENCE_TIMEOUT_S": str(BOUND_S), "I2V_SHUTDOWN_GRACE_S": str(BOUND_S)})
    assert gateway.process is not None
    queued = httpx.post(f"{gateway.url}/api/v1/jobs", json=body(), headers=AUTH, timeout=30)
    assert queued.status_code == 202, queued.text
    with httpx.stream("GET", f"{queued.json()['status_url']}/events", headers=AUTH, timeout=BOUND_S) as stream, \
            ThreadPoolExecutor(1) as pool:
        lines = stream.iter_lines()
        assert next(line for line in lines if line.startswith("event:")) == "event: queued"
        answer = pool.submit(httpx.post, f"{gateway.url}/api/v1/generate", json=body(**VIDEO), headers=AUTH,
                             timeout=BOUND_S)
        wait_for(lambda: in_flight(gateway) >= 1 or answer.done(), BOUND_S, "the generation running in Triton",
                 interval=0.05)
        assert not answer.done(), answer.result()
        os.kill(gateway.process.pid, signal.SIGTERM)
        # The listening socket closes at once; the request in progress goes on.
        wait_for(lambda: not http_ok(f"{gateway.url}/healthz", timeout=1), 30, "the port closed", interval=0.1)
        # The event stream ends (no more events) while the generation still holds the process.
        assert events_until_closed(lines) == []
        response = answer.result(timeout=BOUND_S)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["success"] is True and result["seed"] == VIDEO["seed"]
    video = Path(gateway.env["I2V_OUTPUTS_DIR"]) / Path(result["video_path"]).name
    assert probe_mp4(video.read_bytes())["frames"] == VIDEO["num_frames"]
    # Then it exits by itself (uvicorn re-raises the SIGTERM it caught once it is done).
    assert gateway.process.wait(timeout=60) in (0, -signal.SIGTERM)
    assert "timeout graceful shutdown exceeded" not in gateway.log_path.read_text()
