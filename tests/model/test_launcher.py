"""scripts/start_triton.sh: admin APIs behind a key, never exposed without one."""

from __future__ import annotations

import os
import shutil
import subprocess
import urllib.error
import urllib.request

import pytest

from i2v_tools.servers import REPO_ROOT, TritonServer, free_port

pytestmark = pytest.mark.integration
ADMIN_KEY = "admin-key-for-tests-0123"


def post(url: str, headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, data=b"{}", headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_admin_apis_need_the_key_and_inference_does_not(tiny_model_path, tmp_path) -> None:
    # Started from another folder than the checkout: the launcher finds the repository itself.
    server = TritonServer(tmp_path, {"I2V_MODEL_PATH": str(tiny_model_path), "TRITON_ADMIN_KEY": ADMIN_KEY},
                          cwd=tmp_path)
    server.start().wait_ready()
    try:
        index = f"http://{server.http_url}/v2/repository/index"
        assert post(index) == 403
        assert post(index, {"admin-key": "wrong"}) == 403
        assert post(index, {"admin-key": ADMIN_KEY}) == 200
        with urllib.request.urlopen(f"http://{server.http_url}/v2/models/i2vgen_xl/stats", timeout=10) as stats:
            assert stats.status == 200  # dashboards keep reading statistics
        if shutil.which("nvidia-smi") is None:
            # No GPU: no GPU metrics, so no NVML or DCGM lines that read like failures.
            log = server.server_log.read_text()
            assert "NVML" not in log and "DCGM" not in log, log[-2000:]
    finally:
        server.stop()


def test_binding_beyond_loopback_without_a_key_is_refused(tmp_path) -> None:
    env = {**os.environ, "TRITON_BIND_ADDRESS": "0.0.0.0", "I2V_LOG_DIR": str(tmp_path),
           "TRITON_HTTP_PORT": str(free_port()), "TRITON_GRPC_PORT": str(free_port()),
           "TRITON_METRICS_PORT": str(free_port())}
    env.pop("TRITON_ADMIN_KEY", None)
    result = subprocess.run([str(REPO_ROOT / "scripts" / "start_triton.sh")], env=env, capture_output=True,
                            text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 1
    assert "set TRITON_ADMIN_KEY" in result.stderr
    assert not (tmp_path / "triton.pid").exists()
