"""All gateway configuration: one typed object read from ``I2V_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
PLACEHOLDER_TOKENS = {"changeme", "change-me", "your-token", "secret", "token", "test"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="I2V_", env_file=None, extra="ignore")

    # --- HTTP ---
    api_host: str = Field("127.0.0.1", description="Address the gateway binds to.")
    api_port: int = Field(8000, description="Gateway port.")
    public_base_url: str | None = Field(
        None, description="Base of video_url (e.g. https://videos.example.com). Unset: taken from the request.")
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated origins allowed by CORS; none by default.")

    # --- auth ---
    api_token: SecretStr | None = Field(None, description="Bearer token callers must present.")
    allow_query_token: bool = Field(True, description="Accept the legacy ?token= query parameter.")
    insecure_no_auth: bool = Field(False, description="Run without a token (development only).")

    # --- Triton ---
    triton_grpc_url: str = Field("127.0.0.1:8011", description="Triton gRPC endpoint (host:port).")
    triton_model: str = Field("i2vgen_xl", description="Model name in the Triton repository.")
    inference_timeout_s: float = Field(600.0, gt=0, description="Deadline for one Triton inference.")

    # --- inputs ---
    max_body_bytes: int = Field(30 * 1024 * 1024, gt=0, description="Largest request body accepted (413 above).")
    max_image_bytes: int = Field(20 * 1024 * 1024, gt=0, description="Largest decoded image file.")
    max_image_pixels: int = Field(40_000_000, gt=0, description="Largest image in pixels (decompression bombs).")
    max_prompt_chars: int = Field(2000, gt=0, description="Longest prompt or negative prompt.")

    # --- outputs ---
    outputs_dir: Path = Field(REPO_ROOT / "outputs", description="Where MP4 files are written and served from.")

    @model_validator(mode="before")
    @classmethod
    def _split_origins(cls, values: dict) -> dict:
        origins = values.get("cors_origins") if isinstance(values, dict) else None
        if isinstance(origins, str):
            values["cors_origins"] = [o.strip() for o in origins.split(",") if o.strip()]
        return values

    @model_validator(mode="after")
    def _require_a_real_token(self) -> Settings:
        token = self.api_token.get_secret_value() if self.api_token else ""
        if not token and not self.insecure_no_auth:
            raise ValueError("I2V_API_TOKEN is not set. Set it to a long random secret "
                             "(or I2V_INSECURE_NO_AUTH=true for local development only).")
        if token and (token.lower() in PLACEHOLDER_TOKENS or len(token) < 8):
            raise ValueError("I2V_API_TOKEN looks like a placeholder; use a long random secret "
                             "(python -c 'import secrets; print(secrets.token_urlsafe(32))').")
        if self.public_base_url:
            self.public_base_url = self.public_base_url.rstrip("/")
        return self
