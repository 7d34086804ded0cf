"""Two gateway replicas on one Redis behind a real haproxy (Debian's), one tritonserver, as
deployed: shared outputs and cache folders, I2V_PUBLIC_BASE_URL = the balancer. The balancer
spreads requests over both (a real Prometheus scrapes both replicas' counters); a job submitted
to one replica is read and streamed from the other; one replica is killed (SIGKILL) while it
runs a job, haproxy's health check takes it out, and the other finishes that job after its
lease. Every accepted job ends succeeded exactly once, and its video downloads through the
balancer."""

from __future__ import annotations

import csv
import io
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from i2v_tools.servers import GatewayServer, ManagedProcess, TritonServer, free_port, http_ok
from tests.gateway.test_api import AUTH, body
from tests.jobs.conftest import JOB_ENV
from tests.observability.servers import PrometheusServer, scrape_config, wait_for
from tests.support.media import probe_mp4
from tests.support.sse import read_events

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("haproxy") is None and not Path("/usr/sbin/haproxy").exists(),
                                 reason="Debian's haproxy is not installed (scripts/setup.sh --dev)"),
              pytest.mark.skipif(shutil.which("prometheus") is None, reason="Debian's prometheus is not installed")]
HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"
BOUND_S = 240  # a busy 2-core CI machine: one 6-step job here has taken 22 s
FINAL = {"succeeded", "failed", "cancelled"}
# Small videos; the ones running when a replica is killed take a few more steps.
VIDEO = {"resolution": "256p", "num_frames": 8, "steps": 2}
LONGER = 6


class HAProxy(ManagedProcess):
    """haproxy in the foreground (-db) with a config of its own: round robin over ``backends``,
    each checked with GET /readyz as the deployment's readiness probe does; the stats page
    (CSV) on a second loopback port."""

    def __init__(self, work_dir: Path, port: int, backends: dict[str, str]) -> None:
        self.port, self.stats_port = port, free_port()
        servers = "\n".join(f"    server {name} {address} check" for name, address in backends.items())
        config = work_dir / "haproxy.cfg"
        config.write_text(f"""\
global
    maxconn 256

defaults
    mode http
    timeout connect 2s
    # SSE streams and synchronous generations hold a request open.
    timeout client 300s
    timeout server 300s
    # A request that cannot reach a dead replica goes to the other at once.
    retries 2
    option redispatch 1

frontend api
    bind 127.0.0.1:{self.port}
    default_backend gateways

backend gateways
    balance roundrobin
    option httpchk GET /readyz
    http-check expect status 200
    default-server inter 300ms fastinter 300ms downinter 1s fall 2 rise 2
{servers}

frontend stats
    bind 127.0.0.1:{self.stats_port}
    stats enable
    stats uri /
""")
        checked = subprocess.run([HAPROXY, "-c", "-f", str(config)], capture_output=True, text=True, timeout=30)
        assert checked.returncode == 0, checked.stdout + checked.stderr
        super().__init__("haproxy", [HAPROXY, "-db", "-f", str(config)], work_dir / "haproxy.log", cwd=work_dir)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def server_status(self) -> dict[str, str]:
        """Each backend server's state as haproxy's health checks see it (UP, DOWN, ...); none
        while haproxy is still starting."""
        try:
            text = httpx.get(f"http://127.0.0.1:{self.stats_port}/;csv", timeout=5).text.removeprefix("# ")
        except httpx.ConnectError:
            return {}
        return {row["svname"]: row["status"] for row in csv.DictReader(io.StringIO(text))
                if row["pxname"] == "gateways" and row["svname"] not in ("FRONTEND", "BACKEND")}

    def wait_status(self, expected: dict[str, str], timeout: float = 30) -> None:
        self.wait_until(lambda: self.server_status() == expected, timeout, f"servers {expected}")


def in_flight(gateway: GatewayServer) -> float:
    """The replica's own gauge of Triton inferences it waits for, from its metrics port."""
    port = gateway.env["I2V_METRICS_PORT"]
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return 0.0
    match = re.search(r"^i2v_generations_in_flight (\S+)$", text, re.MULTILINE)
    return float(match[1]) if match else 0.0


def submit(base_url: str, prompt: str, steps: int = VIDEO["steps"]) -> dict:
    response = httpx.post(f"{base_url}/api/v1/jobs", json=body(**{**VIDEO, "steps": steps}, prompt=prompt),
                          headers=AUTH, timeout=30)
    assert response.status_code == 202, response.text
    return response.json()


def job(base_url: str, job_id: str) -> dict:
    response = httpx.get(f"{base_url}/api/v1/jobs/{job_id}", headers=AUTH, timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def poll(base_url: str, job_id: str, until: Callable[[dict], bool], timeout: float = BOUND_S) -> dict:
    deadline = time.monotonic() + timeout
    current = job(base_url, job_id)
    while not until(current):
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {current['status']} ({current['message']}) after {timeout} s")
        time.sleep(0.2)
        current = job(base_url, job_id)
    return current


@pytest.fixture
def cluster(start_gateway, new_redis_url, triton: TritonServer, tmp_path: Path):
    """(haproxy, [replica A, replica B], Prometheus) as deployed, on loopback."""
    balancer_port = free_port()
    shared = {**JOB_ENV, "I2V_REDIS_URL": new_redis_url(),
              "I2V_OUTPUTS_DIR": str(tmp_path / "outputs"), "I2V_CACHE_DIR": str(tmp_path / "cache"),
              "I2V_PUBLIC_BASE_URL": f"http://127.0.0.1:{balancer_port}"}
    for folder in ("haproxy", "prometheus"):
        (tmp_path / folder).mkdir()
    replicas = [start_gateway({**shared, "I2V_METRICS_PORT": str(free_port())}) for _ in range(2)]
    backends = {f"gw{i}": f"127.0.0.1:{replica.port}" for i, replica in enumerate(replicas)}
    balancer = HAProxy(tmp_path / "haproxy", balancer_port, backends)
    prometheus = PrometheusServer(tmp_path / "prometheus", scrape_config({
        "gateway": [f"127.0.0.1:{r.env['I2V_METRICS_PORT']}" for r in replicas],
        "triton": [f"127.0.0.1:{triton.metrics_port}"]}))
    try:
        balancer.start()
        balancer.wait_status({"gw0": "UP", "gw1": "UP"})
        prometheus.start().wait_ready()
        yield balancer, replicas, prometheus
    finally:
        prometheus.stop()
        balancer.stop()
        for replica in replicas:
            replica.stop()


def test_two_replicas_behind_haproxy_lose_no_job_when_one_is_killed(cluster) -> None:
    balancer, (a, b), prometheus = cluster
    lb = balancer.url

    # A job submitted to one replica is read, and its events streamed, from the other.
    crossed = submit(a.url, "crossed")
    assert crossed["status_url"] == f"{lb}/api/v1/jobs/{crossed['job_id']}"  # the public address
    events = read_events(f"{b.url}/api/v1/jobs/{crossed['job_id']}/events", AUTH, timeout=BOUND_S)
    assert events[0].type == "queued" and [e.type for e in events if e.type in FINAL] == ["succeeded"], events
    assert job(b.url, crossed["job_id"])["status"] == "succeeded"

    # Jobs through the balancer land on both replicas: each replica's own counter, as Prometheus scraped it.
    ids = [crossed["job_id"]] + [submit(lb, f"job {i}")["job_id"] for i in range(2)]
    submits = 'sum by (instance) (i2v_http_requests_total{route="/api/v1/jobs",method="POST",status="202"})'
    per_replica = wait_for(lambda: sum(prometheus.values(submits)) == 3 and prometheus.values(submits),
                           BOUND_S, "job submissions counted on both replicas")
    assert len(per_replica) == 2 and min(per_replica) >= 1, per_replica

    # Kill A while it runs a job: no chance to hand anything back.
    ids += [submit(lb, f"busy {i}", steps=LONGER)["job_id"] for i in range(2)]
    wait_for(lambda: in_flight(a) >= 1, BOUND_S, "a job running on replica A", interval=0.05)
    a.kill()
    balancer.wait_status({"gw0": "DOWN", "gw1": "UP"})
    # Jobs accepted after the loss go to the survivor.
    ids.append(submit(lb, "after")["job_id"])

    deadline = time.monotonic() + BOUND_S  # for all of them: one replica runs them one by one now
    jobs = [poll(lb, job_id, lambda j: j["status"] in FINAL, max(deadline - time.monotonic(), 1)) for job_id in ids]
    assert [j["status"] for j in jobs] == ["succeeded"] * len(ids), [j["message"] for j in jobs]
    attempts = sorted(j["attempts"] for j in jobs)
    assert attempts == [1] * (len(ids) - 1) + [2], "only the killed replica's job ran again, once"
    for done in jobs:
        # Exactly one final event in each job's log, read through the balancer.
        log = read_events(f"{lb}/api/v1/jobs/{done['job_id']}/events", AUTH, timeout=30)
        assert [e.type for e in log if e.type in FINAL] == ["succeeded"], log
        video_url = done["result"]["video_url"]
        assert video_url.startswith(f"{lb}/outputs/"), video_url
        video = httpx.get(video_url, timeout=30)
        assert video.status_code == 200 and probe_mp4(video.content)["frames"] == VIDEO["num_frames"]
    assert not http_ok(f"{a.url}/healthz")
