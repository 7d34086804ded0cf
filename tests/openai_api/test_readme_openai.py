"""The README's "OpenAI-compatible API" examples run as written: the Python block with the pinned
``openai`` package, the Node block with the ``openai`` npm package (a devDependency of client/node)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from i2v_tools import REPO_ROOT
from i2v_tools.servers import GatewayServer
from tests.openai_api.conftest import ALICE
from tests.support.decoders import ffprobe
from tests.support.media import image_bytes
from tests.support.readme import readme_block

pytestmark = pytest.mark.integration
NODE_OPENAI = REPO_ROOT / "client" / "node" / "node_modules" / "openai"


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "photo.jpg").write_bytes(image_bytes("purple", (400, 300), "JPEG"))
    return tmp_path


def env_for(gateway: GatewayServer) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("I2V_", "OPENAI_"))}
    return {**env, "I2V_API_URL": gateway.url, "I2V_API_TOKEN": ALICE}


def test_python_example(v1_gateway: GatewayServer, folder: Path) -> None:
    (folder / "example.py").write_text(readme_block("openai-python"))
    result = subprocess.run([sys.executable, "-W", "ignore::DeprecationWarning", "example.py"], cwd=folder,
                            env=env_for(v1_gateway), capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "['i2vgen_xl']" in result.stdout and " completed 256x256 1" in result.stdout, result.stdout
    probed = ffprobe(folder / "cat-openai.mp4")
    assert (probed["codec"], probed["width"], probed["frames"]) == ("h264", 256, 8)
    assert (folder / "cat-openai.jpg").read_bytes()[:2] == b"\xff\xd8"


@pytest.mark.skipif(shutil.which("node") is None or not NODE_OPENAI.exists(),
                    reason="node, or client/node's devDependencies (npm ci), missing")
def test_node_example(v1_gateway: GatewayServer, folder: Path) -> None:
    (folder / "node_modules").mkdir()
    (folder / "node_modules" / "openai").symlink_to(NODE_OPENAI)
    (folder / "example.mjs").write_text(readme_block("openai-node"))
    result = subprocess.run(["node", "example.mjs"], cwd=folder, env=env_for(v1_gateway), capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " completed 256x256" in result.stdout, result.stdout
    probed = ffprobe(folder / "kite-openai.mp4")
    assert (probed["codec"], probed["width"], probed["frames"]) == ("h264", 256, 8)
