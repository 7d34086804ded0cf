"""The installed ``i2v`` console script, run as a subprocess against the real gateway."""

from __future__ import annotations

import json
import os
import pty
import subprocess
from pathlib import Path

import pytest

from i2v_tools import REPO_ROOT
from i2v_tools.servers import GatewayServer, free_port
from tests.support.media import probe_mp4

pytestmark = pytest.mark.integration
I2V = str(REPO_ROOT / ".venv" / "bin" / "i2v")
VIDEO = ["--resolution", "256p", "--frames", "8", "--steps", "2"]


def i2v(gateway: GatewayServer | None, *args: str, cwd: Path | None = None, token: str | None = None
        ) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if not key.startswith("I2V_")}
    if gateway is not None:
        env.update({"I2V_API_URL": gateway.url, "I2V_API_TOKEN": token or gateway.token})
    return subprocess.run([I2V, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def assert_readable_error(result: subprocess.CompletedProcess, code: int, text: str) -> None:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert result.stderr.startswith("i2v: error:") and text in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_generate_saves_the_video_without_a_progress_bar_when_piped(sdk_gateway: GatewayServer, photo: Path,
                                                                    tmp_path: Path) -> None:
    result = i2v(sdk_gateway, "generate", str(photo), "--prompt", "a kite", *VIDEO, "--seed", "2",
                 "-o", str(tmp_path / "out.mp4"))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no bar, no carriage returns in a log
    assert "succeeded" in result.stdout and "seed 2" in result.stdout
    assert probe_mp4((tmp_path / "out.mp4").read_bytes())["frames"] == 8
    # A free size instead of a resolution.
    wide = i2v(sdk_gateway, "generate", str(photo), "--prompt", "a kite", "--width", "96", "--height", "64",
               "--frames", "8", "--steps", "2", "-o", str(tmp_path / "wide.mp4"))
    assert wide.returncode == 0, wide.stderr
    shown = probe_mp4((tmp_path / "wide.mp4").read_bytes())
    assert (shown["width"], shown["height"]) == (96, 64)


def test_a_terminal_gets_a_progress_bar(sdk_gateway: GatewayServer, photo: Path) -> None:
    controller, terminal = pty.openpty()
    env = {**os.environ, "I2V_API_URL": sdk_gateway.url, "I2V_API_TOKEN": sdk_gateway.token}
    process = subprocess.Popen([I2V, "generate", str(photo), "--prompt", "bar", *VIDEO, "--steps", "4"],
                               env=env, stdout=subprocess.PIPE, stderr=terminal, text=True)
    os.close(terminal)
    seen = b""
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # EIO: the command closed the terminal
            break
        if not chunk:
            break
        seen += chunk
    os.close(controller)
    assert process.wait(timeout=300) == 0
    assert b"running" in seen and b"4/4" in seen and b"#" in seen, seen


def test_jobs_commands_with_json(sdk_gateway: GatewayServer, photo: Path, tmp_path: Path) -> None:
    submitted = i2v(sdk_gateway, "--json", "jobs", "submit", str(photo), "--prompt", "a kite", *VIDEO)
    assert submitted.returncode == 0, submitted.stderr
    job_id = json.loads(submitted.stdout)["job_id"]
    waited = i2v(sdk_gateway, "jobs", "wait", job_id, "--json", "-o", str(tmp_path / "job.mp4"))
    assert waited.returncode == 0, waited.stderr
    assert json.loads(waited.stdout)["status"] == "succeeded" and (tmp_path / "job.mp4").exists()
    got = json.loads(i2v(sdk_gateway, "--json", "jobs", "get", job_id).stdout)
    assert got["result"]["video_url"]
    listed = json.loads(i2v(sdk_gateway, "--json", "jobs", "list", "--limit", "50").stdout)
    assert job_id in [job["job_id"] for job in listed["jobs"]]
    assert job_id in i2v(sdk_gateway, "jobs", "list").stdout

    long = i2v(sdk_gateway, "jobs", "submit", str(photo), "--prompt", "long", *VIDEO, "--steps", "150")
    long_id = long.stdout.split()[0]
    assert i2v(sdk_gateway, "jobs", "cancel", long_id).returncode == 0
    cancelled = i2v(sdk_gateway, "jobs", "wait", long_id)
    assert cancelled.returncode == 1 and "cancelled" in cancelled.stdout


def test_batch_from_json_lines(sdk_gateway: GatewayServer, photo: Path, tmp_path: Path) -> None:
    lines = [{"prompt": "one", "image": photo.name}, {"prompt": "two", "image": photo.name, "num_frames": 999}]
    (tmp_path / "batch.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    result = i2v(sdk_gateway, "--json", "batch", str(tmp_path / "batch.jsonl"), *VIDEO, "--wait",
                 "--output-dir", str(tmp_path / "videos"))
    assert result.returncode == 1, result.stderr  # one item was rejected
    answer = json.loads(result.stdout)
    assert (answer["accepted"], answer["rejected"]) == (1, 1)
    assert answer["items"][0]["job"]["status"] == "succeeded" and answer["items"][1]["error"]["status"] == 422
    assert len(list((tmp_path / "videos").glob("0-*.mp4"))) == 1


def test_exit_codes_and_readable_errors(sdk_gateway: GatewayServer, photo: Path) -> None:
    assert_readable_error(i2v(sdk_gateway, "jobs", "list", token="wrong-token-0123456789"), 3, "401")
    assert_readable_error(i2v(sdk_gateway, "jobs", "get", "no-such-job"), 4, "404")
    assert_readable_error(i2v(sdk_gateway, "generate", str(photo), "--prompt", "x", "--frames", "999"), 2,
                          "num_frames")
    assert_readable_error(i2v(sdk_gateway, "generate", "missing.jpg", "--prompt", "x"), 2, "missing.jpg")
    assert i2v(sdk_gateway, "generate").returncode == 2  # argparse's usage error
    dead = subprocess.run([I2V, "--url", f"http://127.0.0.1:{free_port()}", "--retries", "0", "jobs", "list"],
                          capture_output=True, text=True, timeout=60)
    assert_readable_error(dead, 6, "cannot reach")

def test_rate_limited_after_retries_exits_5(limited_gateway: GatewayServer, photo: Path) -> None:
    # The second submission within the minute gets 429 with a Retry-After beyond what i2v waits.
    i2v(limited_gateway, "jobs", "submit", str(photo), "--prompt", "first", *VIDEO)
    assert_readable_error(i2v(limited_gateway, "jobs", "submit", str(photo), "--prompt", "second", *VIDEO),
                          5, "429")

def test_help_documents_the_exit_codes() -> None:
    result = subprocess.run([I2V, "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    for line in ("0  success", "1  the job failed", "2  usage", "3  authentication", "4  not found",
                 "5  busy or unavailable", "6  the gateway cannot be reached"):
        assert line in result.stdout
