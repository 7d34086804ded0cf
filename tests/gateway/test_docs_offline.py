"""/docs and /redoc render in a real browser that can reach nothing but loopback: Swagger UI and
ReDoc come from the gateway, not from a CDN."""

from __future__ import annotations

import httpx
import pytest

from gateway.api.docs import ASSETS_URL, REDOC_POLICY
from i2v_tools.servers import GatewayServer
from tests.support.browser import LoopbackPage, loopback_page

pytestmark = pytest.mark.integration
TITLE = "I2VGen-XL image-to-video API"


def assert_nothing_blocked(browser: LoopbackPage) -> None:
    assert browser.blocked == [], f"the page asked for off-machine URLs: {browser.blocked}; " \
                                  f"JavaScript errors: {browser.page_errors}"


def test_swagger_ui_renders_the_operations_offline(gateway: GatewayServer) -> None:
    with loopback_page() as browser:
        page = browser.page
        page.goto(f"{gateway.url}/docs")  # waits for the load event: the scripts and styles are in
        assert_nothing_blocked(browser)
        # Swagger UI has fetched /openapi.json and drawn one block per operation.
        page.locator('.opblock-post .opblock-summary-path[data-path="/api/v1/generate"]').wait_for()
        page.locator('.opblock-get .opblock-summary-path[data-path="/api/v1/jobs"]').wait_for()
        # The stylesheet is applied (a page without it shows the same text, unstyled).
        assert page.locator(".swagger-ui .opblock-post").first.evaluate(
            "element => getComputedStyle(element).borderTopStyle") == "solid"
        browser.save_screenshot("docs-swagger-ui")
        paths = page.locator(".opblock-summary-path").evaluate_all("spans => spans.map(s => s.dataset.path)")
        assert {"/api/v1/generate", "/api/v1/jobs"} <= set(paths), paths
        assert page.locator(".swagger-ui .info .title").inner_text().startswith(TITLE)
        assert_nothing_blocked(browser)


def test_redoc_renders_offline(gateway: GatewayServer) -> None:
    with loopback_page() as browser:
        page = browser.page
        page.goto(f"{gateway.url}/redoc")
        assert_nothing_blocked(browser)
        page.get_by_role("heading", level=1, name=TITLE).wait_for()
        page.locator('[data-section-id="operation/generate_api_v1_generate_post"]').wait_for()
        page.locator('[data-section-id="operation/list_jobs_api_v1_jobs_get"]').wait_for()
        browser.save_screenshot("docs-redoc", full_page=False)  # the whole page is 12,000 px tall
        assert_nothing_blocked(browser)


def test_docs_and_their_assets_need_no_token_and_the_api_still_does(gateway: GatewayServer) -> None:
    for path in ("/openapi.json", f"{ASSETS_URL}/swagger-ui-bundle.js", f"{ASSETS_URL}/swagger-ui.css",
                 f"{ASSETS_URL}/redoc.standalone.js", f"{ASSETS_URL}/favicon.png"):
        assert httpx.get(f"{gateway.url}{path}", timeout=30).status_code == 200, path
    for path in ("/docs", "/redoc"):
        page = httpx.get(f"{gateway.url}{path}", timeout=30)
        assert page.status_code == 200 and f"{ASSETS_URL}/" in page.text and "https://" not in page.text, page.text
    # Two policies, both enforced by the browser: ReDoc's own (no images from its CDN) and the
    # pages' hardening (gateway/edge/security_headers.py: no framing, nothing from elsewhere).
    policies = [policy.strip() for policy in
                httpx.get(f"{gateway.url}/redoc", timeout=30).headers["content-security-policy"].split(",")]
    assert policies[0] == REDOC_POLICY and "frame-ancestors 'none'" in policies[1], policies
    assert httpx.get(f"{gateway.url}/api/v1/jobs", timeout=30).status_code == 401
