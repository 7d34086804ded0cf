"""Session-wide real servers. Each is started once and its log is shown when a test fails."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from i2v_tools.servers import GatewayServer, ManagedProcess, RedisServer, TritonServer, stop_all
from i2v_tools.tiny_model import TINY_MODEL, build_and_save

API_TOKEN = "test-token-0123456789"
_started: list[ManagedProcess] = []


@pytest.fixture(scope="session")
def tiny_model_path() -> Path:
    build_and_save(TINY_MODEL)
    return TINY_MODEL


@pytest.fixture(scope="session")
def triton(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    # Each server runs in a folder of its own, as on separate hosts: nothing may rely on a shared cwd.
    log_dir = tmp_path_factory.mktemp("triton-logs")
    server = TritonServer(log_dir, {"I2V_MODEL_PATH": str(tiny_model_path)}, cwd=log_dir)
    _started.append(server)
    server.start().wait_ready()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def _spare_triton_process(tiny_model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    server = TritonServer(tmp_path_factory.mktemp("spare-triton"), {"I2V_MODEL_PATH": str(tiny_model_path)})
    _started.append(server)
    yield server
    server.stop()


@pytest.fixture
def spare_triton(_spare_triton_process: TritonServer) -> TritonServer:
    """A second tritonserver for the tests that kill and restart one (killing the session's would
    break the tests that share it); started once, and again for the next test if one left it dead."""
    server = _spare_triton_process
    if server.running:
        try:
            server.wait_ready(timeout=120)  # a test may have ended during a restart
        except TimeoutError:
            server.kill()
    if not server.running:
        server.start().wait_ready()
    return server


@pytest.fixture(scope="session")
def start_gateway(triton: TritonServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """Start a gateway with extra ``I2V_*`` settings; all are stopped at the end of the session."""
    gateways: list[GatewayServer] = []

    def start(env: dict[str, str] | None = None, triton_grpc_url: str | None = None) -> GatewayServer:
        log_dir = tmp_path_factory.mktemp("gateway")
        # API-only unless a test asks for the web UI: loading Gradio is most of a gateway's start
        # (3.5 of 5 s of CPU), and the suite starts dozens. The session's default gateway has it.
        env = {"I2V_UI_ENABLED": "false", **(env or {})}
        server = GatewayServer(log_dir, triton_grpc_url or triton.grpc_url, API_TOKEN, env, cwd=log_dir)
        gateways.append(server)
        _started.append(server)
        return server.start().wait_healthy()

    yield start
    stop_all(gateways)


@pytest.fixture(scope="session")
def gateway(start_gateway) -> GatewayServer:
    """The default gateway (web UI included), with small input limits so the limit tests stay light."""
    return start_gateway({"I2V_UI_ENABLED": "true",
                          "I2V_MAX_BODY_BYTES": str(4 * 1024 * 1024), "I2V_MAX_IMAGE_BYTES": str(2 * 1024 * 1024),
                          "I2V_MAX_IMAGE_PIXELS": str(12_000_000),
                          "I2V_INFERENCE_TIMEOUT_S": "1500",
                          # These tests send bursts on purpose; test_limits.py covers the limits.
                          "I2V_RATE_LIMIT_PER_MINUTE": "0", "I2V_MAX_CONCURRENT_PER_KEY": "0",
                          # Repeated seeds here check the model's determinism, not the cache
                          # (tests/jobs covers the cache).
                          "I2V_CACHE_MAX_BYTES": "0"})


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    _started.append(server)
    server.start().wait_ready()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def new_redis_url(redis_server: RedisServer) -> Callable[[], str]:
    """Each call gives a Redis URL on a database no other test has used."""
    databases = iter(range(1, 64))
    return lambda: redis_server.url(next(databases))


LOG_TAIL_LINES = 25
_FIRST_STARTED = pytest.StashKey[int]()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    item.stash[_FIRST_STARTED] = len(_started)


def _servers_of(item: pytest.Item) -> list[ManagedProcess]:
    """The servers a test used (its fixtures) or started: their logs explain its failure, the
    other twenty gateways of the session do not."""
    funcargs = getattr(item, "funcargs", {})
    used = [value for value in funcargs.values() if isinstance(value, ManagedProcess)]
    started = _started[item.stash.get(_FIRST_STARTED, len(_started)):]
    return list(dict.fromkeys([*used, *started]))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        # After the assertion (pytest prints sections below the traceback), and trimmed.
        for server in _servers_of(item):
            report.sections.append((f"{server.name} log (last {LOG_TAIL_LINES} lines)",
                                    server.log_tail(LOG_TAIL_LINES)))
