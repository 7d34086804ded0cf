"""Settings: a real token is required, placeholders refused, values from the environment."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from gateway.config import Settings
from gateway.outputs import OutputStore
from tests.support.servers import REPO_ROOT


def test_values_come_from_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("I2V_API_TOKEN", "a-long-random-token")
    monkeypatch.setenv("I2V_API_PORT", "9123")
    monkeypatch.setenv("I2V_CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("I2V_PUBLIC_BASE_URL", "https://videos.example/")
    settings = Settings()
    assert settings.api_port == 9123
    assert settings.cors_origins == ["https://a.example", "https://b.example"]
    assert settings.public_base_url == "https://videos.example"


@pytest.mark.parametrize("token", ["changeme", "your-token", "short"])
def test_placeholder_tokens_are_refused(token: str) -> None:
    with pytest.raises(ValidationError, match="placeholder"):
        Settings(api_token=token)


def test_insecure_mode_must_be_explicit() -> None:
    with pytest.raises(ValidationError, match="I2V_API_TOKEN is not set"):
        Settings()
    assert Settings(insecure_no_auth=True).api_token is None


def test_the_gateway_refuses_to_start_without_a_token() -> None:
    env = {"PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "gateway"], cwd=REPO_ROOT, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2
    assert "I2V_API_TOKEN is not set" in result.stderr


def test_video_url_uses_the_configured_base(tmp_path) -> None:
    store = OutputStore(tmp_path)
    path = store.new_path()
    assert store.url("https://cdn.example/", path) == f"https://cdn.example/outputs/{path.name}"
    assert len(path.stem) >= 22  # 128 random bits
