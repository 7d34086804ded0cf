"""A real Prometheus (Debian's package), with the project's scrape config, scrapes a real gateway
and tritonserver: after generations, PromQL returns the model's success count and the gateway's
request counts, and every query of the Grafana dashboard runs against it."""

from __future__ import annotations

import base64
import re
import shutil

import httpx
import pytest

from i2v_tools.servers import GatewayServer, TritonServer, free_port
from tests.conftest import API_TOKEN
from tests.observability.servers import PrometheusServer, dashboard_queries, scrape_config, wait_for
from tests.support.media import gradient_png

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("prometheus") is None, reason="Debian's prometheus is not installed")]
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
METRICS_TOKEN = "metrics-token-0123456789"
BOUND_S = 90
# Series that cannot exist in this run: no GPU here, no webhooks sent, no Triton failure caused.
NO_DATA_HERE = ("nv_gpu_", "i2v_webhook_deliveries", "i2v_triton_errors")


def small_video(**overrides) -> dict:
    fields = {"image_base64": base64.b64encode(gradient_png((96, 96))).decode(), "prompt": "a lighthouse",
              "resolution": "256p", "num_frames": 8, "fps": 8, "steps": 2, "seed": 11}
    return {**fields, **overrides}


@pytest.fixture(scope="module")
def metrics_gateway(start_gateway) -> GatewayServer:
    return start_gateway({"I2V_METRICS_PORT": str(free_port()), "I2V_METRICS_TOKEN": METRICS_TOKEN,
                          "I2V_RATE_LIMIT_PER_MINUTE": "0", "I2V_MAX_CONCURRENT_PER_KEY": "0"})


def metrics_port(gateway: GatewayServer) -> int:
    return int(gateway.env["I2V_METRICS_PORT"])


@pytest.fixture(scope="module")
def prometheus(metrics_gateway: GatewayServer, triton: TritonServer, tmp_path_factory) -> PrometheusServer:
    config = scrape_config({"gateway": [f"127.0.0.1:{metrics_port(metrics_gateway)}"],
                            "triton": [f"127.0.0.1:{triton.metrics_port}"]})
    server = PrometheusServer(tmp_path_factory.mktemp("prometheus"), config)
    server.start().wait_ready()
    yield server
    server.stop()


def test_metrics_are_never_public(metrics_gateway: GatewayServer) -> None:
    assert httpx.get(f"{metrics_gateway.url}/metrics").status_code == 401
    assert httpx.get(f"{metrics_gateway.url}/metrics", headers=AUTH).status_code == 401  # an API key is not enough
    answer = httpx.get(f"{metrics_gateway.url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert answer.status_code == 200 and "i2v_http_requests_total" in answer.text
    assert "i2v_jobs{" in httpx.get(f"http://127.0.0.1:{metrics_port(metrics_gateway)}/metrics").text


def test_prometheus_sees_generations_and_every_dashboard_query_runs(
        metrics_gateway: GatewayServer, prometheus: PrometheusServer) -> None:
    with httpx.Client(base_url=metrics_gateway.url, timeout=300) as api:
        first = api.post("/api/v1/generate", json=small_video(), headers=AUTH)
        assert first.status_code == 200, first.text
        again = api.post("/api/v1/generate", json=small_video(), headers=AUTH)  # the same seed: a cache hit
        assert again.status_code == 200, again.text
        assert api.post("/api/v1/generate", json=small_video(), headers={"Authorization": "Bearer wrong"}) \
            .status_code == 401
        job = api.post("/api/v1/jobs", json=small_video(seed=12), headers=AUTH)
        assert job.status_code == 202, job.text
        wait_for(lambda: api.get(f"/api/v1/jobs/{job.json()['job_id']}", headers=AUTH).json()["status"] == "succeeded",
                 BOUND_S, "the job to succeed")

    wait_for(lambda: prometheus.targets_up().keys() >= {"gateway", "triton"}, BOUND_S, "both targets up")
    # The model's own count and the gateway's, as Prometheus stored them.
    assert wait_for(lambda: sum(prometheus.values('nv_inference_request_success{model="i2vgen_xl"}')) >= 1,
                    BOUND_S, "nv_inference_request_success")
    generate_ok = 'sum(i2v_http_requests_total{route="/api/v1/generate",method="POST",status="200"})'
    assert wait_for(lambda: sum(prometheus.values(generate_ok)) >= 2, BOUND_S, "gateway request count")
    assert wait_for(lambda: sum(prometheus.values("sum(i2v_model_denoising_step_seconds_count)")) >= 2,
                    BOUND_S, "the model's step histogram")
    assert sum(prometheus.values('sum(i2v_cache_lookups_total{result="hit"})')) >= 1
    assert wait_for(lambda: sum(prometheus.values('sum(i2v_jobs_ended_total{state="succeeded"})')) >= 1,
                    BOUND_S, "the ended-jobs counter")

    queries = dashboard_queries()
    assert len(queries) >= 15
    for title, expr in queries:
        answer = prometheus.query(expr)
        assert answer["status"] == "success", f"{title}: {expr}: {answer.get('error')}"
    # Where the data exists, each query returns series (rate() needs two scrapes in its window).
    expected = [(title, expr) for title, expr in queries if not re.search("|".join(NO_DATA_HERE), expr)]

    missing: list[str] = []

    def all_have_series() -> bool:
        missing[:] = [f"{title}: {expr}" for title, expr in expected if not prometheus.query(expr)["data"]["result"]]
        return not missing

    try:
        wait_for(all_have_series, BOUND_S, "series for every dashboard query")
    except TimeoutError:
        pytest.fail("dashboard queries without series:\n" + "\n".join(missing))
