"""Managing API keys at run time (the gateway's ``/admin/v1``), and usage per key.

    with Client(url, admin_token) as client:
        admin = Admin(client)
        made = admin.create_key("acme", ["generate", "read"], quotas={"videos_per_day": 10})
        print(made.key)  # the secret, shown this once
        admin.rotate_key(made.id, overlap_s=3600)
        admin.revoke_key(made.id)

``usage(client)`` is the calling key's own usage (``GET /api/v1/usage``); it needs no admin scope.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, ConfigDict

from i2v_client.client import Client
from i2v_client.transport import parse


class _Answer(BaseModel):
    model_config = ConfigDict(extra="allow")  # a newer gateway may add fields


class ApiKey(_Answer):
    id: str
    name: str
    owner: str = ""
    source: str
    read_only: bool
    status: str
    prefix: str | None = None
    scopes: list[str]
    created_at: dt.datetime | None = None
    expires_at: dt.datetime | None = None
    last_used_at: dt.datetime | None = None
    revoked_at: dt.datetime | None = None
    rotated_at: dt.datetime | None = None
    limits: dict[str, Any] = {}
    quotas: dict[str, Any] = {}


class NewApiKey(ApiKey):
    key: str  # the secret: only in the answer that made it


class AuditEntry(_Answer):
    at_time: dt.datetime
    actor: str
    action: str
    target: str | None = None
    client_ip: str | None = None
    detail: dict[str, Any] = {}


class UsageCounts(_Answer):
    requests: int = 0
    videos: int = 0
    frames: int = 0
    compute_units: float = 0.0
    model_seconds: float = 0.0
    cache_hits: int = 0
    failed: int = 0


class UsageDay(UsageCounts):
    day: dt.date


class KeyUsage(_Answer):
    key: str
    name: str | None = None
    totals: UsageCounts
    days: list[UsageDay]
    quotas: list[dict[str, Any]] = []


class OwnUsage(KeyUsage):
    since: dt.date
    until: dt.date


class UsageReport(_Answer):
    since: dt.date
    until: dt.date
    keys: list[KeyUsage]


def _when(value: dt.datetime | float | str | None) -> Any:
    return value.isoformat() if isinstance(value, dt.datetime) else value


def _period(since: dt.date | str | None, until: dt.date | str | None) -> dict[str, str]:
    return {name: str(value) for name, value in (("since", since), ("until", until)) if value is not None}


class Admin:
    """The admin API over a ``Client`` whose token has the admin scope (I2V_ADMIN_TOKEN or such a key)."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def _call(self, method: str, path: str, model: type[BaseModel], payload: Any = None,
              query: dict[str, Any] | None = None) -> Any:
        transport = self.client.transport
        return parse(self.client._send(transport.call(method, path, payload, query)), model)

    def create_key(self, name: str, scopes: list[str], *, owner: str = "",
                   expires_at: dt.datetime | float | str | None = None, limits: dict[str, Any] | None = None,
                   quotas: dict[str, Any] | None = None) -> NewApiKey:
        """A new key; ``expires_at`` as a datetime, Unix seconds or RFC 3339. The secret is ``.key``."""
        body: dict[str, Any] = {"name": name, "owner": owner, "scopes": scopes, "expires_at": _when(expires_at),
                                "limits": limits or {}, "quotas": quotas or {}}
        return self._call("POST", "/admin/v1/keys", NewApiKey, body)

    def list_keys(self) -> list[ApiKey]:
        class _Keys(_Answer):
            keys: list[ApiKey]

        return self._call("GET", "/admin/v1/keys", _Keys).keys

    def get_key(self, key_id: str) -> ApiKey:
        return self._call("GET", f"/admin/v1/keys/{key_id}", ApiKey)

    def update_key(self, key_id: str, **fields: Any) -> ApiKey:
        """Change the fields given (name, owner, scopes, expires_at, limits, quotas); ``expires_at=None`` clears it."""
        body = {name: _when(value) for name, value in fields.items()}
        return self._call("PATCH", f"/admin/v1/keys/{key_id}", ApiKey, body)

    def revoke_key(self, key_id: str) -> ApiKey:
        return self._call("DELETE", f"/admin/v1/keys/{key_id}", ApiKey)

    def rotate_key(self, key_id: str, overlap_s: float = 0) -> NewApiKey:
        """A new secret (``.key``); the old one keeps working ``overlap_s`` seconds."""
        return self._call("POST", f"/admin/v1/keys/{key_id}/rotate", NewApiKey, {"overlap_s": overlap_s})

    def audit(self, limit: int = 100) -> list[AuditEntry]:
        class _Audit(_Answer):
            entries: list[AuditEntry]

        return self._call("GET", "/admin/v1/audit", _Audit, query={"limit": limit}).entries

    def usage(self, since: dt.date | str | None = None, until: dt.date | str | None = None,
              key: str | None = None) -> UsageReport:
        query = _period(since, until) | ({"key": key} if key else {})
        return self._call("GET", "/admin/v1/usage", UsageReport, query=query)


def usage(client: Client, since: dt.date | str | None = None, until: dt.date | str | None = None) -> OwnUsage:
    """The calling key's usage per day (default: this month so far) and its quotas."""
    return parse(client._send(client.transport.call("GET", "/api/v1/usage", query=_period(since, until))), OwnUsage)
