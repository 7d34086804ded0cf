"""The web UI page as people use it, in headless Chromium (issue 30): a page nobody can frame and
axe-core finds no serious fault in, one job per click, a reload that keeps following the job, the
queue position, a clear "signed out", gallery reuse and paging, a phone layout, the language
remembered, limits told at upload, and a stop that open tabs do not hold up.

One gateway for the module with one worker (so a job can wait in the queue) and one key per test
(so each test's gallery and running jobs are its own)."""

from __future__ import annotations

import base64
import http.server
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from axe_playwright_python.sync_playwright import Axe
from PIL import Image
from playwright.sync_api import Page, expect

from i2v_tools.servers import GatewayServer
from tests.support.browser import loopback_page

pytestmark = pytest.mark.integration
KEYS = {name: f"{name}-key-0123456789" for name in ("axe", "one", "reload", "blocker", "out", "phone", "pages")}
SMALL_JOB = {"resolution": "256p", "num_frames": 8, "steps": 2, "prompt": "a small square"}
SERIOUS = ("serious", "critical")


@pytest.fixture(scope="module")
def ui(start_gateway) -> GatewayServer:
    return start_gateway({"I2V_UI_ENABLED": "true", "I2V_JOB_WORKERS": "1", "I2V_RATE_LIMIT_PER_MINUTE": "0",
                          "I2V_API_KEYS": ",".join(f"{name}={key}" for name, key in KEYS.items()),
                          "I2V_MAX_IMAGE_BYTES": "500000"})


@pytest.fixture(scope="module")
def photo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("photo") / "photo.png"
    image = Image.new("RGB", (160, 120), (40, 120, 200))
    image.paste((240, 200, 40), (50, 30, 110, 90))
    image.save(path)
    return path


@contextmanager
def framing_site(body: str) -> Iterator[str]:
    """A page on another origin (a server on another port of 127.0.0.1) showing ``body``; its URL."""
    page = f"<!doctype html><title>another site</title>{body}".encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the standard library's name
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            self.wfile.write(page)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def api(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[key]}"}


def sign_in(page: Page, gateway: GatewayServer, key: str) -> None:
    page.goto(f"{gateway.url}/ui/")
    page.fill("#key", KEYS[key])
    page.click("#sign-in")
    page.locator("#i2v-prompt textarea").wait_for()


def fill_form(page: Page, image: Path, prompt: str, steps: int) -> None:
    page.locator("#i2v-image input[type=file]").set_input_files(str(image))
    page.locator("#i2v-image img").first.wait_for()
    page.locator("#i2v-prompt textarea").fill(prompt)
    page.locator("#i2v-resolution input").click()
    page.get_by_role("option", name="256p").click()
    for elem_id, value in (("i2v-frames", "8"), ("i2v-steps", str(steps))):
        field = page.locator(f"#{elem_id} input[type=number]")
        field.fill(value)
        field.press("Enter")


def status(page: Page) -> str:
    return page.locator("#i2v-status").get_attribute("data-status") or ""


def wait_status(page: Page, wanted: str, timeout_ms: int = 240_000, step_at_least: int = 0) -> None:
    page.wait_for_function("""([wanted, step]) => {
        const s = document.querySelector('#i2v-status');
        return s && s.dataset.status === wanted && Number(s.dataset.step) >= step;
    }""", arg=[wanted, step_at_least], timeout=timeout_ms)


def serious_violations(page: Page) -> list[tuple[str, str, list]]:
    found = Axe().run(page).response["violations"]
    return [(v["id"], v["impact"], [n["target"] for n in v["nodes"]][:5]) for v in found if v["impact"] in SERIOUS]


def jobs_of(gateway: GatewayServer, key: str) -> list[dict]:
    answer = httpx.get(f"{gateway.url}/api/v1/jobs", headers=api(key), timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()["jobs"]


def test_no_other_origin_can_frame_the_ui_and_axe_finds_no_serious_fault(ui: GatewayServer) -> None:
    with loopback_page() as browser:
        page = browser.page
        page.add_init_script("""window.i2vCsp = []; document.addEventListener('securitypolicyviolation',
            e => window.i2vCsp.push(e.violatedDirective + ' ' + e.blockedURI));""")
        page.goto(f"{ui.url}/ui/login")
        assert serious_violations(page) == []
        sign_in(page, ui, "axe")
        page.locator("#i2v-generate").wait_for()
        assert serious_violations(page) == []
        assert page.evaluate("window.i2vCsp") == [], "Gradio broke a rule of its page's Content-Security-Policy"
        # Signed in, a page on another origin (another port of this host) frames the UI and, to
        # show that framing works here at all, an API answer (which need not refuse it).
        with framing_site(f'<iframe id="victim" src="{ui.url}/ui/"></iframe>'
                          f'<iframe id="control" src="{ui.url}/healthz"></iframe>') as evil:
            with page.expect_console_message(lambda message: "frame-ancestors" in message.text) as refused:
                page.goto(evil)
            assert "frame-ancestors 'none'" in refused.value.text, refused.value.text
            expect(page.frame_locator("#control").locator("body")).to_contain_text("ok")
            assert [frame.url for frame in page.frames if frame.name == "victim"] == ["chrome-error://chromewebdata/"]
            expect(page.frame_locator("#victim").locator("#i2v-generate")).to_have_count(0)
        page.goto(f"{ui.url}/ui/")
        page.locator("#i2v-generate").wait_for()
        # A visible focus on a radio: the outline the theme lacked.
        page.locator("#i2v-fit input[type=radio]").first.focus()
        page.keyboard.press("ArrowRight")
        outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        assert outline not in ("none", ""), outline
        browser.save_screenshot("ui-axe-main")


def test_one_click_is_one_job_reuse_restores_it_and_the_language_is_remembered(ui: GatewayServer,
                                                                               photo: Path) -> None:
    with loopback_page() as browser:
        page = browser.page
        sign_in(page, ui, "one")
        fill_form(page, photo, "a bright square drifts", 2)
        page.locator("#i2v-generate").dblclick()
        wait_status(page, "succeeded")
        jobs = jobs_of(ui, "one")
        assert len(jobs) == 1, [job["job_id"] for job in jobs]
        seed = jobs[0]["result"]["seed"]
        # The gallery's tile is the poster; the switch says everything again in Chinese.
        tile = page.locator("#i2v-gallery .thumbnail-item img").first
        tile.wait_for()
        assert (tile.get_attribute("src") or "").endswith(".jpg"), tile.get_attribute("src")
        page.get_by_label("中文").check()
        expect(page.locator("#i2v-status")).to_contain_text("完成")
        expect(page.locator("#i2v-download")).to_have_text("下载视频")
        expect(page.locator("#i2v-examples")).to_contain_text("示例")
        page.reload()
        expect(page.locator("#i2v-generate")).to_have_text("生成")
        # Reuse: the prompt, the seed actually used (Random unticked) and the picture come back.
        page.locator("#i2v-prompt textarea").fill("something else")
        page.locator("#i2v-gallery .thumbnail-item").first.click()
        expect(page.locator("#i2v-prompt textarea")).to_have_value("a bright square drifts")
        expect(page.locator("#i2v-seed input")).to_have_value(str(seed))
        expect(page.locator("#i2v-random-seed input")).not_to_be_checked()
        page.wait_for_function("""() => {
            const picture = document.querySelector('#i2v-image img');
            return picture && picture.src.includes('i2v-inputs') && picture.complete && picture.naturalWidth > 0;
        }""")  # the picture the video was made from, loaded (it is this key's)
    # The UI's requests are logged with the key's name.
    log = ui.log_path.read_text(errors="replace")
    assert re.search(r"POST /ui/gradio_api/queue/join 200 \S+ key=one ", log), log[-3000:]


def test_a_reload_mid_run_follows_the_job_with_its_queue_place_and_cancel(ui: GatewayServer, photo: Path) -> None:
    blocker = httpx.post(f"{ui.url}/api/v1/jobs", json={**SMALL_JOB, "steps": 150, "image_base64": _b64(photo)},
                         headers=api("blocker"), timeout=30)
    assert blocker.status_code == 202, blocker.text
    try:
        with loopback_page() as browser:
            page = browser.page
            sign_in(page, ui, "reload")
            fill_form(page, photo, "wait your turn", 150)
            page.locator("#i2v-prompt textarea").press("Control+Enter")  # Ctrl+Enter submits
            wait_status(page, "queued", 60_000)
            expect(page.locator("#i2v-status")).to_have_attribute("data-queue", "1")
            expect(page.locator("#i2v-status")).to_contain_text("position in queue 1")
            job_id = page.locator("#i2v-status").get_attribute("data-job")
            page.reload()
            expect(page.locator("#i2v-status")).to_have_attribute("data-job", job_id or "-")
            assert status(page) == "queued"
            expect(page.locator("#i2v-generate")).to_be_disabled()
            httpx.post(f"{ui.url}/api/v1/jobs/{blocker.json()['job_id']}/cancel", headers=api("blocker"), timeout=30)
            wait_status(page, "running", step_at_least=1)
            page.click("#i2v-cancel")
            wait_status(page, "cancelled", 120_000)
            expect(page.locator("#i2v-generate")).to_be_enabled()
        assert [job["status"] for job in jobs_of(ui, "reload")] == ["cancelled"]
    finally:
        httpx.post(f"{ui.url}/api/v1/jobs/{blocker.json()['job_id']}/cancel", headers=api("blocker"), timeout=30)


def test_a_revoked_session_says_signed_out_and_keeps_the_form(ui: GatewayServer, photo: Path) -> None:
    with loopback_page() as browser:
        page = browser.page
        sign_in(page, ui, "out")
        page.locator("#i2v-prompt textarea").fill("keep me")
        cookies = {c["name"]: c["value"] for c in page.context.cookies()}
        out = httpx.post(f"{ui.url}/ui/logout", cookies=cookies, headers={"Origin": ui.url})  # another tab
        assert out.status_code == 303
        # Seen with no click: the page's usage read (every 20 s) meets the ended session.
        expect(page.locator("#i2v-signed-out")).to_contain_text("Signed out: sign in again", timeout=60_000)
        page.click("#i2v-generate")
        expect(page.locator("#i2v-signed-out")).to_have_count(1)
        expect(page.locator("#i2v-prompt textarea")).to_have_value("keep me")
        page.goto(f"{ui.url}/ui/")  # not from the cache: the server sends it to the sign-in page
        expect(page).to_have_url(f"{ui.url}/ui/login")


def test_the_phone_layout_and_limits_told_at_upload(ui: GatewayServer, tmp_path: Path) -> None:
    big = tmp_path / "big.png"
    Image.frombytes("RGB", (500, 500), os.urandom(500 * 500 * 3)).save(big)  # ~750 kB, over the 500 kB limit
    with loopback_page(viewport=(375, 800)) as browser:
        page = browser.page
        sign_in(page, ui, "phone")
        assert page.evaluate("document.documentElement.scrollWidth") <= 375, "the page scrolls sideways"
        title = page.locator("#i2v-title h1").bounding_box()
        assert title is not None and title["width"] > 250 and title["height"] < 120, title
        generate, feedback = page.locator("#i2v-generate").bounding_box(), page.locator("#i2v-status").bounding_box()
        assert generate and feedback and 0 <= feedback["y"] - (generate["y"] + generate["height"]) < 160, \
            (generate, feedback)
        page.locator("#i2v-image input[type=file]").set_input_files(str(big))
        expect(page.locator("#i2v-status")).to_contain_text("the largest accepted is 0.5 MB")
        assert status(page) == "error"
        browser.save_screenshot("ui-phone")


def test_the_gallery_pages_through_the_keys_videos_with_posters(ui: GatewayServer, photo: Path) -> None:
    # Thirteen videos: one made, twelve from the result cache (the same seed), each its own job.
    image = _b64(photo)
    ids = []
    for _ in range(13):
        answer = httpx.post(f"{ui.url}/api/v1/jobs", json={**SMALL_JOB, "seed": 7, "image_base64": image},
                            headers=api("pages"), timeout=30)
        assert answer.status_code == 202, answer.text
        ids.append(answer.json()["job_id"])
    for job_id in ids:
        _wait_job(ui, "pages", job_id)
    with loopback_page() as browser:
        page = browser.page
        sign_in(page, ui, "pages")
        tiles = page.locator("#i2v-gallery .thumbnail-item")
        expect(tiles).to_have_count(12)
        expect(page.locator("#i2v-newer")).to_be_disabled()
        page.click("#i2v-older")
        expect(tiles).to_have_count(1)
        expect(page.locator("#i2v-page")).to_contain_text("Page 2")
        page.click("#i2v-newer")
        expect(tiles).to_have_count(12)


def test_a_graceful_stop_ends_within_15_s_with_a_tab_open(start_gateway, photo: Path) -> None:
    gateway = start_gateway({"I2V_UI_ENABLED": "true"})
    with loopback_page() as browser:
        page = browser.page
        page.goto(f"{gateway.url}/ui/")
        page.fill("#key", "test-token-0123456789")
        page.click("#sign-in")
        fill_form(page, photo, "a long one", 150)
        page.click("#i2v-generate")
        wait_status(page, "running", step_at_least=1)  # the tab's queue stream and heartbeat are open
        assert gateway.process is not None
        started = time.monotonic()
        gateway.process.send_signal(signal.SIGTERM)
        gateway.process.wait(timeout=60)
        took = time.monotonic() - started
    assert took < 15, f"the gateway took {took:.1f} s to stop with a tab open"


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _wait_job(gateway: GatewayServer, key: str, job_id: str, timeout: float = 240) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        job = httpx.get(f"{gateway.url}/api/v1/jobs/{job_id}", headers=api(key), timeout=30).json()
        if job["status"] in ("succeeded", "failed", "cancelled"):
            assert job["status"] == "succeeded", job
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']}"
        time.sleep(0.2)

