"""What a stored API key is: its record (never its secret), its scopes, limits and quotas.

The secret is ``i2v_`` and 43 URL-safe characters (256 random bits); the store keeps only its
SHA-256. A plain hash is enough for a secret of that entropy (a slow password hash protects
guessable secrets, which these are not) and lets every replica find a key in one lookup.
"""

from __future__ import annotations

import hashlib
import secrets
import time
import uuid
from enum import Enum

from pydantic import BaseModel, ConfigDict, Field

SECRET_PREFIX = "i2v_"
VISIBLE_CHARS = 12  # "i2v_" and 8 more: enough to tell keys apart in a list, far too few to guess the rest


class Scope(str, Enum):
    generate = "generate"  # start work: /api/v1/generate, /api/v1/jobs, /api/v1/batch
    read = "read"  # read (and cancel) the key's own jobs, read its own usage
    admin = "admin"  # /admin/v1: keys, audit, everyone's usage


CALLER_SCOPES = frozenset({Scope.generate, Scope.read})  # keys from the environment, files and JWTs


class KeySource(str, Enum):
    store = "store"  # made through the admin API: managed at run time
    environment = "environment"  # I2V_API_TOKEN / I2V_API_KEYS: read-only here
    file = "file"  # I2V_API_KEYS_FILE: read-only here


class KeyLimits(BaseModel):
    """Overrides of the gateway's per-key limits for one key; unset fields keep the gateway's."""

    model_config = ConfigDict(extra="forbid")  # a misspelt limit must not pass for one that is set

    rate_per_minute: float | None = Field(None, ge=0, description="Requests that start work a minute (0: no limit).")
    rate_burst: int | None = Field(None, ge=1, description="Such requests allowed at once.")
    max_concurrent: int | None = Field(None, ge=0, description="Synchronous generations in flight (0: no limit).")
    max_queued: int | None = Field(
        None, ge=1, description="Queued jobs; at most I2V_MAX_QUEUED_PER_KEY (the gateway's limit still applies).")


class KeyQuotas(BaseModel):
    """Work a key may cause per UTC day and calendar month; past one, 429 until it resets."""

    model_config = ConfigDict(extra="forbid")

    videos_per_day: int | None = Field(None, ge=0)
    videos_per_month: int | None = Field(None, ge=0)
    compute_units_per_day: float | None = Field(None, ge=0)
    compute_units_per_month: float | None = Field(None, ge=0)


class ApiKey(BaseModel):
    """One stored key. ``id`` is also the caller name its jobs, usage and logs are filed under,
    so rotating the secret keeps the key's jobs and usage."""

    id: str = Field(default_factory=lambda: "key_" + uuid.uuid4().hex[:16])
    name: str
    owner: str = ""
    prefix: str = ""
    scopes: list[Scope]
    created_at: float = Field(default_factory=time.time)
    expires_at: float | None = None
    last_used_at: float | None = None
    revoked_at: float | None = None
    rotated_at: float | None = None
    limits: KeyLimits = Field(default_factory=KeyLimits)
    quotas: KeyQuotas = Field(default_factory=KeyQuotas)

    def refusal(self, now: float | None = None) -> str | None:
        """Why this key is not accepted now, or None."""
        now = time.time() if now is None else now
        if self.revoked_at is not None:
            return "this API key has been revoked"
        if self.expires_at is not None and now >= self.expires_at:
            return "this API key has expired"
        return None


class SecretRef(BaseModel):
    """What the store keeps under a secret's hash: the key, and until when an old secret still
    works after a rotation (None: as long as the key)."""

    key_id: str
    valid_until: float | None = None


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def looks_like_stored_key(presented: str) -> bool:
    return presented.startswith(SECRET_PREFIX) and len(presented) > VISIBLE_CHARS
