"""Real Prometheus and haproxy for the observability tests: own config, own data dir, loopback
ports (never the system services the Debian packages install)."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from i2v_tools import REPO_ROOT
from i2v_tools.servers import ManagedProcess, free_port, http_ok

SCRAPE_CONFIG = REPO_ROOT / "docker" / "prometheus" / "prometheus.yml"
DASHBOARD = REPO_ROOT / "docker" / "grafana" / "dashboards" / "i2v-serving.json"
T = TypeVar("T")


def wait_for(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.5) -> T:
    """Poll ``check`` until it returns something truthy; the last value is in the error."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"no {what} after {timeout:.0f}s (last: {last!r})")


def scrape_config(targets: dict[str, list[str]], interval: str = "1s") -> dict[str, Any]:
    """The project's scrape config with each job's targets replaced and a test-sized interval."""
    config = yaml.safe_load(SCRAPE_CONFIG.read_text())
    config["global"]["scrape_interval"] = config["global"]["evaluation_interval"] = interval
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(targets) == set(jobs), f"the test scrapes {sorted(targets)}, the config has {sorted(jobs)}"
    for name, addresses in targets.items():
        jobs[name]["static_configs"] = [{"targets": addresses}]
    return config


class PrometheusServer(ManagedProcess):
    def __init__(self, work_dir: Path, config: dict[str, Any]) -> None:
        self.port = free_port()
        config_path = work_dir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config))
        super().__init__("prometheus", [
            "prometheus", f"--config.file={config_path}", f"--storage.tsdb.path={work_dir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"], work_dir / "prometheus.log",
            cwd=work_dir)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 60) -> PrometheusServer:
        self.wait_until(lambda: http_ok(f"{self.url}/-/ready"), timeout, "ready Prometheus")
        return self

    def query(self, expr: str) -> dict[str, Any]:
        """The HTTP API's answer to an instant query (status, data or error), whatever the status."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return json.load(response)
        except urllib.error.HTTPError as exc:  # 400/422: a bad expression; the body says why
            return json.load(exc)

    def values(self, expr: str) -> list[float]:
        answer = self.query(expr)
        assert answer["status"] == "success", f"{expr}: {answer}"
        return [float(item["value"][1]) for item in answer["data"]["result"]]

    def targets_up(self) -> dict[str, list[str]]:
        with urllib.request.urlopen(f"{self.url}/api/v1/targets", timeout=10) as response:
            active = json.load(response)["data"]["activeTargets"]
        by_job: dict[str, list[str]] = {}
        for target in active:
            if target["health"] == "up":
                by_job.setdefault(target["labels"]["job"], []).append(target["labels"]["instance"])
        return by_job


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every query of the Grafana dashboard."""
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]
