"""Who is calling: ``Authorization: Bearer <key or JWT>`` or the legacy ``?token=``.

API keys are checked against every named key in constant time. A bearer token that is not a
key is read as a JWT when JWTs are configured (PyJWT: signature, ``exp``, ``nbf``, ``aud``,
``iss``, with a leeway for clock skew); its ``sub`` names the caller. Failed attempts are rate
limited per IP, and an address that has spent that budget is locked out: every attempt from it,
with the right key or a wrong one, gets 429 until the budget refills, so the answer tells a
guesser nothing (the lockout is asked before any key is compared)."""

from __future__ import annotations

import hmac
from typing import Annotated

import jwt
from fastapi import Depends, Request
from fastapi.security import APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from gateway.config import Settings
from gateway.edge.keys import stored_key_caller
from gateway.edge.state import edge_services
from gateway.errors import RateLimitedError, UnauthorizedError

# auto_error=False: our own messages and the common error body instead of FastAPI's.
_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <token>")
_query = APIKeyQuery(name="token", auto_error=False, description="Legacy: ?token=<token>")
ANONYMOUS = "anonymous"


def _presented_key(request: Request, bearer: HTTPAuthorizationCredentials | None, query_token: str | None) -> str:
    settings = edge_services(request).settings
    if request.headers.get("authorization") and bearer is None:
        raise UnauthorizedError("the Authorization header must be 'Bearer <token>'")
    if bearer is not None:
        return bearer.credentials
    if query_token is not None:
        if not settings.allow_query_token:
            raise UnauthorizedError("the ?token= parameter is disabled here; send 'Authorization: Bearer <token>'")
        return query_token
    raise UnauthorizedError("missing token: send 'Authorization: Bearer <token>'")


_HMAC_ALGORITHMS = ("HS256",)
_PUBLIC_KEY_ALGORITHMS = ("RS256", "ES256")


def verify_jwt(token: str, settings: Settings) -> str:
    """The caller name (``jwt:<sub>``) of a valid JWT; ``UnauthorizedError`` saying why not."""
    try:
        algorithm = jwt.get_unverified_header(token).get("alg")
    except jwt.PyJWTError:
        raise UnauthorizedError("invalid token") from None
    # The key follows from the algorithm, and only configured algorithms are accepted, so a
    # token cannot pick HS256 with the public key as its secret (algorithm confusion).
    if algorithm in _HMAC_ALGORITHMS and settings.jwt_secret is not None:
        key = settings.jwt_secret.get_secret_value()
    elif algorithm in _PUBLIC_KEY_ALGORITHMS and settings.jwt_public_key:
        key = settings.jwt_public_key
    else:
        raise UnauthorizedError(f"JWT algorithm {algorithm!r} is not accepted here")
    try:
        claims = jwt.decode(token, key, algorithms=[algorithm], audience=settings.jwt_audience,
                            issuer=settings.jwt_issuer, leeway=settings.jwt_leeway_s,
                            options={"require": ["exp", "sub"]})
    except jwt.ExpiredSignatureError:
        raise UnauthorizedError("the JWT has expired") from None
    except jwt.ImmatureSignatureError:
        raise UnauthorizedError("the JWT is not valid yet (nbf)") from None
    except jwt.InvalidAudienceError:
        raise UnauthorizedError("the JWT is for another audience") from None
    except jwt.InvalidIssuerError:
        raise UnauthorizedError("the JWT is from another issuer") from None
    except jwt.MissingRequiredClaimError as exc:
        raise UnauthorizedError(f"the JWT lacks the '{exc.claim}' claim") from None
    except jwt.PyJWTError:
        raise UnauthorizedError("invalid JWT signature or format") from None
    return f"jwt:{claims['sub']}"


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
    settings = edge_services(request).settings
    if auth_disabled(settings):
        request.state.caller = ANONYMOUS
        return ANONYMOUS
    await refuse_if_locked_out(request)
    try:
        presented = _presented_key(request, bearer, query_token)
        name = key_name(presented, settings)
        if name is None:
            name = await stored_key_caller(request, presented)  # stored keys, the admin token (keys.py)
        if name is None and settings.jwt_enabled and presented.count(".") == 2:
            name = verify_jwt(presented, settings)
        if name is None:
            raise UnauthorizedError("invalid token")
    except UnauthorizedError:
        await count_failed_attempt(request)
        raise
    request.state.caller = name
    return name


def auth_disabled(settings: Settings) -> bool:
    """True only with I2V_INSECURE_NO_AUTH and no key or JWT configured: every caller is ANONYMOUS."""
    return settings.insecure_no_auth and not settings.api_keys and not settings.jwt_enabled


def key_name(presented: str, settings: Settings) -> str | None:
    """The name of the configured API key ``presented`` is (constant-time compare), else None."""
    return _match(presented, settings.api_keys)


def _failures_bucket(request: HTTPConnection) -> str:
    return f"ip:{request.scope.get('state', {}).get('client_ip', 'unknown')}"


def _locked_out(retry_after_s: int, headers: dict[str, str]) -> RateLimitedError:
    return RateLimitedError("too many failed authentication attempts from this address; "
                            f"retry in {retry_after_s} s", {**headers, "Retry-After": str(retry_after_s)})


async def refuse_if_locked_out(request: HTTPConnection) -> None:
    """``RateLimitedError`` (429, ``Retry-After``) while the caller's address has no failed
    attempt left, whatever it presents: called before any key is compared (API and web UI)."""
    limiter = edge_services(request).rate_limiter
    if limiter is not None:
        decision = await limiter.peek(_failures_bucket(request))
        if not decision.allowed:
            raise _locked_out(decision.retry_after_s, decision.headers())


async def count_failed_attempt(request: HTTPConnection) -> None:
    """One failed sign-in from the caller's address; ``RateLimitedError`` once it has failed too often."""
    limiter = edge_services(request).rate_limiter
    if limiter is not None:
        decision = await limiter.acquire(_failures_bucket(request))
        if not decision.allowed:
            raise _locked_out(decision.retry_after_s, decision.headers()) from None


Caller = Annotated[str, Depends(require_caller)]
