"""Who is calling: ``Authorization: Bearer <key>`` or the legacy ``?token=``, checked
against every named key in constant time. Failed attempts are rate limited per IP."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer

from gateway.errors import RateLimitedError, UnauthorizedError

# auto_error=False: our own messages and the common error body instead of FastAPI's.
_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <token>")
_query = APIKeyQuery(name="token", auto_error=False, description="Legacy: ?token=<token>")
ANONYMOUS = "anonymous"


def _presented_key(request: Request, bearer: HTTPAuthorizationCredentials | None, query_token: str | None) -> str:
    settings = request.app.state.settings
    if request.headers.get("authorization") and bearer is None:
        raise UnauthorizedError("the Authorization header must be 'Bearer <token>'")
    if bearer is not None:
        return bearer.credentials
    if query_token is not None:
        if not settings.allow_query_token:
            raise UnauthorizedError("the ?token= parameter is disabled here; send 'Authorization: Bearer <token>'")
        return query_token
    raise UnauthorizedError("missing token: send 'Authorization: Bearer <token>'")


def _match(presented: str, keys: dict) -> str | None:
    # Compare with every key, without stopping early, so timing tells nothing.
    matched = None
    for name, key in keys.items():
        if hmac.compare_digest(presented.encode(), key.get_secret_value().encode()):
            matched = name
    return matched


async def require_caller(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    query_token: Annotated[str | None, Depends(_query)],
) -> str:
    """The name of the caller's key; also kept in ``request.state.caller`` for the access log."""
    settings = request.app.state.settings
    if settings.insecure_no_auth and not settings.api_keys:
        request.state.caller = ANONYMOUS
        return ANONYMOUS
    try:
        name = _match(_presented_key(request, bearer, query_token), settings.api_keys)
        if name is None:
            raise UnauthorizedError("invalid token")
    except UnauthorizedError:
        limiter = request.app.state.rate_limiter
        client = request.scope.get("state", {}).get("client_ip", "unknown")
        if limiter is not None:
            decision = await limiter.acquire(f"ip:{client}")
            if not decision.allowed:
                raise RateLimitedError("too many failed authentication attempts from this address; "
                                       f"retry in {decision.retry_after_s} s", decision.headers()) from None
        raise
    request.state.caller = name
    return name


Caller = Annotated[str, Depends(require_caller)]
