"""The UI's sign-in: a signed session cookie naming the API key, never holding the key itself.

The value is ``<key name>.<issued at>.<HMAC-SHA256>``; the secret is I2V_UI_SESSION_SECRET or a
random one per process. A session is only as good as its key: it ends when the key is removed
from the configuration, and after ``ui_session_max_age_s``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

from gateway.config import Settings

COOKIE_NAME = "i2v_ui_session"


class SessionSigner:
    def __init__(self, secret: bytes, max_age_s: float) -> None:
        self._secret = secret
        self.max_age_s = max_age_s

    @classmethod
    def from_settings(cls, settings: Settings) -> SessionSigner:
        secret = (settings.ui_session_secret.get_secret_value().encode() if settings.ui_session_secret
                  else secrets.token_bytes(32))
        return cls(secret, settings.ui_session_max_age_s)

    def _mac(self, payload: str) -> str:
        digest = hmac.new(self._secret, payload.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def issue(self, caller: str, now: float | None = None) -> str:
        # The name is base64 so that any key name (dots included) survives the split below.
        name = base64.urlsafe_b64encode(caller.encode()).decode().rstrip("=")
        payload = f"{name}.{int(time.time() if now is None else now)}"
        return f"{payload}.{self._mac(payload)}"

    def verify(self, value: str | None, now: float | None = None) -> str | None:
        """The caller a cookie value was issued to, or None when forged, malformed or expired."""
        if not value or value.count(".") != 2:
            return None
        name, issued, mac = value.split(".")
        if not hmac.compare_digest(mac, self._mac(f"{name}.{issued}")):
            return None
        try:
            age = (time.time() if now is None else now) - int(issued)
            caller = base64.urlsafe_b64decode(name + "=" * (-len(name) % 4)).decode()
        except ValueError:
            return None
        return caller if 0 <= age <= self.max_age_s else None
