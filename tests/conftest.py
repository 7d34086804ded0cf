"""Session-wide real servers. Each is started once and its log is shown when a test fails."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import REPO_ROOT, ManagedProcess, TritonServer

sys.path.insert(0, str(REPO_ROOT / "model_repository" / "i2vgen_xl" / "1"))
sys.path.insert(0, str(REPO_ROOT / "scripts"))

TINY_MODEL = REPO_ROOT / "models" / "tiny-i2vgen-xl"
_started: list[ManagedProcess] = []


@pytest.fixture(scope="session")
def tiny_model_path() -> Path:
    from build_model import build_and_save

    build_and_save(TINY_MODEL)
    return TINY_MODEL


@pytest.fixture(scope="session")
def triton(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    server = TritonServer(tmp_path_factory.mktemp("triton-logs"), {"I2V_MODEL_PATH": str(tiny_model_path)})
    _started.append(server)
    server.start().wait_ready()
    yield server
    server.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        for server in _started:
            report.sections.append((f"{server.name} log (tail)", server.log_tail()))
