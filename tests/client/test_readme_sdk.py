"""The README's SDK and CLI quick starts run as written: the Python block and the `i2v` block with
the package installed into a fresh venv, the Node block with the built SDK as `@i2v/client`."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from i2v_tools import REPO_ROOT
from i2v_tools.servers import GatewayServer
from tests.support.media import image_bytes, probe_mp4
from tests.support.readme import readme_block

pytestmark = pytest.mark.integration


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "photo.jpg").write_bytes(image_bytes("purple", (400, 300), "JPEG"))
    return tmp_path


def shell_env(gateway: GatewayServer, client_venv: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("I2V_", "PYTHONPATH"))}
    return {**env, "I2V_API_URL": gateway.url, "I2V_API_TOKEN": gateway.token,
            "PATH": f"{client_venv / 'bin'}:{env['PATH']}"}


def test_python_quick_start(sdk_gateway: GatewayServer, client_venv: Path, folder: Path) -> None:
    (folder / "quickstart.py").write_text(readme_block("sdk-python"))
    result = subprocess.run([str(client_venv / "bin" / "python"), "quickstart.py"], cwd=folder,
                            env=shell_env(sdk_gateway, client_venv), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert probe_mp4((folder / "cat.mp4").read_bytes())["frames"] == 8
    assert "succeeded http://" in result.stdout and "404 " in result.stdout


def test_cli_quick_start(sdk_gateway: GatewayServer, client_venv: Path, folder: Path) -> None:
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", readme_block("sdk-cli")], cwd=folder,
                            env=shell_env(sdk_gateway, client_venv), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    for video in ("cat.mp4", "kite.mp4"):
        assert probe_mp4((folder / video).read_bytes())["frames"] == 8
    assert len(list((folder / "kites").glob("*.mp4"))) == 2


@pytest.mark.skipif(shutil.which("npm") is None, reason="npm is not installed")
def test_node_quick_start(sdk_gateway: GatewayServer, client_venv: Path, folder: Path) -> None:
    node_sdk = REPO_ROOT / "client" / "node"
    build = subprocess.run(["npm", "run", "--silent", "build"], cwd=node_sdk, capture_output=True, text=True,
                           timeout=300)
    assert build.returncode == 0, build.stdout + build.stderr
    # What `npm install /path/to/checkout/client/node` makes: a link in node_modules.
    (folder / "node_modules" / "@i2v").mkdir(parents=True)
    (folder / "node_modules" / "@i2v" / "client").symlink_to(node_sdk)
    (folder / "quickstart.mjs").write_text(readme_block("sdk-node"))
    result = subprocess.run(["node", "quickstart.mjs"], cwd=folder, env=shell_env(sdk_gateway, client_venv),
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert probe_mp4((folder / "cat-node.mp4").read_bytes())["frames"] == 8
    assert "succeeded http://" in result.stdout and "404 " in result.stdout
