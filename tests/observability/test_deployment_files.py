"""docker/ and deploy/k8s checked offline: the compose file against the Compose specification's
JSON schema, every rendered Kubernetes overlay against the Kubernetes schemas
(kubernetes-validate), and the properties that matter asserted on the parsed YAML."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from gateway.config import Settings
from i2v_tools import REPO_ROOT

DOCKER = REPO_ROOT / "docker"
K8S = REPO_ROOT / "deploy" / "k8s"
OVERLAYS = sorted(path.name for path in (K8S / "overlays").iterdir() if path.is_dir())
KUBERNETES_VERSION = "1.31.0"
INFERENCE_TIMEOUT_S = 600  # I2V_INFERENCE_TIMEOUT_S's default: the longest generation
TRITON_EXIT_TIMEOUT_S = 630
SHUTDOWN_GRACE_S = Settings.model_fields["shutdown_grace_s"].default  # I2V_SHUTDOWN_GRACE_S unless set


def seconds(text: str) -> int:
    """Compose durations as they are written here ("660s", "11m")."""
    match = re.fullmatch(r"(\d+)([sm])", text)
    assert match, text
    return int(match[1]) * (60 if match[2] == "m" else 1)


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def test_compose_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    schema = json.loads((Path(__file__).parent / "schemas" / "compose-spec.json").read_text())
    jsonschema.Draft7Validator(schema).validate(compose)
    assert set(compose["services"]) == {"triton", "gateway", "redis", "prometheus", "grafana"}
    for service in compose["services"].values():  # every file a service mounts is in the checkout
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (DOCKER / source).exists(), source


def test_compose_triton_has_a_gpu_shared_memory_and_a_readiness_check(compose: dict[str, Any]) -> None:
    triton = compose["services"]["triton"]
    devices = triton["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in device["capabilities"] for device in devices)
    assert re.fullmatch(r"\d+gb", triton["shm_size"]) and int(triton["shm_size"][:-2]) >= 1
    assert "/v2/health/ready" in " ".join(triton["healthcheck"]["test"])


def test_compose_gateway_outlasts_a_generation_and_redis_persists(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert seconds(services["gateway"]["stop_grace_period"]) > INFERENCE_TIMEOUT_S
    # Docker's SIGKILL comes after the gateway's own grace, which outlasts a generation.
    grace = int(services["gateway"]["environment"].get("I2V_SHUTDOWN_GRACE_S", SHUTDOWN_GRACE_S))
    assert seconds(services["gateway"]["stop_grace_period"]) > grace > INFERENCE_TIMEOUT_S
    assert services["gateway"]["depends_on"]["triton"]["condition"] == "service_healthy"
    assert "9100" not in json.dumps(services["gateway"].get("ports", []))  # metrics stay on the compose network
    command = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in command and "--appendfsync everysec" in command
    for name in ("prometheus", "grafana"):
        assert all(port.startswith("127.0.0.1:") for port in services[name]["ports"]), name


@pytest.mark.parametrize("dockerfile", ["Dockerfile.triton", "Dockerfile.gateway"])
def test_images_are_pinned_and_run_as_non_root(dockerfile: str) -> None:
    lines = [line.strip() for line in (DOCKER / dockerfile).read_text().splitlines()]
    bases = [line.split()[1] for line in lines if line.startswith("FROM ")]
    assert bases and all(re.search(r":\d+\.\d+[\w.-]*$", base) for base in bases), bases
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1].split(":")[0] not in ("root", "0"), users


def test_triton_image_is_23_xx_or_newer_for_custom_metrics() -> None:
    base = next(line.split()[1] for line in (DOCKER / "Dockerfile.triton").read_text().splitlines()
                if line.startswith("FROM "))
    match = re.fullmatch(r"nvcr\.io/nvidia/tritonserver:(\d+)\.(\d+)-py3", base)
    assert match and (int(match[1]), int(match[2])) >= (24, 10), base  # Triton 2.51, as tested here


@pytest.mark.skipif(shutil.which("promtool") is None, reason="Debian's prometheus is not installed")
def test_scrape_config_and_dashboard_provisioning() -> None:
    check = subprocess.run(["promtool", "check", "config", str(DOCKER / "prometheus" / "prometheus.yml")],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    datasource = yaml.safe_load((DOCKER / "grafana/provisioning/datasources/prometheus.yml").read_text())
    dashboard = json.loads((DOCKER / "grafana/dashboards/i2v-serving.json").read_text())
    uids = {target["datasource"]["uid"] for panel in dashboard["panels"] for target in panel["targets"]}
    assert uids == {datasource["datasources"][0]["uid"]}


def render(overlay: str) -> list[dict[str, Any]]:
    rendered = subprocess.run(["kubectl", "kustomize", str(K8S / "overlays" / overlay)], capture_output=True,
                              text=True, timeout=60)
    assert rendered.returncode == 0, rendered.stderr
    return [doc for doc in yaml.safe_load_all(rendered.stdout) if doc]


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [doc for doc in docs if doc["kind"] == kind and doc["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def pod_spec(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    return find(docs, kind, name)["spec"]["template"]["spec"]


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    return request.param, render(request.param)


def test_overlays_exist() -> None:
    assert {"cpu-dev", "gpu-prod"} <= set(OVERLAYS)


def test_every_manifest_follows_the_kubernetes_schema(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = overlay
    validated = 0
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
            validated += 1
        except kubernetes_validate.SchemaNotFoundError:
            assert doc["apiVersion"].startswith("keda.sh/"), f"no schema for {doc['kind']}"  # a CRD
    assert validated >= 15


def test_triton_probes_shared_memory_grace_and_cluster_ip(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = overlay
    spec = pod_spec(docs, "Deployment", "triton")
    container = spec["containers"][0]
    assert container["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
    # Both probes also fail on a dead model process, which Triton itself keeps calling ready.
    readiness, liveness = container["readinessProbe"]["exec"]["command"], container["livenessProbe"]["exec"]["command"]
    assert readiness[:3] == liveness[:3] == ["python3", "/opt/i2v/stub_watch.py", "check"]
    assert readiness[-1].endswith("/v2/models/i2vgen_xl/ready") and liveness[-1].endswith("/v2/health/live")
    shm = next(volume for volume in spec["volumes"] if volume["name"] == "dshm")
    assert shm["emptyDir"]["medium"] == "Memory"
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]
    exit_timeout = next(int(arg.split("=")[1]) for arg in container["args"] if arg.startswith("--exit-timeout-secs"))
    assert exit_timeout > INFERENCE_TIMEOUT_S and spec["terminationGracePeriodSeconds"] > exit_timeout
    services = [doc for doc in docs if doc["kind"] == "Service"]
    assert services and all(doc["spec"].get("type", "ClusterIP") == "ClusterIP" for doc in services)


def test_pods_run_as_non_root_and_the_gateway_outlasts_a_generation(
        overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = overlay
    for kind, name in [("Deployment", "triton"), ("Deployment", "gateway"), ("StatefulSet", "redis")]:
        context = pod_spec(docs, kind, name)["securityContext"]
        assert context["runAsNonRoot"] is True and context["runAsUser"] != 0, name
    gateway = pod_spec(docs, "Deployment", "gateway")
    assert gateway["terminationGracePeriodSeconds"] > INFERENCE_TIMEOUT_S
    env = {item["name"]: item.get("value") for item in gateway["containers"][0].get("env", [])}
    grace = int(env.get("I2V_SHUTDOWN_GRACE_S") or SHUTDOWN_GRACE_S)
    assert gateway["terminationGracePeriodSeconds"] > grace > INFERENCE_TIMEOUT_S


def test_ingress_redis_disruption_budgets_policies_and_secrets(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, docs = overlay
    assert "nginx.ingress.kubernetes.io/proxy-body-size" in find(docs, "Ingress", "gateway")["metadata"]["annotations"]
    redis_args = " ".join(pod_spec(docs, "StatefulSet", "redis")["containers"][0]["args"])
    assert "--appendonly yes" in redis_args and find(docs, "StatefulSet", "redis")["spec"]["volumeClaimTemplates"]
    assert {doc["metadata"]["name"] for doc in docs if doc["kind"] == "PodDisruptionBudget"} >= {"gateway", "triton"}
    policies = {doc["metadata"]["name"]: doc["spec"] for doc in docs if doc["kind"] == "NetworkPolicy"}
    assert policies["triton"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "gateway"}
    assert "Egress" not in policies["triton"]["policyTypes"] or not policies["triton"].get("egress")
    outside = [rule for rule in policies["gateway"]["egress"] if any("ipBlock" in peer for peer in rule["to"])]
    assert len(outside) == 1 and "10.0.0.0/8" in outside[0]["to"][0]["ipBlock"]["except"]  # webhooks only
    secret = find(docs, "Secret", "i2v-secrets")
    assert set(secret["stringData"]) >= {"I2V_API_KEYS", "I2V_WEBHOOK_SECRET"}
    assert not any(secret["stringData"].values()), "the Secret is a template: no real values in git"


def test_gpu_overlay_asks_for_gpus_and_scales_on_queue_time() -> None:
    docs = render("gpu-prod")
    container = pod_spec(docs, "Deployment", "triton")["containers"][0]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "--model-config-name=gpu" in container["args"]
    trigger = find(docs, "ScaledObject", "triton")["spec"]["triggers"][0]
    assert trigger["type"] == "prometheus" and "nv_inference_queue_duration_us" in trigger["metadata"]["query"]
    # Seconds (the query divides microseconds by 1e6), and at least a second: videos take seconds.
    assert "/ 1e6" in trigger["metadata"]["query"] and float(trigger["metadata"]["threshold"]) >= 1
    cpu = render("cpu-dev")
    assert "nvidia.com/gpu" not in json.dumps(cpu) and not [doc for doc in cpu if doc["kind"] == "ScaledObject"]


def test_every_metric_is_in_the_deployment_guide() -> None:
    from gateway import metrics

    guide = (REPO_ROOT / "docs" / "DEPLOYMENT.md").read_text()
    exported = [name for name in metrics.names() if not name.startswith("process")]
    missing = [name for name in exported if f"`{name}`" not in guide and f"`{name}_total`" not in guide]
    assert not missing, f"metrics missing from docs/DEPLOYMENT.md: {missing}"


def test_gpu_overlay_also_scales_on_the_work_waiting_in_the_gateway() -> None:
    # Queue wait alone oscillates (scripts/capacity_planner.py, tests/load/test_capacity_planner.py);
    # a second trigger on the jobs queued and running keeps the pods in proportion to the work.
    triggers = find(render("gpu-prod"), "ScaledObject", "triton")["spec"]["triggers"]
    backlog = [t for t in triggers if "i2v_jobs" in t["metadata"]["query"]]
    assert len(backlog) == 1 and backlog[0]["metricType"] == "AverageValue"
    query = backlog[0]["metadata"]["query"]
    # Every replica reports the same Redis store: max, not sum, or the work counts once per replica.
    assert 'max(i2v_jobs{state="queued"' in query and 'max(i2v_jobs{state="running"' in query
    assert float(backlog[0]["metadata"]["threshold"]) > 0
