"""``/ui/login`` and ``/ui/logout``: a plain form that trades an API key for a session cookie.

The cookie names a server-side session (session.py), never the key. It is HttpOnly (no script
reads it), SameSite=Strict (no request started by another site carries it, not even a link, so a
forged form post arrives signed out; the Origin check in guard.py refuses it as well) and Secure
behind TLS. An address locked out after too many wrong keys gets 429 for the right key as well
(auth.py), and sign-out ends the session in the store, not only in the browser."""

from __future__ import annotations

import html

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from gateway.edge.auth import auth_disabled, count_failed_attempt, key_name, refuse_if_locked_out
from gateway.edge.keys import identity_of, stored_key_caller
from gateway.edge.state import edge_services
from gateway.errors import RateLimitedError, UnauthorizedError
from gateway.tenants.records import Scope
from gateway.ui.session import COOKIE_NAME, current_fingerprint, session_store, wants_secure_cookie
from gateway.ui.texts import LANGUAGES, pick_language, text

UI_PATH = "/ui"
LOGIN_PATH = f"{UI_PATH}/login"
LOGOUT_PATH = f"{UI_PATH}/logout"
_PAGE = """<!doctype html>
<html lang="{lang}"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{title}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:28rem;margin:4rem auto;padding:0 1rem}}
input,button{{font:inherit;padding:.5rem;width:100%;box-sizing:border-box;margin:.3rem 0}}
.error{{color:#b00020}} nav a{{margin-right:.8rem}}</style></head>
<body><nav aria-label="Language">{languages}</nav><main><h1>{title}</h1><p>{intro}</p>
<form method="post" action="login"><input type="hidden" name="lang" value="{lang}">
<label for="key">{label}</label><input id="key" name="key" type="password" autocomplete="current-password" required>
<p class="error" id="login-error" role="alert">{error}</p><button type="submit" id="sign-in">{button}</button></form>
</main></body></html>"""


def login_page(language: str, error: str = "", status: int = 200,
               headers: dict[str, str] | None = None) -> HTMLResponse:
    languages = " ".join(f'<a href="login?lang={code}" lang="{code}">{"English" if code == "en" else "中文"}</a>'
                         for code in LANGUAGES)
    body = _PAGE.format(lang=language, title=html.escape(text(language, "sign_in_title")),
                        intro=html.escape(text(language, "sign_in_intro")),
                        label=html.escape(text(language, "api_key")),
                        button=html.escape(text(language, "sign_in")), error=html.escape(error), languages=languages)
    return HTMLResponse(body, status_code=status, headers={**(headers or {}), "Cache-Control": "no-store"})


def locked_out_page(language: str, refused: RateLimitedError) -> HTMLResponse:
    seconds = refused.headers.get("Retry-After", "60")
    return login_page(language, text(language, "locked_out").format(seconds=seconds), 429, refused.headers)


def _language(request: Request, chosen: str | None) -> str:
    return chosen if chosen in LANGUAGES else pick_language(request.headers.get("accept-language"))


def login_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get(LOGIN_PATH)
    async def show_login(request: Request, lang: str | None = None) -> Response:
        if auth_disabled(edge_services(request).settings):
            return RedirectResponse(f"{UI_PATH}/", status_code=303)
        return login_page(_language(request, lang))

    @router.post(LOGIN_PATH)
    async def sign_in(request: Request) -> Response:
        form = await request.form()
        language = _language(request, str(form.get("lang") or ""))
        settings = edge_services(request).settings
        try:
            await refuse_if_locked_out(request)  # before the key is compared: 429 tells a guesser nothing
            presented = str(form.get("key") or "")
            caller = key_name(presented, settings)
            if caller is None:
                try:  # a key made through the admin API (gateway/tenants)
                    caller = await stored_key_caller(request, presented)
                except UnauthorizedError:  # revoked, expired or rotated out: as wrong as a guess
                    caller = None
            if caller is None:
                await count_failed_attempt(request)  # the API's budget of failed sign-ins per address
                return login_page(language, text(language, "wrong_key"), 401)
        except RateLimitedError as refused:
            return locked_out_page(language, refused)
        identity = identity_of(request)
        if identity is not None and Scope.generate not in identity.scopes:  # the admin token, read-only keys
            return login_page(language, text(language, "key_cannot_generate"), 403)
        request.state.caller = caller  # the access log's key
        token = await session_store(request).create(caller, settings.ui_session_max_age_s,
                                                    await current_fingerprint(request, caller, settings) or "")
        response = RedirectResponse(f"{UI_PATH}/", status_code=303)
        response.set_cookie(COOKIE_NAME, token, max_age=int(settings.ui_session_max_age_s), path=UI_PATH,
                            httponly=True, samesite="strict", secure=wants_secure_cookie(request, settings))
        return response

    @router.post(LOGOUT_PATH)
    async def sign_out(request: Request) -> Response:
        await session_store(request).revoke(request.cookies.get(COOKIE_NAME))  # a copied cookie dies too
        response = RedirectResponse(LOGIN_PATH, status_code=303)
        response.headers["Clear-Site-Data"] = '"cache"'  # no signed-in page comes back from the cache
        response.delete_cookie(COOKIE_NAME, path=UI_PATH, httponly=True, samesite="strict",
                               secure=wants_secure_cookie(request, edge_services(request).settings))
        return response

    return router
