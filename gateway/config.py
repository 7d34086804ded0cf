"""All gateway configuration: one typed object read from ``I2V_*`` environment variables."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from standardwebhooks.webhooks import Webhook as Signer

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

    # --- auth and limits ---
    api_token: SecretStr | None = Field(None, description="Bearer token callers must present (key name 'default').")
    api_keys: Annotated[dict[str, SecretStr], NoDecode] = Field(
        default_factory=dict, description="More keys, 'name=key,name2=key2'; the name appears in logs.")
    api_keys_file: Path | None = Field(None, description="File of named keys, one 'name=key' a line, # comments.")
    rate_limit_per_minute: float = Field(
        60, ge=0, description="Requests a minute per key, and per IP for failed logins; 0 turns limits off.")
    rate_limit_burst: int = Field(10, ge=1, description="Requests allowed at once before the rate applies.")
    read_rate_limit_per_minute: float = Field(
        3000, ge=0, description="Reads and cancels of jobs a minute per key (their own budget, so polling never "
        "spends the one for submissions, nor floods the store); 0 turns it off.")
    read_rate_limit_burst: int = Field(300, ge=1, description="Reads allowed at once before the read rate applies.")
    max_concurrent_per_key: int = Field(
        4, ge=0, description="Synchronous generations in flight per key; more wait in the key's line. 0 = no limit.")
    max_concurrent_generations: int = Field(
        8, ge=0, description="Synchronous generations this gateway sends to Triton at once; more wait, the keys "
        "with a line served in turn. 0 = no limit.")
    max_waiting_per_key: int = Field(
        16, ge=0, description="Synchronous generations of one key waiting for a slot (429 beyond).")
    max_generation_wait_s: float = Field(
        300, gt=0, description="Longest wait for a generation slot before a 429.")
    ip_allowlist: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Comma-separated CIDRs allowed to call the API; empty allows all.")
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="CIDRs of proxies whose X-Forwarded-For is believed.")
    allow_query_token: bool = Field(True, description="Accept the legacy ?token= query parameter.")
    jwt_secret: SecretStr | None = Field(None, description="Accept HS256 JWT bearer tokens signed with this secret.")
    jwt_public_key: str | None = Field(None, description="PEM public key: accept RS256/ES256 JWT bearer tokens.")
    jwt_public_key_file: Path | None = Field(None, description="The same, from a file.")
    jwt_audience: str | None = Field(None, description="Required 'aud' claim of JWTs.")
    jwt_issuer: str | None = Field(None, description="Required 'iss' claim of JWTs.")
    jwt_leeway_s: float = Field(30, ge=0, description="Clock skew allowed on 'exp' and 'nbf'.")
    request_signing_secret: SecretStr | None = Field(
        None, description="When set, every /api request must be HMAC-signed (see SECURITY.md).")
    request_signing_window_s: float = Field(
        300, gt=0, description="Signed requests older or newer than this are refused; nonces are kept as long.")
    insecure_no_auth: bool = Field(False, description="Run without a token (development only).")
    admin_token: SecretStr | None = Field(
        None, description="Secret with the admin scope: manages API keys at /admin/v1 (keys stored hashed in the "
        "job store; see SECURITY.md). Unset: only keys created with the admin scope can.")

    # --- logs ---
    log_format: Literal["text", "json"] = Field("text", description="text, or json: one JSON object a line.")
    log_prompts: Literal["hash", "redact", "full"] = Field(
        "hash", description="How prompts appear in logs: a short SHA-256, [redacted], or in full (debugging).")

    # --- Triton ---
    triton_grpc_url: str = Field("127.0.0.1:8011", description="Triton gRPC endpoint (host:port).")
    # Values, not the generation layer's constants (STYLE.md lesson 19): the folder names in
    # model_repository/, the same as gateway/generation/triton_inputs.py's (tests/gateway/test_config.py).
    triton_model: str = Field("i2vgen_xl", description="Model name in the Triton repository.")
    triton_progress_model: str = Field(
        "i2vgen_xl_progress", description="Triton model that streams per-step progress; empty: no progress.")
    inference_timeout_s: float = Field(600.0, gt=0, description="Deadline for one Triton inference.")

    # --- shutdown (issue 14) ---
    shutdown_grace_s: int = Field(
        630, gt=0, description="At SIGTERM, how long requests in progress (a synchronous generation: "
        "I2V_INFERENCE_TIMEOUT_S plus preparing and encoding) may take before they are cut. Keep the "
        "orchestrator's grace (compose stop_grace_period, terminationGracePeriodSeconds) above it.")

    # --- inputs ---
    max_body_bytes: int = Field(30 * 1024 * 1024, gt=0, description="Largest request body accepted (413 above).")
    max_image_bytes: int = Field(20 * 1024 * 1024, gt=0, description="Largest decoded image file.")
    max_image_pixels: int = Field(40_000_000, gt=0, description="Largest image in pixels (decompression bombs).")
    max_video_pixels: int = Field(
        1280 * 1280, ge=64 * 64, description="Largest output, width x height, accepted; the model's own max_pixels "
        "(read from Triton: 1638400 in the CPU config, 921600 in the GPU one) applies too, whichever is smaller.")
    max_prompt_chars: int = Field(2000, gt=0, description="Longest prompt or negative prompt.")

    # --- outputs ---
    outputs_dir: Path = Field(REPO_ROOT / "outputs", description="Where MP4 files are written and served from.")
    retention_s: float = Field(
        86400, gt=0, description="Seconds finished jobs, their videos and cache entries are kept.")

    # --- jobs ---
    redis_url: str | None = Field(
        None, description="redis://host:port/db: jobs, the cache index and rate limits shared by replicas. "
        "Unset: a SQLite file (one gateway).")
    jobs_db: Path = Field(REPO_ROOT / "data" / "jobs.sqlite3", description="The SQLite job store, without Redis.")
    job_workers: int = Field(
        4, ge=0, description="Jobs this gateway runs at once (Triton batches them); 0 accepts jobs only.")
    job_lease_s: float = Field(
        30, gt=0, description="A running job whose gateway stops renewing it for this long runs again.")
    job_deadline_s: float = Field(
        3600, gt=0, description="Seconds from submission within which a job must finish, waits for Triton included.")
    job_max_attempts: int = Field(3, ge=1, description="Times a job is started before its worker losses fail it.")
    max_queued_per_key: int = Field(20, ge=1, description="Queued jobs one key may have (429 beyond).")
    max_queued_total: int = Field(500, ge=1, description="Queued jobs in all (503 beyond).")
    max_batch_items: int = Field(16, ge=1, description="Items in one POST /api/v1/batch.")
    cache_max_bytes: int = Field(
        1024**3, ge=0, description="Size of the result cache for seeded requests; 0 turns it off.")
    cache_dir: Path = Field(REPO_ROOT / "data" / "cache", description="Where cached videos are kept (not served).")

    # --- webhooks ---
    webhook_secret: SecretStr | None = Field(
        None, description="Standard Webhooks secret (whsec_ + base64); needed for callback_url.")
    webhook_allow_private: bool = Field(
        False, description="Allow callback URLs on loopback and private networks (tests, one-host set-ups).")
    webhook_timeout_s: float = Field(10, gt=0, description="Time one delivery may take.")
    webhook_retry_delays_s: Annotated[list[float], NoDecode] = Field(
        default_factory=lambda: [1.0, 5.0, 30.0, 120.0, 600.0],
        description="Comma-separated waits between delivery attempts; attempts = entries + 1.")

    # --- metrics ---
    metrics_token: SecretStr | None = Field(
        None, description="Serve Prometheus metrics at /metrics to 'Authorization: Bearer <this>'; unset: 404.")
    metrics_port: int | None = Field(
        None, description="Also serve /metrics, without a token, on this port (see I2V_METRICS_HOST); unset: none.")
    metrics_host: str = Field(
        "127.0.0.1", description="Address of the metrics port; only where nothing but the scraper reaches it.")

    @field_validator("metrics_token")
    @classmethod
    def _real_metrics_token(cls, token: SecretStr | None) -> SecretStr | None:
        # An empty token would make "Bearer " the password (a Secret template left unfilled).
        if token is not None and (len(token.get_secret_value()) < 16
                                  or token.get_secret_value().lower() in PLACEHOLDER_TOKENS):
            raise ValueError("I2V_METRICS_TOKEN must be a random secret of at least 16 characters")
        return token

    # --- web UI (gateway/ui, issue 12) ---
    ui_enabled: bool = Field(True, description="Serve the web UI at /ui.")
    ui_port: int | None = Field(None, description="Also listen on this port (the UI's own, e.g. 7860); unset: none.")
    ui_session_max_age_s: float = Field(
        12 * 3600, gt=0, description="How long a UI sign-in lasts (sessions live in the job store; sign-out "
        "ends them).")

    @property
    def jwt_enabled(self) -> bool:
        return self.jwt_secret is not None or bool(self.jwt_public_key)

    @model_validator(mode="before")
    @classmethod
    def _split_lists(cls, values: dict) -> dict:
        if not isinstance(values, dict):
            return values
        for name in ("cors_origins", "ip_allowlist", "trusted_proxies", "webhook_retry_delays_s"):
            if isinstance(values.get(name), str):
                values[name] = [item.strip() for item in values[name].split(",") if item.strip()]
        keys = values.get("api_keys")
        if isinstance(keys, str):
            values["api_keys"] = _parse_named_keys(keys.split(","), "I2V_API_KEYS")
        return values

    @model_validator(mode="after")
    def _require_real_keys(self) -> Settings:
        # Every key ends up in api_keys under its name: I2V_API_TOKEN is 'default'.
        if self.api_keys_file is not None:
            lines = self.api_keys_file.read_text().splitlines()
            self.api_keys = {**_parse_named_keys(lines, str(self.api_keys_file)), **self.api_keys}
        if self.api_token is not None:
            self.api_keys = {"default": self.api_token, **self.api_keys}
        if self.jwt_public_key_file is not None:
            self.jwt_public_key = self.jwt_public_key_file.read_text()
        if self.jwt_secret is not None and len(self.jwt_secret.get_secret_value()) < 32:
            raise ValueError("I2V_JWT_SECRET must be at least 32 characters (HS256 needs 256 bits)")
        if self.admin_token is not None and (len(self.admin_token.get_secret_value()) < 16
                                             or self.admin_token.get_secret_value().lower() in PLACEHOLDER_TOKENS):
            raise ValueError("I2V_ADMIN_TOKEN must be a random secret of at least 16 characters")
        if not self.api_keys and not self.jwt_enabled and not self.insecure_no_auth and self.admin_token is None:
            raise ValueError("I2V_API_TOKEN is not set. Set it to a long random secret "
                             "(or I2V_INSECURE_NO_AUTH=true for local development only).")
        for name, key in self.api_keys.items():
            secret = key.get_secret_value()
            if secret.lower() in PLACEHOLDER_TOKENS or len(secret) < 8:
                raise ValueError(f"API key '{name}' looks like a placeholder; use a long random secret "
                                 "(python -c 'import secrets; print(secrets.token_urlsafe(32))').")
        # Read as the edge's parse_networks reads them (the edge builds its networks from these values).
        try:
            for cidr in filter(str.strip, self.ip_allowlist + self.trusted_proxies):
                ipaddress.ip_network(cidr.strip(), strict=False)
        except ValueError as exc:
            raise ValueError(f"I2V_IP_ALLOWLIST / I2V_TRUSTED_PROXIES: {exc}") from None
        if self.webhook_secret is not None:
            try:
                Signer(self.webhook_secret.get_secret_value())
            except Exception:  # noqa: BLE001 - any decoding failure means the same thing
                raise ValueError("I2V_WEBHOOK_SECRET must be 'whsec_' followed by base64, e.g. from "
                                 "scripts/new_webhook_secret.py") from None
        if self.public_base_url:
            self.public_base_url = self.public_base_url.rstrip("/")
        return self


def _parse_named_keys(entries: list[str], source: str) -> dict[str, SecretStr]:
    keys: dict[str, SecretStr] = {}
    for entry in entries:
        entry = entry.strip()
        if not entry or entry.startswith("#"):
            continue
        name, separator, key = entry.partition("=")
        if not separator or not name.strip() or not key.strip():
            raise ValueError(f"{source}: expected 'name=key', got an entry without both")
        keys[name.strip()] = SecretStr(key.strip())
    return keys
