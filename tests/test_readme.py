"""The README's code runs as written against the real servers."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from i2v_tools.servers import REPO_ROOT, TritonServer

pytestmark = pytest.mark.integration
README = (REPO_ROOT / "README.md").read_text()


def readme_block(name: str) -> str:
    match = re.search(rf"<!-- readme-test: {name} -->\n```(?:python|bash)\n(.*?)```", README, re.S)
    assert match, f"README has no block marked readme-test: {name}"
    return match.group(1)


def run_python(code: str) -> str:
    # stdin, from the repository root: as a user pasting into `python` there.
    result = subprocess.run([sys.executable, "-"], input=code, text=True, capture_output=True, cwd=REPO_ROOT,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_triton_http_example(triton: TritonServer) -> None:
    code = readme_block("triton-http").replace("localhost:8010", triton.http_url)
    assert "(8, 256, 320, 3) seed 42" in run_python(code)


def test_triton_grpc_example(triton: TritonServer) -> None:
    code = readme_block("triton-grpc").replace("localhost:8011", triton.grpc_url)
    assert "(8, 256, 256, 3)" in run_python(code)


def test_every_gateway_setting_is_documented() -> None:
    from gateway.config import Settings

    missing = [name for name in Settings.model_fields if f"I2V_{name.upper()}" not in README]
    assert not missing, f"README configuration table lacks: {missing}"


def test_start_command_and_curl_example(tmp_path) -> None:
    """scripts/start_app.sh brings the product up; the README's curl makes a video; TERM stops all."""
    import os
    import signal

    from i2v_tools.servers import ManagedProcess, free_port, http_ok
    from tests.support.media import image_bytes, probe_mp4

    api_port = free_port()
    env = {"I2V_API_PORT": str(api_port), "TRITON_HTTP_PORT": str(free_port()), "TRITON_GRPC_PORT": str(free_port()),
           "TRITON_METRICS_PORT": str(free_port()), "I2V_LOG_DIR": str(tmp_path / "logs"),
           "I2V_API_TOKEN": "readme-token-0123456789", "I2V_OUTPUTS_DIR": str(tmp_path / "outputs"),
           "I2V_JOBS_DB": str(tmp_path / "jobs.sqlite3"), "I2V_CACHE_DIR": str(tmp_path / "cache")}
    app = ManagedProcess("start_app.sh", ["bash", str(REPO_ROOT / "scripts" / "start_app.sh")],
                         tmp_path / "start_app.out", env).start()
    try:
        app.wait_until(lambda: "Press Ctrl-C" in app.log_path.read_text(), 300, "startup banner")
        assert http_ok(f"http://127.0.0.1:{api_port}/readyz")
        (tmp_path / "photo.jpg").write_bytes(image_bytes("purple", (400, 300), "JPEG"))
        script = readme_block("curl").replace("localhost:8000", f"127.0.0.1:{api_port}")
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, text=True,
                                capture_output=True, timeout=300, env={**os.environ, **env})
        assert result.returncode == 0, result.stderr
        assert '"success":true' in result.stdout
        assert probe_mp4((tmp_path / "video.mp4").read_bytes())["frames"] == 8
        jobs = readme_block("jobs-curl").replace("localhost:8000", f"127.0.0.1:{api_port}")
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", jobs], cwd=tmp_path, text=True,
                                capture_output=True, timeout=300, env={**os.environ, **env})
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("succeeded http://127.0.0.1:"), result.stdout
    finally:
        app.stop(signal.SIGTERM)
    assert "stopped" in app.log_path.read_text()
    assert not http_ok(f"http://127.0.0.1:{api_port}/healthz")
