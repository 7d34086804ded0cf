"""Browser hardening for the pages people open: the web UI (``/ui``) and the API docs.

No other site may frame them (``frame-ancestors 'none'``, and ``X-Frame-Options: DENY`` for old
browsers), they load scripts, styles, media and connections from this gateway only, the
browser never guesses a type (``nosniff``), and no URL leaks to another site as a Referer.
Gradio's page and Swagger UI run inline scripts and styles (Gradio sets styles from script),
so those two sources allow 'unsafe-inline', and under ``/ui`` also 'unsafe-eval': Gradio 6's
HTML component compiles its template with Handlebars (``new Function``), and the status line,
the player and the sign-out form are HTML components. Nothing is loaded from another origin, no
plugin, no <base> tag, and forms post only here. API answers get ``nosniff`` too.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

UI_PREFIX = "/ui"
PAGE_PREFIXES = (UI_PREFIX, "/docs", "/redoc", "/static-offline-docs")
SCRIPTS = "script-src 'self' 'unsafe-inline'"
UI_SCRIPTS = f"{SCRIPTS} 'unsafe-eval'"
CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    SCRIPTS,
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:",
    "media-src 'self' data: blob:",
    "font-src 'self' data:",
    "connect-src 'self'",
    "worker-src 'self' blob:",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
UI_CONTENT_SECURITY_POLICY = CONTENT_SECURITY_POLICY.replace(SCRIPTS, UI_SCRIPTS)


def _within(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(f"{prefix}/")


def page_headers(path: str) -> list[tuple[bytes, bytes]]:
    """The headers a response to ``path`` gets: ``nosniff`` everywhere, the rest on pages."""
    headers = [(b"x-content-type-options", b"nosniff")]
    if any(_within(path, prefix) for prefix in PAGE_PREFIXES):
        policy = UI_CONTENT_SECURITY_POLICY if _within(path, UI_PREFIX) else CONTENT_SECURITY_POLICY
        # Appended, not replacing: a page with a policy of its own (ReDoc's img-src) keeps it,
        # and the browser enforces both.
        headers += [(b"content-security-policy", policy.encode()), (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"same-origin")]
    return headers


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = page_headers(scope["path"])

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name for name, _ in extra if name != b"content-security-policy"}
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() not in names]
                message = {**message, "headers": [*kept, *extra]}
            await send(message)

        await self.app(scope, receive, sending)
