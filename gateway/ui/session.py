"""The UI's sign-in: a session kept server-side (gateway/edge/sessions.py), named by a cookie.

The cookie holds a random token, never the key; the job store keeps the token's hash, the key
name and the end. A session ends at sign-out, after ``ui_session_max_age_s``, when its key is
removed from the configuration, and when the admin API revokes the key's sessions."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from gateway.config import Settings
from gateway.edge.sessions import SessionStore, key_fingerprint
from gateway.tenants.service import key_service

COOKIE_NAME = "i2v_ui_session"


def session_store(connection: HTTPConnection) -> SessionStore:
    return connection.app.state.services.sessions


async def current_fingerprint(connection: HTTPConnection, name: str, settings: Settings) -> str | None:
    """What a session of ``name`` must still match: a configured key's value, or a stored key's
    id and last rotation (gateway/tenants), so that a rotated, revoked or expired key ends its
    sessions; None when the key is not accepted now."""
    key = settings.api_keys.get(name)
    if key is not None:
        return key_fingerprint(key.get_secret_value())
    stored = await key_service(connection).usable(name)
    if stored is None or stored.key is None:
        return None
    return key_fingerprint(f"{stored.key.id}:{stored.key.rotated_at or stored.key.created_at}")


async def session_caller(connection: HTTPConnection, settings: Settings) -> str | None:
    """The key a request's session cookie signs in as; None when there is none, or it was
    revoked, has expired, or its key is no longer configured or has another value now."""
    found = await session_store(connection).session(connection.cookies.get(COOKIE_NAME))
    if found is None or found.fingerprint != await current_fingerprint(connection, found.caller, settings):
        return None
    return found.caller


def wants_secure_cookie(connection: HTTPConnection, settings: Settings) -> bool:
    """Secure when the browser reached us over TLS: the request's scheme (a trusted proxy's
    X-Forwarded-Proto, client_ip.py) or an https public base URL."""
    return connection.url.scheme == "https" or (settings.public_base_url or "").startswith("https://")
