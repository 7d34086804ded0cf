"""The README's direct-Triton examples need only tritonclient, numpy and Pillow.

They run as a user outside this repository would: from a temporary folder, with a venv that
holds those three packages and nothing of the project, against the session's tritonserver.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from i2v_tools.servers import TritonServer
from tests.support.readme import readme_block

pytestmark = pytest.mark.integration

# What the README names (requirements/gateway.txt pins the same versions for the gateway).
CLIENT_PACKAGES = ["tritonclient[http,grpc]==2.73.0", "numpy==1.26.4", "pillow==13.0.0"]


@pytest.fixture(scope="module")
def client_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with only the client packages (about 20 s from the local package store)."""
    venv = tmp_path_factory.mktemp("triton-client-venv")
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    install = subprocess.run([str(python), "-m", "pip", "install", "-q", *CLIENT_PACKAGES], text=True,
                             capture_output=True, timeout=600)
    assert install.returncode == 0, install.stderr[-3000:]
    print(f"client venv ready in {time.monotonic() - started:.1f}s")
    # Nothing of the project may be importable there, or the test would prove nothing.
    probe = "import importlib.util as u; print([m for m in ('gateway', 'i2v_tools', 'i2v_model') if u.find_spec(m)])"
    found = subprocess.run([str(python), "-c", probe], text=True, capture_output=True, check=True,
                           cwd=venv).stdout.strip()
    assert found == "[]", f"the client venv can import {found}"
    return python


def run_snippet(python: Path, code: str, cwd: Path) -> str:
    # Pasted into `python -` in a folder that is not the checkout.
    result = subprocess.run([str(python), "-"], input=code, text=True, capture_output=True, cwd=cwd, timeout=300)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_http_snippet(client_python: Path, triton: TritonServer, tmp_path: Path) -> None:
    code = readme_block("triton-http")
    assert "localhost:8010" in code
    output = run_snippet(client_python, code.replace("localhost:8010", triton.http_url), tmp_path)
    assert "(8, 256, 320, 3) seed 42" in output


def test_grpc_snippet(client_python: Path, triton: TritonServer, tmp_path: Path) -> None:
    code = readme_block("triton-grpc")
    assert "localhost:8011" in code
    output = run_snippet(client_python, code.replace("localhost:8011", triton.grpc_url), tmp_path)
    assert "(8, 256, 256, 3) seed 7" in output
