"""A gateway for the SDK and CLI tests, and a fresh venv with the client installed from the repository."""

from __future__ import annotations

import base64
import shutil
import subprocess
import venv
from pathlib import Path

import pytest

from i2v_tools import REPO_ROOT
from i2v_tools.servers import GatewayServer
from tests.support.media import image_bytes

WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"sdk-test-webhook-secret-32-bytes").decode()
SDK_ENV = {
    "I2V_RATE_LIMIT_PER_MINUTE": "0", "I2V_MAX_CONCURRENT_PER_KEY": "0", "I2V_CACHE_MAX_BYTES": "0",
    "I2V_WEBHOOK_SECRET": WEBHOOK_SECRET, "I2V_WEBHOOK_ALLOW_PRIVATE": "true",
    # Small enough that a 3 MB image is refused with 413.
    "I2V_MAX_BODY_BYTES": str(2 * 1024 * 1024), "I2V_MAX_IMAGE_BYTES": str(1024 * 1024),
}
SMALL = {"resolution": "256p", "num_frames": 8, "steps": 2}


@pytest.fixture(scope="session")
def sdk_gateway(start_gateway) -> GatewayServer:
    return start_gateway(SDK_ENV)


@pytest.fixture(scope="session")
def limited_gateway(start_gateway) -> GatewayServer:
    """One submission a minute: the second gets 429 with a Retry-After of about a minute."""
    return start_gateway({**SDK_ENV, "I2V_RATE_LIMIT_PER_MINUTE": "1", "I2V_RATE_LIMIT_BURST": "1"})


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    path.write_bytes(image_bytes("purple", (96, 64)))
    return path


@pytest.fixture(scope="session")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A venv with nothing but ``pip install ./client`` (httpx and pydantic come from the index)."""
    env_dir = tmp_path_factory.mktemp("client-venv") / "venv"
    venv.create(env_dir, with_pip=True)
    # A copy of the source: building in place would leave build/ and egg-info in the checkout.
    source = tmp_path_factory.mktemp("client-src") / "client"
    shutil.copytree(REPO_ROOT / "client", source,
                    ignore=shutil.ignore_patterns("node", "build", "*.egg-info", "__pycache__"))
    result = subprocess.run([str(env_dir / "bin" / "pip"), "install", "--quiet", str(source)],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    return env_dir
