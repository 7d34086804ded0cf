"""The admin and usage contract (``/admin/v1``, ``/api/v1/usage``): bodies and answers.

Times are answered in RFC 3339 (UTC); ``expires_at`` is accepted as RFC 3339 with a zone or as
Unix seconds."""

from __future__ import annotations

import datetime as dt

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from gateway.tenants.records import KeyLimits, KeyQuotas, KeySource, Scope
from gateway.tenants.store import AuditEntry
from gateway.tenants.usage import UsageCounts


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(..., min_length=1, max_length=100, description="A name people recognise the key by.")
    owner: str = Field("", max_length=500, description="Who holds the key (a note: team, contact, ticket).")
    scopes: list[Scope] = Field(..., min_length=1, description="generate, read and/or admin.")
    expires_at: AwareDatetime | None = Field(None, description="RFC 3339 with a zone, or Unix seconds; unset: never.")
    limits: KeyLimits = Field(default_factory=KeyLimits, description="Overrides of the gateway's per-key limits.")
    quotas: KeyQuotas = Field(default_factory=KeyQuotas, description="Videos or compute units per day and month.")


class KeyUpdate(BaseModel):
    """Only the fields sent change; ``expires_at: null`` removes the expiry."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, min_length=1, max_length=100)
    owner: str | None = Field(None, max_length=500)
    scopes: list[Scope] | None = Field(None, min_length=1)
    expires_at: AwareDatetime | None = None
    limits: KeyLimits | None = None
    quotas: KeyQuotas | None = None


class KeyRotate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    overlap_s: float = Field(0, ge=0, le=30 * 86400,
                             description="Seconds the old secret keeps working beside the new one.")


class KeyView(BaseModel):
    id: str = Field(..., description="The key's id: also the caller name its jobs and usage are filed under.")
    name: str
    owner: str = ""
    source: KeySource = Field(..., description="store (managed here), or environment / file (read-only here).")
    read_only: bool = Field(..., description="Keys from the environment or a file change only in the configuration.")
    status: str = Field(..., description="active, expired or revoked.")
    prefix: str | None = Field(None, description="The secret's first characters, to tell keys apart.")
    scopes: list[Scope]
    created_at: dt.datetime | None = None
    expires_at: dt.datetime | None = None
    last_used_at: dt.datetime | None = Field(None, description="Updated at most every 30 s.")
    revoked_at: dt.datetime | None = None
    rotated_at: dt.datetime | None = None
    limits: KeyLimits = Field(default_factory=KeyLimits)
    quotas: KeyQuotas = Field(default_factory=KeyQuotas)


class KeyWithSecret(KeyView):
    key: str = Field(..., description="The secret: shown this once, stored only as a hash.")


class KeyList(BaseModel):
    keys: list[KeyView]


class AuditView(AuditEntry):
    at_time: dt.datetime = Field(..., description="``at`` in RFC 3339.")


class AuditList(BaseModel):
    entries: list[AuditView] = Field(..., description="Newest first.")


class UsageDay(UsageCounts):
    day: dt.date


class QuotaState(BaseModel):
    quota: str = Field(..., description="videos_per_day, videos_per_month, compute_units_per_day or ..._per_month.")
    limit: float
    used: float
    resets_at: dt.datetime


class KeyUsage(BaseModel):
    key: str = Field(..., description="The caller name (a stored key's id, a configured key's name, jwt:<sub>).")
    name: str | None = None
    totals: UsageCounts
    days: list[UsageDay] = Field(..., description="Days with usage, oldest first.")
    quotas: list[QuotaState] = Field(default_factory=list)


class UsageReport(BaseModel):
    since: dt.date
    until: dt.date
    keys: list[KeyUsage]


class OwnUsage(KeyUsage):
    since: dt.date
    until: dt.date
