"""Where keys, the audit log and usage live: ``KeyStore``, in the job store's SQLite file or Redis.

The store never sees a secret: only its hash (``records.hash_secret``) points to a key."""

from __future__ import annotations

from abc import ABC, abstractmethod

from pydantic import BaseModel, Field

from gateway.tenants.records import ApiKey, SecretRef
from gateway.tenants.usage import UsageCounts

AUDIT_KEPT = 100_000  # entries kept; older ones go


class AuditEntry(BaseModel):
    at: float
    actor: str = Field(..., description="The caller name of whoever acted.")
    action: str = Field(..., description="key.create, key.update, key.revoke, key.rotate, key.read, usage.read, "
                        "or denied (a caller without the admin scope).")
    target: str | None = Field(None, description="The key the action was about.")
    client_ip: str | None = None
    detail: dict = Field(default_factory=dict, description="What changed; never a secret.")


class KeyStore(ABC):
    @abstractmethod
    async def save_key(self, key: ApiKey) -> None:
        """Insert or replace the record."""

    @abstractmethod
    async def get_key(self, key_id: str) -> ApiKey | None: ...

    @abstractmethod
    async def list_keys(self) -> list[ApiKey]:
        """Every stored key, oldest first."""

    @abstractmethod
    async def save_secret(self, secret_hash: str, ref: SecretRef) -> None: ...

    @abstractmethod
    async def find_secret(self, secret_hash: str) -> SecretRef | None: ...

    @abstractmethod
    async def end_secrets(self, key_id: str, until: float | None, keep: str | None = None) -> None:
        """Every secret of ``key_id`` but ``keep`` stops working: now (``until`` None: forgotten),
        or at ``until`` (an earlier end a secret already has stays)."""

    @abstractmethod
    async def touch(self, key_id: str, at: float) -> None:
        """Set the key's last-used time (without rewriting the rest of it)."""

    @abstractmethod
    async def append_audit(self, entry: AuditEntry) -> None: ...

    @abstractmethod
    async def audit(self, limit: int) -> list[AuditEntry]:
        """The latest ``limit`` entries, newest first."""

    @abstractmethod
    async def add_usage(self, caller: str, day: str, counts: UsageCounts) -> None: ...

    @abstractmethod
    async def usage(self, days: list[str], caller: str | None = None) -> dict[str, dict[str, UsageCounts]]:
        """caller -> day -> counts over ``days``, for one caller or everyone; days without usage left out."""

    @abstractmethod
    async def close(self) -> None: ...
