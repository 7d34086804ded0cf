"""Token check: ``Authorization: Bearer <token>`` or the legacy ``?token=``."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer

from gateway.errors import UnauthorizedError

# auto_error=False: our own messages and the common error body instead of FastAPI's.
_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <token>")
_query = APIKeyQuery(name="token", auto_error=False, description="Legacy: ?token=<token>")


async def require_token(
    request: Request,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    query_token: Annotated[str | None, Depends(_query)],
) -> None:
    settings = request.app.state.settings
    if settings.insecure_no_auth and settings.api_token is None:
        return
    if request.headers.get("authorization") and bearer is None:
        raise UnauthorizedError("the Authorization header must be 'Bearer <token>'")
    if bearer is not None:
        presented = bearer.credentials
    elif query_token is not None:
        if not settings.allow_query_token:
            raise UnauthorizedError("the ?token= parameter is disabled here; send 'Authorization: Bearer <token>'")
        presented = query_token
    else:
        raise UnauthorizedError("missing token: send 'Authorization: Bearer <token>'")
    expected = settings.api_token.get_secret_value()
    if not hmac.compare_digest(presented.encode(), expected.encode()):
        raise UnauthorizedError("invalid token")


Authenticated = Depends(require_token)
