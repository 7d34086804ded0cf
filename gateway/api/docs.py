"""``GET /redoc``: ReDoc from the gateway's own copy (fastapi-offline's assets), asking nothing of the internet.

``/docs`` is fastapi-offline's page as it is; ReDoc needs this one change: its sidebar shows a
"API docs by Redocly" badge whose image comes from cdn.redoc.ly, with no option to turn it off
(ReDoc 2.5). The page's Content-Security-Policy refuses images from elsewhere, so the browser
never asks for it (ReDoc then hides the broken image).
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_redoc_html
from fastapi.responses import HTMLResponse

# Where the bundled Swagger UI, ReDoc and favicon are mounted; public, like /openapi.json.
ASSETS_URL = "/static-offline-docs"
REDOC_URL = "/redoc"
REDOC_POLICY = "img-src 'self' data:"

router = APIRouter(include_in_schema=False)


@router.get(REDOC_URL)
async def redoc(request: Request) -> HTMLResponse:
    root = request.scope.get("root_path", "")
    page = get_redoc_html(openapi_url=f"{root}{request.app.openapi_url}", title=f"{request.app.title} - ReDoc",
                          redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
                          redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png", with_google_fonts=False)
    page.headers["Content-Security-Policy"] = REDOC_POLICY
    return page
