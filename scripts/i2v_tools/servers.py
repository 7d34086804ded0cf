"""Start real servers for the integration tests and the benchmarks: free ports, health wait, logs on failure."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from pathlib import Path

from i2v_tools import REPO_ROOT


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mib(pid: int) -> float:
    """Resident memory of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError):
        return False


class ManagedProcess:
    """A server process whose output goes to a log file that tests can show on failure."""

    def __init__(self, name: str, command: list[str], log_path: Path, env: dict[str, str] | None = None,
                 cwd: Path = REPO_ROOT) -> None:
        self.name = name
        self.command = command
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self.cwd = cwd
        self.process: subprocess.Popen | None = None

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        # A new session, so stopping it also stops the children a launcher script started.
        self.process = subprocess.Popen(self.command, cwd=self.cwd, env=self.env, stdout=log,
                                        stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        return self

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_until(self, check: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check():
                return
            if not self.running:
                raise RuntimeError(f"{self.name} exited before {what}:\n{self.log_tail()}")
            time.sleep(0.2)
        raise TimeoutError(f"{self.name}: no {what} after {timeout:.0f}s:\n{self.log_tail()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        if self._signal(sig):
            self._reap(timeout)

    def _signal(self, sig: int) -> bool:
        if self.process is None or self.process.poll() is not None:
            return False
        os.killpg(self.process.pid, sig)
        return True

    def _reap(self, timeout: float) -> None:
        """Wait for the signalled process; SIGKILL it past ``timeout``."""
        assert self.process is not None
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)

    def log_tail(self, lines: int = 60) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return f"(no log at {self.log_path})"
        return "\n".join(text[-lines:])


def stop_all(servers: Iterable[ManagedProcess], timeout: float = 20.0) -> None:
    """SIGTERM to every one first, then wait for each: their shutdowns overlap instead of adding up."""
    signalled = [server for server in servers if server._signal(signal.SIGTERM)]
    for server in signalled:
        server._reap(timeout)


class TritonServer(ManagedProcess):
    """``scripts/start_triton.sh`` in the foreground on free ports.

    ``cwd`` is where it runs: the launcher finds the repository from its own path, so a test can
    start Triton and the gateway in different folders, as on different hosts."""

    def __init__(self, log_dir: Path, env: dict[str, str] | None = None, cwd: Path = REPO_ROOT) -> None:
        self.http_port, self.grpc_port, self.metrics_port = free_port(), free_port(), free_port()
        ports = {
            "TRITON_HTTP_PORT": str(self.http_port),
            "TRITON_GRPC_PORT": str(self.grpc_port),
            "TRITON_METRICS_PORT": str(self.metrics_port),
            "I2V_LOG_DIR": str(log_dir),
        }
        super().__init__("tritonserver", [str(REPO_ROOT / "scripts" / "start_triton.sh")],
                         log_dir / "start_triton.out", {**ports, **(env or {})}, cwd=cwd)
        self.server_log = log_dir / "triton.log"

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def server_pid(self) -> int:
        """The tritonserver process the launcher started (its pid file)."""
        return int((self.server_log.parent / "triton.pid").read_text())

    def stub_pid(self, instance: str = "i2vgen_xl_0_0") -> int:
        """The live Python-backend process (stub) of a model instance."""
        from i2v_tools.stub_watch import stubs

        [pid] = [stub.pid for stub in stubs(self.server_pid) if stub.instance == instance and not stub.dead]
        return pid

    def wait_ready(self, timeout: float = 300) -> TritonServer:
        self.wait_until(lambda: http_ok(f"http://{self.http_url}/v2/models/i2vgen_xl/ready"), timeout,
                        "ready model")
        return self

    def log_tail(self, lines: int = 60) -> str:
        launcher = super().log_tail(lines)
        try:
            server = "\n".join(self.server_log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            server = "(no triton.log)"
        return f"{launcher}\n--- triton.log ---\n{server}"


class GatewayServer(ManagedProcess):
    """``python -m gateway`` on a free port; its outputs, job store and cache under ``log_dir``
    unless ``env`` says otherwise (a restarted gateway passes the same ones). The package is
    installed, so ``cwd`` can be any folder."""

    def __init__(self, log_dir: Path, triton_grpc_url: str, token: str, env: dict[str, str] | None = None,
                 cwd: Path = REPO_ROOT) -> None:
        self.port = free_port()
        self.token = token
        settings = {
            "I2V_API_PORT": str(self.port),
            "I2V_API_TOKEN": token,
            "I2V_TRITON_GRPC_URL": triton_grpc_url,
            "I2V_OUTPUTS_DIR": str(log_dir / "outputs"),
            "I2V_JOBS_DB": str(log_dir / "jobs.sqlite3"),
            "I2V_CACHE_DIR": str(log_dir / "cache"),
        }
        super().__init__("gateway", [str(REPO_ROOT / ".venv" / "bin" / "python"), "-m", "gateway"],
                         log_dir / "gateway.log", {**settings, **(env or {})}, cwd=cwd)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_healthy(self, timeout: float = 60) -> GatewayServer:
        self.wait_until(lambda: http_ok(f"{self.url}/healthz"), timeout, "healthy /healthz")
        return self


class RedisServer(ManagedProcess):
    """A ``redis-server`` on a free port, durable as shipped (docker/redis/redis.conf): an
    append-only file fsynced every second in ``log_dir``/redis-data, so a restart on the same
    port (``start()`` again) finds its data. ``durable=False`` keeps nothing on disk."""

    def __init__(self, log_dir: Path, cwd: Path = REPO_ROOT, durable: bool = True,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.port = free_port()
        self.data_dir = log_dir / "redis-data"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # No RDB snapshots in either case: the append-only file is the durability under test.
        persistence = ["--appendonly", "yes", "--appendfsync", "everysec"] if durable else ["--appendonly", "no"]
        super().__init__("redis-server", ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                                          "--dir", str(self.data_dir), "--save", "", *persistence,
                                          "--databases", "64", *extra_args],
                         log_dir / "redis.log", cwd=cwd)

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def wait_ready(self, timeout: float = 20) -> RedisServer:
        def answers() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    return sock.recv(16).startswith(b"+PONG")
            except OSError:
                return False
        self.wait_until(answers, timeout, "PONG")
        return self

    def wait_appended(self, text: str, timeout: float = 20) -> RedisServer:
        """Wait until the append-only file holds ``text``. Redis appends a write before it answers,
        except while an everysec fsync lags on a busy disk: then it postpones the append (up to
        2 s), and a process killed in that window loses writes it acknowledged."""
        def appended() -> bool:
            return any(text.encode() in path.read_bytes() for path in self.data_dir.rglob("*.aof"))
        self.wait_until(appended, timeout, f"{text!r} in the append-only file")
        return self
