"""The clients under faults, against real gateways: a wait that outlives a gateway restart (Python
sync, async, the CLI, Node), every network failure as an SDK error, per-call timeouts and retries,
the 413 seen once, the CLI's job id on every failure after acceptance, and a client that goes
away counted as 499, not as a server error.

Bounded: one gateway of this module (restarted in place on its port, with its SQLite file), tiny
256p jobs of a few steps."""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from i2v_client import (
    APIConnectionError,
    APITimeoutError,
    AsyncClient,
    Client,
    ConfigurationError,
    I2VError,
    JobResponse,
    PayloadTooLarge,
    Progress,
    RateLimited,
    WaitTimeoutError,
)
from i2v_tools import REPO_ROOT
from i2v_tools.servers import GatewayServer, TritonServer, free_port
from tests.client.conftest import SDK_ENV, SMALL
from tests.client.test_cli import I2V, VIDEO
from tests.support.media import probe_mp4

pytestmark = pytest.mark.integration
METRICS_TOKEN = "faults-metrics-token-0123456789"
# Enough that the gateway is stopped while the job still runs (it then runs again from step 1).
RESTART_STEPS = 8
NODE_SDK = REPO_ROOT / "client" / "node"
UNCLEAN_STOP = ("ASGI callable returned without completing response", "Exception in ASGI application")


@pytest.fixture(scope="module")
def gateway(start_gateway) -> GatewayServer:
    """Restarted in place by the tests (same port, same job store file). Submissions are limited
    to one each 2 s (a 429 with a Retry-After of at most 2 s, which the clients wait out)."""
    return start_gateway({**SDK_ENV, "I2V_METRICS_TOKEN": METRICS_TOKEN,
                          "I2V_RATE_LIMIT_PER_MINUTE": "30", "I2V_RATE_LIMIT_BURST": "1"})


def restart(gateway: GatewayServer) -> None:
    """SIGTERM (a graceful stop: running jobs go back to the queue), then start again on the port."""
    gateway.stop()
    gateway.start().wait_healthy(timeout=120)


def assert_resumed_without_repeats(steps: list[int | None]) -> None:
    """The job ran again after the restart (a second step 1), and each run's steps came once, in
    order: a resumed stream replays nothing and skips nothing."""
    numbered = [step for step in steps if step is not None]
    assert numbered.count(1) >= 2, f"the job was not cut by the restart: {numbered}"
    last_run = numbered[len(numbered) - 1 - numbered[::-1].index(1):]
    assert last_run == list(range(1, RESTART_STEPS + 1)), numbered
    for earlier, later in zip(numbered, numbered[1:], strict=False):
        assert later == earlier + 1 or later == 1, f"a step repeated or went missing: {numbered}"


def assert_stopped_cleanly(gateway: GatewayServer) -> None:
    log = gateway.log_path.read_text(errors="replace")
    assert not [line for line in log.splitlines() if any(text in line for text in UNCLEAN_STOP)], log[-3000:]


def i2v_env(gateway: GatewayServer) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("I2V_")}
    return {**env, "I2V_API_URL": gateway.url, "I2V_API_TOKEN": gateway.token}


def auth(gateway: GatewayServer) -> dict[str, str]:
    return {"Authorization": f"Bearer {gateway.token}"}


def newest_job(gateway: GatewayServer, ready: Callable[[dict], bool], timeout: float = 120) -> dict:
    """The newest job once ``ready`` says so."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = httpx.get(f"{gateway.url}/api/v1/jobs", params={"limit": 1}, headers=auth(gateway),
                         timeout=10).json()["jobs"]
        if jobs and ready(jobs[0]):
            return jobs[0]
        time.sleep(0.1)
    raise AssertionError("no such job")


def has_run_a_step(job: dict) -> bool:
    return job["status"] == "running" and bool((job.get("progress") or {}).get("step"))


def node_sdk(*args: str, env: dict[str, str]) -> subprocess.Popen:
    """tests/client/node_sdk_driver.mjs over the built Node SDK, printing JSON lines."""
    return subprocess.Popen(["node", str(Path(__file__).with_name("node_sdk_driver.mjs")), *args],
                            env={**env, "I2V_NODE_SDK": str(NODE_SDK / "dist" / "index.js")},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def node_built() -> None:
    if shutil.which("npm") is None or not (NODE_SDK / "node_modules").is_dir():
        pytest.skip("no Node SDK build tools (scripts/setup.sh --dev)")
    build = subprocess.run(["npm", "run", "--silent", "build"], cwd=NODE_SDK, capture_output=True, text=True,
                           timeout=300)
    assert build.returncode == 0, build.stdout + build.stderr


def test_every_client_waits_through_a_gateway_restart(gateway: GatewayServer, node_built: None, photo: Path,
                                                      tmp_path: Path) -> None:
    """One job, followed at once by ``i2v generate`` (which submitted it), the sync and the async
    Python clients and the Node client; the gateway is stopped (SIGTERM: the running job goes back
    to the queue) and started again on its port while the job runs. Every wait ends with the
    video, each having seen every step of the final run once, and nothing replayed."""
    output = tmp_path / "cli.mp4"
    known = {job["job_id"] for job in httpx.get(f"{gateway.url}/api/v1/jobs", params={"limit": 100},
                                                headers=auth(gateway), timeout=10).json()["jobs"]}
    cli = subprocess.Popen([I2V, "generate", str(photo), "--prompt", "restart", *VIDEO, "--steps", str(RESTART_STEPS),
                            "-o", str(output)], env=i2v_env(gateway), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    try:
        job_id = newest_job(gateway, lambda job: job["job_id"] not in known)["job_id"]
        seen: dict[str, list[Progress]] = {"sync": [], "async": []}
        ended: dict[str, JobResponse] = {}

        def sync_wait() -> None:
            with Client(gateway.url, gateway.token) as client:
                ended["sync"] = client.wait(job_id, progress=seen["sync"].append, timeout=300)

        async def async_wait() -> None:
            async with AsyncClient(gateway.url, gateway.token) as client:
                ended["async"] = await client.wait(job_id, progress=seen["async"].append, timeout=300)

        waiters = [threading.Thread(target=sync_wait), threading.Thread(target=asyncio.run, args=(async_wait(),))]
        for waiter in waiters:
            waiter.start()
        node = node_sdk("wait", job_id, env={**i2v_env(gateway), "I2V_OUTPUT": str(tmp_path / "node.mp4")})
        assert node.stdout is not None
        node_lines = [json.loads(node.stdout.readline())]  # its first event: it follows the stream
        newest_job(gateway, has_run_a_step)
        restart(gateway)

        node_lines += [json.loads(line) for line in node.stdout]
        assert node.wait(timeout=300) == 0, node_lines
        for waiter in waiters:
            waiter.join(timeout=300)
        cli_out, cli_err = cli.communicate(timeout=300)
    finally:
        cli.kill()
    assert cli.returncode == 0 and f"{job_id} succeeded" in cli_out, (cli_out, cli_err)
    assert probe_mp4(output.read_bytes())["frames"] == 8
    assert {name: job.status.value for name, job in ended.items()} == {"sync": "succeeded", "async": "succeeded"}
    assert node_lines[-1] == {"status": "succeeded", "bytes": (tmp_path / "node.mp4").stat().st_size}
    for progress in (*seen.values(),):
        assert_resumed_without_repeats([p.step for p in progress])
    assert_resumed_without_repeats([line["progress"].get("step") for line in node_lines if "progress" in line])
    assert_stopped_cleanly(gateway)


def test_generate_is_retried_after_a_rate_limit_429(gateway: GatewayServer, photo: Path) -> None:
    """A generate right after a submission meets a 429 (nothing ran): with no retries the caller
    gets it; by default it is sent again after its Retry-After and succeeds."""
    sent: list[str] = []
    http = httpx.Client(event_hooks={"request": [lambda request: sent.append(request.url.path)]})
    with Client(gateway.url, gateway.token, http=http) as client:
        client.submit(photo, "takes the budget", **{**SMALL, "steps": 1})
        with pytest.raises(RateLimited) as refused:
            client.generate(photo, "refused", max_retries=0, **{**SMALL, "steps": 1})
        assert refused.value.retry_after is not None and refused.value.retry_after <= 2
        sent.clear()
        assert client.generate(photo, "retried", **{**SMALL, "steps": 1}).success
    assert sent == ["/api/v1/generate"] * 2, sent  # refused once, then sent again after its Retry-After


def test_node_generate_is_retried_after_a_rate_limit_429(gateway: GatewayServer, node_built: None,
                                                         photo: Path) -> None:
    node = node_sdk("retry", env={**i2v_env(gateway), "I2V_TEST_IMAGE": str(photo)})
    stdout, stderr = node.communicate(timeout=300)
    assert node.returncode == 0, stdout + stderr
    assert json.loads(stdout.splitlines()[-1]) == {"refused": 429, "succeeded": True, "sent": 2}


def test_an_oversized_body_is_one_413(gateway: GatewayServer) -> None:
    """The gateway reads and drops the refused body, so a client that uploads it whole reads the
    413 (not a reset connection it would retry); the client then refuses the next one itself."""
    # 24 MB of base64, 12x the gateway's limit: more than socket buffers hold, so before the fix
    # the async client saw its upload cut (an empty ReadError) and sent it four times.
    too_large = os.urandom(18 * 1024 * 1024)

    async def scenario() -> list[str]:
        sent: list[str] = []

        async def count(request: httpx.Request) -> None:
            sent.append(request.url.path)

        http = httpx.AsyncClient(event_hooks={"request": [count]}, timeout=60)
        async with AsyncClient(gateway.url, gateway.token, http=http) as client:
            for _ in range(2):
                with pytest.raises(PayloadTooLarge, match="larger than"):
                    await client.submit(too_large, "too large", **SMALL)
        return sent

    assert asyncio.run(scenario()) == ["/api/v1/jobs"]
    with Client(gateway.url, gateway.token, max_body_bytes=1024) as client, \
            pytest.raises(PayloadTooLarge, match="before sending"):
        client.generate(b"x" * 2048, "known limit")


@pytest.mark.parametrize("flavour", ["sync", "async"])
def test_network_failures_are_sdk_errors(gateway: GatewayServer, flavour: str) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    cases = [(closed, APIConnectionError, httpx.ConnectError),
             ("http://no-such-host.invalid", APIConnectionError, httpx.ConnectError),
             (f"https://127.0.0.1:{gateway.port}", APIConnectionError, httpx.ConnectError)]  # TLS to plain HTTP

    async def call(url: str) -> None:
        async with AsyncClient(url, "t") as client:
            await client.list_jobs(max_retries=0)

    for url, kind, cause in cases:
        with pytest.raises(kind) as raised:
            if flavour == "sync":
                with Client(url, "t") as client:
                    client.list_jobs(max_retries=0)
            else:
                asyncio.run(call(url))
        assert isinstance(raised.value, I2VError) and raised.value.status is None
        assert isinstance(raised.value.__cause__, cause), (url, repr(raised.value.__cause__))


def test_bad_settings_fail_at_once() -> None:
    for url, text in (("http://127.0.0.1:22l00", "not a URL"), ("ftp://example.com", "http:// or https://"),
                      ("127.0.0.1:8000", "http:// or https://")):
        with pytest.raises(ConfigurationError, match=text):
            Client(url, "t")
        with pytest.raises(ConfigurationError, match=text):
            AsyncClient(url, "t")
    with pytest.raises(ConfigurationError, match="line break"):
        Client("http://127.0.0.1:8000", "token\n")


def test_per_call_timeout_and_wait_timeout(gateway: GatewayServer, triton: TritonServer, photo: Path) -> None:
    """A generate past its own timeout is an APITimeoutError; the gateway sees the client go and
    logs a 499 at INFO (no 5xx, no traceback), counts it apart, and cancels the Triton request."""
    cancelled = re.compile(r"cancelled after (\d+) of 137 denoising steps")
    before = len(cancelled.findall(triton.server_log.read_text()))
    with Client(gateway.url, gateway.token) as client:
        started = time.monotonic()
        with pytest.raises(APITimeoutError) as timed_out:
            client.generate(photo, "too slow", timeout=2, **{**SMALL, "steps": 137})
        assert time.monotonic() - started < 30 and isinstance(timed_out.value.__cause__, httpx.ReadTimeout)
        job = client.submit(photo, "waited for too briefly", **{**SMALL, "steps": 60})
        with pytest.raises(WaitTimeoutError) as waited:
            client.wait(job, timeout=0.5)
        assert isinstance(waited.value, TimeoutError) and waited.value.job_id == job.job_id
        client.cancel(job)
    deadline = time.monotonic() + 30
    while len(cancelled.findall(triton.server_log.read_text())) == before and time.monotonic() < deadline:
        time.sleep(0.25)
    assert len(cancelled.findall(triton.server_log.read_text())) > before, "the model never saw the cancellation"
    log = gateway.log_path.read_text(errors="replace").splitlines()
    closed = [line for line in log if "POST /api/v1/generate 499" in line]
    assert closed and " INFO " in closed[-1], log[-20:]
    assert not [line for line in log if "client disconnected" in line or "Exception in ASGI" in line], log[-40:]
    metrics = httpx.get(f"{gateway.url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
    counted = {line.split("} ")[0]: float(line.split("} ")[1]) for line in metrics.splitlines()
               if line.startswith("i2v_http_requests_total{") and 'route="/api/v1/generate"' in line}
    assert sum(value for labels, value in counted.items() if 'status="499"' in labels) >= 1, counted
    assert not [labels for labels in counted if 'status="5' in labels], counted  # not a server error


def cli(gateway: GatewayServer, *args: str, url: str | None = None) -> subprocess.CompletedProcess:
    env = i2v_env(gateway)
    if url:
        env["I2V_API_URL"] = url
    return subprocess.run([I2V, *args], env=env, capture_output=True, text=True, timeout=300)


def test_cli_failures_are_one_line_with_their_exit_code(gateway: GatewayServer) -> None:
    for url, code, text in (("http://127.0.0.1:22l00", 2, "not a URL"), ("ftp://x", 2, "http://"),
                            (f"http://127.0.0.1:{free_port()}", 6, "cannot reach")):
        result = cli(gateway, "--retries", "0", "jobs", "list", url=url)
        assert result.returncode == code, (url, result.stderr)
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("i2v: error:") and text in result.stderr
    token = subprocess.run([I2V, "jobs", "list"], capture_output=True, text=True, timeout=60,
                           env={**i2v_env(gateway), "I2V_API_TOKEN": "token\n"})
    assert token.returncode == 2 and "line break" in token.stderr and "Traceback" not in token.stderr


def test_cli_names_the_job_on_every_failure_after_acceptance(gateway: GatewayServer, photo: Path,
                                                             tmp_path: Path) -> None:
    # The video succeeded but cannot be saved: the job id, its URL and the command that saves it.
    unwritable = tmp_path / "missing-dir" / "out.mp4"
    saved = cli(gateway, "generate", str(photo), "--prompt", "unsaved", *VIDEO, "-o", str(unwritable))
    assert saved.returncode == 2 and saved.stderr.count("\n") == 1, saved.stderr
    job_id = re.search(r"job (\w+) succeeded", saved.stderr).group(1)  # type: ignore[union-attr]
    assert f"i2v jobs wait {job_id} -o {unwritable}" in saved.stderr
    assert cli(gateway, "jobs", "wait", job_id, "-o", str(tmp_path / "saved.mp4")).returncode == 0

    # The wait outlasts --wait-timeout: the job goes on, and the line says how to follow or cancel it.
    timed = cli(gateway, "generate", str(photo), "--prompt", "timed", *VIDEO, "--steps", "80", "--wait-timeout", "1")
    assert timed.returncode == 6 and "Traceback" not in timed.stderr, timed.stderr
    job_id = re.search(r"i2v jobs cancel (\w+)", timed.stderr).group(1)  # type: ignore[union-attr]
    assert f"i2v jobs wait {job_id} -o VIDEO.mp4" in timed.stderr
    assert cli(gateway, "jobs", "cancel", job_id).returncode == 0

    # Ctrl-C leaves the job running and says so; --cancel-on-interrupt cancels it.
    for flags, expected in (([], "goes on at the gateway"), (["--cancel-on-interrupt"], "cancelled")):
        process = subprocess.Popen([I2V, "generate", str(photo), "--prompt", "interrupted", *VIDEO, "--steps", "150",
                                    *flags], env=i2v_env(gateway), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
        running = newest_job(gateway, has_run_a_step)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 130 and expected in stderr and running["job_id"] in stderr, stderr
        assert "Traceback" not in stderr and stderr.count("\n") == 1
        with Client(gateway.url, gateway.token) as client:
            status = client.get(running["job_id"]).status.value
            assert status in (("cancelled", "cancelling") if flags else ("running", "queued")), status
            if not flags:
                client.cancel(running["job_id"])
