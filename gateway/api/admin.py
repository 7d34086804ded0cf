"""``/admin/v1``: API keys managed at run time, their audit log and everyone's usage (issue 24).
Every route needs the admin scope (I2V_ADMIN_TOKEN, or a stored key made with it); every call,
refused ones included, is written to the audit log."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from gateway.api.deps import App
from gateway.api.usage import UsagePeriod
from gateway.edge.auth import Caller
from gateway.edge.keys import require_scope
from gateway.errors import KeyNotFoundError, MalformedBodyError, MissingScopeError, ReadOnlyKeyError, responses_for
from gateway.tenants.records import Scope
from gateway.tenants.schemas import (
    AuditList,
    AuditView,
    KeyCreate,
    KeyList,
    KeyRotate,
    KeyUpdate,
    KeyView,
    KeyWithSecret,
    UsageReport,
)
from gateway.tenants.service import KeyService, key_service, key_view

router = APIRouter(prefix="/admin/v1", tags=["admin"])
Keys = Annotated[KeyService, Depends(key_service)]


def client_ip(request: Request) -> str | None:
    return request.scope.get("state", {}).get("client_ip")


async def admin_caller(request: Request, caller: Caller, keys: Keys) -> str:
    """The caller, if it has the admin scope; a refusal is audited too."""
    try:
        require_scope(request, Scope.admin)
    except MissingScopeError:
        await keys.audit(caller, "denied", client_ip(request), route=f"{request.method} {request.url.path}")
        raise
    return caller


Admin = Annotated[str, Depends(admin_caller)]
ERRORS = (MissingScopeError, KeyNotFoundError)


@router.post("/keys", status_code=201, response_model=KeyWithSecret,
             responses=responses_for(MalformedBodyError, MissingScopeError))
async def create_key(body: KeyCreate, request: Request, keys: Keys, admin: Admin) -> KeyWithSecret:
    """Create a key; its secret is in ``key``, this once (the store keeps only a hash)."""
    key, secret = await keys.create(body)
    await keys.audit(admin, "key.create", client_ip(request), key.id, name=key.name,
                     scopes=[s.value for s in key.scopes], prefix=key.prefix)
    return KeyWithSecret(**key_view(key).model_dump(), key=secret)


@router.get("/keys", response_model=KeyList, responses=responses_for(MissingScopeError))
async def list_keys(request: Request, keys: Keys, admin: Admin) -> KeyList:
    """Every key: configured ones (read-only, with their source) and stored ones, revoked included."""
    await keys.audit(admin, "key.list", client_ip(request))
    return KeyList(keys=await keys.views())


@router.get("/keys/{key_id}", response_model=KeyView, responses=responses_for(*ERRORS))
async def get_key(key_id: str, request: Request, keys: Keys, admin: Admin) -> KeyView:
    """One key (``env:<name>`` for a configured one)."""
    await keys.audit(admin, "key.read", client_ip(request), key_id)
    return await keys.view(key_id)


@router.patch("/keys/{key_id}", response_model=KeyView,
              responses=responses_for(MalformedBodyError, ReadOnlyKeyError, *ERRORS))
async def update_key(key_id: str, body: KeyUpdate, request: Request, keys: Keys, admin: Admin) -> KeyView:
    """Change a stored key's name, owner, scopes, expiry, limits or quotas (the fields sent)."""
    key, changes = await keys.update(key_id, body)
    await keys.audit(admin, "key.update", client_ip(request), key_id, **changes)
    return key_view(key)


@router.delete("/keys/{key_id}", response_model=KeyView, responses=responses_for(ReadOnlyKeyError, *ERRORS))
async def revoke_key(key_id: str, request: Request, keys: Keys, admin: Admin, app: App) -> KeyView:
    """Revoke a stored key: every replica refuses it from its next request on, its web UI sessions end."""
    key = await keys.revoke(key_id)
    await app.sessions.revoke_key(key_id)
    await keys.audit(admin, "key.revoke", client_ip(request), key_id)
    return key_view(key)


@router.post("/keys/{key_id}/rotate", status_code=201, response_model=KeyWithSecret,
             responses=responses_for(MalformedBodyError, ReadOnlyKeyError, *ERRORS))
async def rotate_key(key_id: str, body: KeyRotate, request: Request, keys: Keys, admin: Admin,
                     app: App) -> KeyWithSecret:
    """A new secret for the key (in ``key``, this once); the old one works ``overlap_s`` more
    seconds, for API calls: the key's web UI sessions end now."""
    key, secret = await keys.rotate(key_id, body.overlap_s)
    await app.sessions.revoke_key(key_id)
    await keys.audit(admin, "key.rotate", client_ip(request), key_id, overlap_s=body.overlap_s, prefix=key.prefix)
    return KeyWithSecret(**key_view(key).model_dump(), key=secret)


@router.get("/audit", response_model=AuditList, responses=responses_for(MissingScopeError))
async def audit_log(keys: Keys, admin: Admin, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> AuditList:
    """The latest admin actions, newest first: who, what, when, from where."""
    entries = await keys.store.audit(limit)
    return AuditList(entries=[AuditView(**entry.model_dump(),
                                        at_time=dt.datetime.fromtimestamp(entry.at, dt.timezone.utc))
                              for entry in entries])


@router.get("/usage", response_model=UsageReport, responses=responses_for(MissingScopeError))
async def all_usage(request: Request, keys: Keys, admin: Admin, period: Annotated[UsagePeriod, Depends()],
                    key: Annotated[str | None, Query(description="Only this caller name (a key's id).")] = None) \
        -> UsageReport:
    """Usage of every key (or one) per day over a period (default: this month so far)."""
    await keys.audit(admin, "usage.read", client_ip(request), key)
    since, until = period.bounds()
    found = await keys.usage(since, until, key)
    names = {view.id: view.name for view in await keys.views()}
    return UsageReport(since=since, until=until,
                       keys=[await keys.report(caller, days, names.get(caller)) for caller, days in
                             sorted(found.items())])
