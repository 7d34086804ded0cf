"""A headless browser for UI tests: Debian's chromium driven by Playwright, reaching loopback only.

Every request to another host is aborted and recorded, so a test can assert that a page needs
nothing from the internet. ``playwright install`` is never needed: scripts/setup.sh --dev
installs /usr/bin/chromium.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import Page, Route, sync_playwright

from i2v_tools import REPO_ROOT

CHROMIUM = Path("/usr/bin/chromium")
# Git-ignored; kept after the run so a failing UI test can be looked at.
ARTIFACTS_DIR = REPO_ROOT / "test-artifacts"
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
DEFAULT_TIMEOUT_MS = 60_000


@dataclass
class LoopbackPage:
    page: Page
    blocked: list[str] = field(default_factory=list)
    """The URLs the page asked for and did not get: every one outside loopback."""
    page_errors: list[str] = field(default_factory=list)
    """Uncaught JavaScript errors, for failure messages."""

    def save_screenshot(self, name: str, full_page: bool = True) -> Path:
        """Save the page (or only what the viewport shows) as ``test-artifacts/<name>.png``; return the path."""
        ARTIFACTS_DIR.mkdir(exist_ok=True)
        path = ARTIFACTS_DIR / f"{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path


def is_loopback(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in {"http", "https", "ws", "wss"} and parts.hostname in LOOPBACK_HOSTS


@contextmanager
def loopback_page(viewport: tuple[int, int] = (1280, 900)) -> Iterator[LoopbackPage]:
    """A fresh headless Chromium page whose requests outside 127.0.0.1, localhost and ::1 fail."""
    if not CHROMIUM.is_file():
        raise RuntimeError(f"{CHROMIUM} is missing: run scripts/setup.sh --dev (it installs Debian's chromium)")
    # Chromium refuses its sandbox to root (containers, CI).
    args = ["--no-sandbox"] if os.geteuid() == 0 else []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=args)
        try:
            # Service workers could fetch past the route below; a test page needs none.
            context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]},
                                          service_workers="block")
            context.set_default_timeout(DEFAULT_TIMEOUT_MS)
            page = context.new_page()
            result = LoopbackPage(page)

            def only_loopback(route: Route) -> None:
                if is_loopback(route.request.url):
                    route.continue_()
                else:
                    result.blocked.append(route.request.url)
                    route.abort("internetdisconnected")

            # On the context, so pop-ups and workers are held to loopback as well.
            context.route("**/*", only_loopback)
            page.on("pageerror", lambda error: result.page_errors.append(str(error)))
            yield result
        finally:
            browser.close()
