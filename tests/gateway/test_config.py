"""Settings: a real token is required, placeholders refused, values from the environment."""

from __future__ import annotations

import subprocess
import sys

import pytest
from pydantic import ValidationError

from gateway.config import Settings
from gateway.generation.outputs import OutputStore
from i2v_tools.servers import REPO_ROOT


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


def test_named_keys_from_the_environment_and_a_file(tmp_path, monkeypatch) -> None:
    keys = tmp_path / "keys"
    keys.write_text("# comment\n\nci = ci-key-0123456789\n")
    monkeypatch.setenv("I2V_API_KEYS", "alice=alice-key-0123,bob=bob-key-01234")
    monkeypatch.setenv("I2V_API_KEYS_FILE", str(keys))
    monkeypatch.setenv("I2V_API_TOKEN", "default-key-0123")
    settings = Settings()
    assert {name: key.get_secret_value() for name, key in settings.api_keys.items()} == {
        "default": "default-key-0123", "alice": "alice-key-0123", "bob": "bob-key-01234", "ci": "ci-key-0123456789"}
    assert "alice-key-0123" not in repr(settings)


@pytest.mark.parametrize("value, message", [("alice", "expected 'name=key'"), ("alice=short", "placeholder")])
def test_bad_named_keys_are_refused(value: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(api_keys=value)


def test_insecure_mode_must_be_explicit() -> None:
    with pytest.raises(ValidationError, match="I2V_API_TOKEN is not set"):
        Settings()
    assert Settings(insecure_no_auth=True).api_keys == {}


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


def test_the_triton_model_defaults_are_the_generation_layers_names() -> None:
    """config.py holds the names as values (it imports nothing from the layers above it); they must
    stay the ones the generation layer and the scripts call, and folders of the model repository."""
    from gateway.generation.triton_inputs import MODEL_NAME, PROGRESS_MODEL_NAME

    defaults = Settings.model_fields
    assert (defaults["triton_model"].default, defaults["triton_progress_model"].default) == (
        MODEL_NAME, PROGRESS_MODEL_NAME)
    for name in (MODEL_NAME, PROGRESS_MODEL_NAME):
        assert (REPO_ROOT / "model_repository" / name / "config.pbtxt").is_file(), name


@pytest.mark.parametrize("variable", ["ip_allowlist", "trusted_proxies"])
def test_a_malformed_cidr_is_a_configuration_error(variable: str) -> None:
    with pytest.raises(ValidationError, match="I2V_IP_ALLOWLIST / I2V_TRUSTED_PROXIES: .*10.0.0.0/33"):
        Settings(insecure_no_auth=True, **{variable: ["127.0.0.1/32", " ", "10.0.0.0/33"]})
    assert Settings(insecure_no_auth=True, **{variable: ["10.0.0.1/8", " "]})  # host bits and blanks pass
