"""The edge's side of keys managed at run time (gateway/tenants, issue 24): stored keys and the
admin token as callers, scopes, quotas and a key's own limits. Configured keys and JWTs keep
the scopes they always had in effect (generate and read), never admin."""

from __future__ import annotations

from starlette.requests import HTTPConnection, Request

from gateway.edge.rate_limit import Limiter
from gateway.edge.state import edge_services
from gateway.errors import MissingScopeError
from gateway.tenants.records import CALLER_SCOPES, Scope
from gateway.tenants.service import Identity, key_service


async def stored_key_caller(request: Request, presented: str) -> str | None:
    """The caller name of a stored key's secret or of I2V_ADMIN_TOKEN, else None; the identity
    is kept in ``request.state.key`` for the scope, quota and limit checks after it."""
    identity = await key_service(request).authenticate(presented)
    if identity is None:
        return None
    request.state.key = identity
    return identity.caller


def identity_of(connection: HTTPConnection) -> Identity | None:
    return getattr(connection.state, "key", None)


def require_scope(connection: HTTPConnection, scope: Scope) -> None:
    identity = identity_of(connection)
    scopes = CALLER_SCOPES if identity is None else identity.scopes
    if scope not in scopes:
        raise MissingScopeError(f"this key lacks the '{scope.value}' scope")


async def admit_work(request: Request) -> None:
    """Before a request that starts work: the generate scope, the key's quotas and queue limit."""
    require_scope(request, Scope.generate)
    identity = identity_of(request)
    if identity is not None:
        await key_service(request).admit(identity)


def submission_limiter(request: Request) -> Limiter | None:
    """The rate limiter for requests that start work: the gateway's, or one at the key's own rate."""
    edge = edge_services(request)
    identity = identity_of(request)
    limits = None if identity is None or identity.key is None else identity.key.limits
    if edge.key_limiters is None or limits is None or (limits.rate_per_minute is None and limits.rate_burst is None):
        return edge.rate_limiter
    settings = edge.settings
    per_minute = settings.rate_limit_per_minute if limits.rate_per_minute is None else limits.rate_per_minute
    if per_minute <= 0:
        return None
    return edge.key_limiters.at(per_minute, settings.rate_limit_burst if limits.rate_burst is None
                                else limits.rate_burst)


def concurrency_cap(request: Request) -> int | None:
    """The key's own limit of synchronous generations in flight, or None for the gateway's."""
    identity = identity_of(request)
    return None if identity is None or identity.key is None else identity.key.limits.max_concurrent
