"""The committed openapi.json is what the gateway exports, the Node SDK builds from it and passes
its tests against the real gateway, and the package installs into a fresh venv."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from i2v_tools import REPO_ROOT
from i2v_tools.servers import GatewayServer
from tests.client.conftest import WEBHOOK_SECRET

NODE_SDK = REPO_ROOT / "client" / "node"


def test_committed_openapi_is_what_the_gateway_exports() -> None:
    result = subprocess.run([sys.executable, "scripts/export_openapi.py", "--check"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr + "\nregenerate it: .venv/bin/python scripts/export_openapi.py"


@pytest.mark.integration
@pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed (scripts/setup.sh --dev says so)")
def test_node_sdk_against_the_gateway(sdk_gateway: GatewayServer, photo: Path) -> None:
    """``npm test`` as a user runs it: its pretest checks the variables and builds, then node --test."""
    assert (NODE_SDK / "node_modules").is_dir(), "run scripts/setup.sh --dev (npm ci in client/node)"
    env = {**os.environ, "I2V_API_URL": sdk_gateway.url, "I2V_API_TOKEN": sdk_gateway.token,
           "I2V_TEST_IMAGE": str(photo), "I2V_WEBHOOK_SECRET": WEBHOOK_SECRET}
    result = subprocess.run(["npm", "test"], cwd=NODE_SDK, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert "# fail 0" in result.stdout


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then let go)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed (scripts/setup.sh --dev says so)")
@pytest.mark.parametrize("case", ["no variables", "no gateway"])
def test_npm_test_without_a_gateway_says_so_in_one_line(case: str, photo: Path) -> None:
    assert (NODE_SDK / "node_modules").is_dir(), "run scripts/setup.sh --dev (npm ci in client/node)"
    env = {key: value for key, value in os.environ.items() if not key.startswith("I2V_")}
    if case == "no gateway":
        env.update({"I2V_API_URL": f"http://127.0.0.1:{closed_port()}", "I2V_API_TOKEN": "a-token-0123456789",
                    "I2V_TEST_IMAGE": str(photo), "I2V_WEBHOOK_SECRET": WEBHOOK_SECRET})
    result = subprocess.run(["npm", "test"], cwd=NODE_SDK, env=env, capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    said = [line for line in output.splitlines() if line.startswith("npm test: ")]
    assert result.returncode != 0 and len(said) == 1, output
    expected = ("I2V_API_TOKEN, I2V_TEST_IMAGE, I2V_WEBHOOK_SECRET (not set)" if case == "no variables"
                else f"no gateway answers at {env.get('I2V_API_URL')}")
    assert expected in said[0] and "scripts/start_app.sh" in said[0], said[0]
    assert "    at " not in output and "# tests" not in output, output  # no stack trace, and no test ran


@pytest.mark.integration
def test_the_package_installs_into_a_fresh_venv(client_venv: Path, sdk_gateway: GatewayServer,
                                                tmp_path: Path) -> None:
    """``pip install ./client`` alone gives the SDK and the ``i2v`` command, outside the checkout."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("I2V_", "PYTHONPATH"))}
    code = "import i2v_client, sys; print(i2v_client.__file__); import torch"
    probe = subprocess.run([str(client_venv / "bin" / "python"), "-c", code], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=60)
    assert "No module named 'torch'" in probe.stderr  # light: none of the server's packages came along
    assert not Path(probe.stdout.strip()).is_relative_to(REPO_ROOT), probe.stdout
    listed = subprocess.run([str(client_venv / "bin" / "i2v"), "--json", "jobs", "list"], cwd=tmp_path,
                            env={**env, "I2V_API_URL": sdk_gateway.url, "I2V_API_TOKEN": sdk_gateway.token},
                            capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0 and '"jobs"' in listed.stdout, listed.stderr
