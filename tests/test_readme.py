"""The README's commands run as written against the real servers.

The direct-Triton examples are in test_triton_snippets.py (they run in a venv of their own).
"""

from __future__ import annotations

import os
import secrets
import shlex
import signal
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from i2v_tools.servers import REPO_ROOT, ManagedProcess, free_port, http_ok
from tests.support.media import image_bytes, probe_mp4
from tests.support.readme import README, readme_block

pytestmark = pytest.mark.integration
TOKEN_FILE = REPO_ROOT / ".api_token"


def test_every_gateway_setting_is_documented() -> None:
    from gateway.config import Settings

    missing = [name for name in Settings.model_fields if f"I2V_{name.upper()}" not in README]
    assert not missing, f"README configuration table lacks: {missing}"


@pytest.fixture
def checkout_token_file() -> Iterator[Path]:
    """The checkout's ``.api_token``, absent at the start and put back as it was afterwards:
    the launcher writes the token it serves with there, and a developer's own must survive."""
    saved = TOKEN_FILE.read_bytes() if TOKEN_FILE.exists() else None
    TOKEN_FILE.unlink(missing_ok=True)
    yield TOKEN_FILE
    if saved is None:
        TOKEN_FILE.unlink(missing_ok=True)
    else:
        TOKEN_FILE.write_bytes(saved)
        TOKEN_FILE.chmod(0o600)


def second_terminal(script: str, cwd: Path, token: str | None = None, strict: bool = True,
                    ) -> subprocess.CompletedProcess:
    """``script`` in a new shell, as typed into another terminal: none of the launcher's
    settings, ``I2V_API_TOKEN`` included, unless ``token`` is given."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("I2V_", "TRITON_"))}
    if token is not None:
        env["I2V_API_TOKEN"] = token
    flags = ["-euo", "pipefail"] if strict else []
    return subprocess.run(["bash", *flags, "-c", script], cwd=cwd, env=env, text=True, capture_output=True,
                          timeout=300)


@pytest.mark.parametrize("token_from", ["I2V_API_TOKEN", "generated"])
def test_start_command_token_and_curl_blocks(token_from: str, checkout_token_file: Path, tmp_path: Path) -> None:
    """scripts/start_app.sh brings the product up with a token from the environment or a new
    one; in a second terminal the README's token line and curl blocks make a video with it;
    a wrong token fails loudly; TERM stops all."""
    api_port = free_port()
    base = f"127.0.0.1:{api_port}"
    env = {"I2V_API_PORT": str(api_port), "TRITON_HTTP_PORT": str(free_port()), "TRITON_GRPC_PORT": str(free_port()),
           "TRITON_METRICS_PORT": str(free_port()), "I2V_LOG_DIR": str(tmp_path / "logs"),
           "I2V_OUTPUTS_DIR": str(tmp_path / "outputs"), "I2V_JOBS_DB": str(tmp_path / "jobs.sqlite3"),
           "I2V_CACHE_DIR": str(tmp_path / "cache")}
    given_token = secrets.token_urlsafe(24)  # random: should it outlive the test, it is no known secret
    app = ManagedProcess("start_app.sh", ["bash", str(REPO_ROOT / "scripts" / "start_app.sh")],
                         tmp_path / "start_app.out", env)
    app.env.pop("I2V_API_TOKEN", None)
    if token_from == "I2V_API_TOKEN":
        app.env["I2V_API_TOKEN"] = given_token
    app.start()
    try:
        app.wait_until(lambda: "Press Ctrl-C" in app.log_path.read_text(), 300, "startup banner")
        banner = app.log_path.read_text()
        assert f"in another terminal:  export I2V_API_TOKEN=$(cat {checkout_token_file})" in banner, banner
        assert stat.S_IMODE(checkout_token_file.stat().st_mode) == 0o600
        served_token = checkout_token_file.read_text().strip()
        if token_from == "I2V_API_TOKEN":
            assert served_token == given_token
            assert "API token    from I2V_API_TOKEN" in banner
        else:
            assert len(served_token) >= 32
            assert "API token    generated" in banner
        assert served_token not in banner

        work = tmp_path / "work"
        work.mkdir()
        (work / "photo.jpg").write_bytes(image_bytes("purple", (400, 300), "JPEG"))
        # The token line runs in the checkout, the rest where the photo is.
        token_line = readme_block("token")
        curl = readme_block("curl").replace("localhost:8000", base)
        jobs = readme_block("jobs-curl").replace("localhost:8000", base)
        result = second_terminal(f"{token_line}cd {shlex.quote(str(work))}\n{curl}{jobs}", cwd=REPO_ROOT)
        assert result.returncode == 0, result.stderr
        assert '"success":true' in result.stdout
        assert probe_mp4((work / "video.mp4").read_bytes())["frames"] == 8
        assert result.stdout.rstrip().splitlines()[-1].startswith(f"succeeded http://{base}/"), result.stdout

        # Pasted with a wrong token into a shell without `set -e`: errors on screen, no video.
        wrong = tmp_path / "wrong"
        wrong.mkdir()
        (wrong / "photo.jpg").write_bytes((work / "photo.jpg").read_bytes())
        result = second_terminal(curl, cwd=wrong, token="not-" + served_token, strict=False)
        assert result.returncode != 0
        assert "401" in result.stderr and "no video: see response.json" in result.stderr, result.stderr
        assert '"success":false' in result.stdout
        assert not (wrong / "video.mp4").exists()
    finally:
        app.stop(signal.SIGTERM)
    assert "stopped" in app.log_path.read_text()
    assert not http_ok(f"http://{base}/healthz")
