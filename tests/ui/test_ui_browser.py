"""The web UI in headless Chromium against the real gateway and tritonserver, as a person uses it."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import httpx
import pytest
from PIL import Image
from playwright.sync_api import Page, expect

from i2v_tools.servers import GatewayServer, free_port, http_ok
from tests.conftest import API_TOKEN
from tests.support.browser import LoopbackPage, loopback_page
from tests.tenants.test_keys_across_replicas import ADMIN, ADMIN_TOKEN, bearer

pytestmark = pytest.mark.integration
OTHER_KEY = "other-key-0123456789"
SMALL = {"frames": "8", "steps": "4"}  # with 256p: seconds on a CPU
UI_ON = {"I2V_UI_ENABLED": "true"}  # the tests' gateways are API-only unless asked


@pytest.fixture(scope="module")
def ui_gateway(start_gateway) -> GatewayServer:
    return start_gateway({**UI_ON, "I2V_API_KEYS": f"other={OTHER_KEY}", "I2V_CACHE_MAX_BYTES": "0",
                          "I2V_RATE_LIMIT_PER_MINUTE": "0", "I2V_ADMIN_TOKEN": ADMIN_TOKEN})


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    image = Image.new("RGB", (320, 240), (40, 120, 200))
    image.paste((240, 200, 40), (100, 60, 220, 180))
    image.save(path)
    return path


def assert_nothing_blocked(browser: LoopbackPage) -> None:
    assert browser.blocked == [], f"the page asked for off-machine URLs: {browser.blocked}"


def sign_in(page: Page, gateway: GatewayServer, key: str = API_TOKEN) -> None:
    page.goto(f"{gateway.url}/ui/")
    expect(page).to_have_url(f"{gateway.url}/ui/login")
    page.fill("#key", key)
    page.click("#sign-in")
    page.locator("#i2v-prompt textarea").wait_for()


def set_number(page: Page, elem_id: str, value: str) -> None:
    field = page.locator(f"#{elem_id} input[type=number]")
    field.fill(value)
    field.press("Enter")


def fill_form(page: Page, image: Path, prompt: str, steps: str) -> None:
    page.locator("#i2v-image input[type=file]").set_input_files(str(image))
    page.locator("#i2v-image img").first.wait_for()
    page.locator("#i2v-prompt textarea").fill(prompt)
    page.locator("#i2v-resolution input").click()
    page.get_by_role("option", name="256p").click()
    set_number(page, "i2v-frames", SMALL["frames"])
    set_number(page, "i2v-steps", steps)


def watch_steps(page: Page) -> None:
    """Record every step the progress bar shows, however fast they come."""
    page.evaluate("""() => {
        window.i2vSteps = [];
        new MutationObserver(() => {
            const s = document.querySelector('#i2v-status');
            if (s && s.dataset.status === 'running') window.i2vSteps.push(Number(s.dataset.step));
        }).observe(document.body, {subtree: true, childList: true, attributes: true});
    }""")


def test_sign_in_generate_watch_progress_and_play(ui_gateway: GatewayServer, photo: Path) -> None:
    with loopback_page(viewport=(1280, 1000)) as browser:
        page = browser.page
        page.goto(f"{ui_gateway.url}/ui/")
        page.fill("#key", "not-the-key-0123456789")
        page.click("#sign-in")
        expect(page.locator("#login-error")).to_contain_text("not valid")
        sign_in(page, ui_gateway)
        expect(page.locator("#i2v-caller")).to_have_text("default")
        fill_form(page, photo, "a bright square drifts to the right", "6")
        watch_steps(page)
        page.click("#i2v-generate")
        page.wait_for_function("""() => {
            const v = document.querySelector('#i2v-video');
            return v && v.readyState >= 2 && v.duration > 0;
        }""", timeout=240_000)
        expect(page.locator("#i2v-status")).to_have_attribute("data-status", "succeeded")
        steps = page.evaluate("window.i2vSteps")
        assert any(0 < step < 6 for step in steps) and max(steps) >= 5, f"the progress bar showed {steps}"
        assert page.locator("#i2v-download").get_attribute("href").endswith(".mp4")
        expect(page.locator("#i2v-used")).to_contain_text("a bright square drifts to the right")
        browser.save_screenshot("ui-generated")
        # The gallery has the video; another prompt typed, then a click on it brings its settings back.
        page.locator("#i2v-gallery .thumbnail-item").first.wait_for()
        page.locator("#i2v-prompt textarea").fill("something else")
        page.locator("#i2v-gallery .thumbnail-item").first.click()
        expect(page.locator("#i2v-prompt textarea")).to_have_value("a bright square drifts to the right")
        expect(page.locator("#i2v-steps input[type=number]")).to_have_value("6")
        assert_nothing_blocked(browser)
    # Another key signs in to an empty gallery: the job is the first key's, as in the API.
    with loopback_page() as browser:
        sign_in(browser.page, ui_gateway, OTHER_KEY)
        browser.page.locator("#i2v-refresh").click()
        expect(browser.page.locator("#i2v-gallery .thumbnail-item")).to_have_count(0)
    listed = httpx.get(f"{ui_gateway.url}/api/v1/jobs", headers={"Authorization": f"Bearer {API_TOKEN}"}).json()
    assert [job["status"] for job in listed["jobs"]][:1] == ["succeeded"]


def test_cancel_during_a_long_run_ends_the_job_cancelled(ui_gateway: GatewayServer, photo: Path) -> None:
    with loopback_page() as browser:
        page = browser.page
        sign_in(page, ui_gateway)
        fill_form(page, photo, "a long one", "150")
        page.click("#i2v-generate")
        page.wait_for_function("""() => {
            const s = document.querySelector('#i2v-status');
            return s && s.dataset.status === 'running' && Number(s.dataset.step) >= 1;
        }""", timeout=120_000)
        job_id = page.locator("#i2v-status").get_attribute("data-job")
        page.click("#i2v-cancel")
        expect(page.locator("#i2v-status")).to_have_attribute("data-status", "cancelled", timeout=120_000)
        assert_nothing_blocked(browser)
    job = httpx.get(f"{ui_gateway.url}/api/v1/jobs/{job_id}", headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert job.status_code == 200 and job.json()["status"] == "cancelled", job.text


def test_a_bad_upload_shows_the_apis_message(ui_gateway: GatewayServer, tmp_path: Path) -> None:
    bad = tmp_path / "not-really.png"
    bad.write_bytes(b"this is text, not a picture")
    with loopback_page() as browser:
        page = browser.page
        sign_in(page, ui_gateway)
        page.locator("#i2v-image input[type=file]").set_input_files(str(bad))
        page.locator("#i2v-prompt textarea").fill("anything")
        page.click("#i2v-generate")
        expect(page.locator("#i2v-status")).to_have_attribute("data-status", "error")
        # In words a person reads, without the API's field names (image_base64).
        expect(page.locator("#i2v-status")).to_contain_text("This file is not a picture that can be read")
        assert "image_base64" not in page.locator("#i2v-status").inner_text()
        assert "Traceback" not in page.content()
        assert_nothing_blocked(browser)


def test_the_page_speaks_chinese_to_a_chinese_browser_and_switches(ui_gateway: GatewayServer) -> None:
    with loopback_page() as browser:
        page = browser.page
        page.context.set_extra_http_headers({"Accept-Language": "zh-CN,zh;q=0.9"})
        sign_in(page, ui_gateway)
        expect(page.locator("#i2v-generate")).to_have_text("生成")
        page.get_by_label("English").check()
        expect(page.locator("#i2v-generate")).to_have_text("Generate")
        assert_nothing_blocked(browser)


def test_a_stored_key_sees_its_usage_and_quota_and_is_stopped_at_it(ui_gateway: GatewayServer, photo: Path) -> None:
    made = httpx.post(f"{ui_gateway.url}/admin/v1/keys", headers=ADMIN, timeout=30,
                      json={"name": "studio", "scopes": ["generate", "read"], "quotas": {"videos_per_day": 1}})
    assert made.status_code == 201, made.text
    with loopback_page() as browser:
        page = browser.page
        sign_in(page, ui_gateway, made.json()["key"])
        usage = page.locator("#i2v-usage")
        quota = page.locator('#i2v-usage li[data-quota="videos_per_day"]')
        expect(usage).to_have_attribute("data-videos", "0")
        expect(quota).to_have_attribute("data-limit", "1")
        expect(quota).to_have_attribute("data-used", "0")
        fill_form(page, photo, "one video, all the quota allows", "2")
        page.click("#i2v-generate")
        expect(page.locator("#i2v-status")).to_have_attribute("data-status", "succeeded", timeout=240_000)
        # Shown when the job ends (or, had the ledger lagged the end, at the page's next usage read).
        expect(usage).to_have_attribute("data-videos", "1", timeout=60_000)
        expect(usage).to_have_attribute("data-frames", "8")
        expect(quota).to_have_attribute("data-used", "1")
        expect(quota).to_have_class(re.compile("i2v-quota-reached"))
        # The next video is past the quota: the API's 429 message, naming it, on the page.
        page.click("#i2v-generate")
        expect(page.locator("#i2v-status")).to_have_attribute("data-status", "error")
        expect(page.locator("#i2v-status")).to_contain_text("quota videos_per_day")
        page.get_by_label("中文").check()
        expect(usage).to_contain_text("本月：1 个视频")
        expect(quota).to_contain_text("今日视频：1 / 1")
        assert_nothing_blocked(browser)
    # What the page showed is what the API reports for the key.
    own = httpx.get(f"{ui_gateway.url}/api/v1/usage", headers=bearer(made.json()["key"]), timeout=30)
    totals = own.json()["totals"]
    assert (totals["videos"], totals["frames"], totals["requests"]) == (1, 8, 1)


def session_cookie(gateway: GatewayServer) -> dict[str, str]:
    answer = httpx.post(f"{gateway.url}/ui/login", data={"key": API_TOKEN}, headers={"Origin": gateway.url})
    assert answer.status_code == 303, answer.text
    return dict(answer.cookies)


def test_uploads_to_the_page_are_deleted_after_the_retention(start_gateway, tmp_path: Path) -> None:
    gateway = start_gateway({**UI_ON, "I2V_RETENTION_S": "1", "GRADIO_TEMP_DIR": str(tmp_path / "gradio")})
    image = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 40, 40)).save(image, "PNG")
    answer = httpx.post(f"{gateway.url}/ui/gradio_api/upload", files={"files": ("photo.png", image.getvalue())},
                        headers={"Origin": gateway.url}, cookies=session_cookie(gateway))
    assert answer.status_code == 200, answer.text
    [uploaded] = [Path(path) for path in answer.json()]
    assert uploaded.is_relative_to(tmp_path / "gradio")
    gateway.wait_until(uploaded.exists, 30, "the upload in Gradio's folder")
    gateway.wait_until(lambda: not uploaded.exists(), 30, "the upload deleted a second after its upload")


def test_sign_in_sets_a_strict_httponly_session_not_the_key(ui_gateway: GatewayServer) -> None:
    answer = httpx.post(f"{ui_gateway.url}/ui/login", data={"key": API_TOKEN}, headers={"Origin": ui_gateway.url})
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie, cookie
    assert API_TOKEN not in cookie
    assert httpx.get(f"{ui_gateway.url}/ui/config").status_code == 401
    assert httpx.get(f"{ui_gateway.url}/ui/config", cookies=dict(answer.cookies)).status_code == 200
    refused = httpx.post(f"{ui_gateway.url}/ui/login", data={"key": "wrong-key-0123456789"},
                         headers={"Origin": ui_gateway.url})
    assert refused.status_code == 401 and "set-cookie" not in refused.headers


def test_cross_origin_posts_to_the_ui_are_refused(ui_gateway: GatewayServer) -> None:
    cookies = session_cookie(ui_gateway)
    for path in ("/ui/gradio_api/queue/join", "/ui/gradio_api/upload", "/ui/login", "/ui/logout"):
        for headers in ({"Origin": "http://evil.example"}, {"Referer": "http://evil.example/page"}, {}):
            answer = httpx.post(f"{ui_gateway.url}{path}", json={}, headers=headers, cookies=cookies)
            assert answer.status_code == 403, (path, headers, answer.status_code, answer.text)
            assert answer.json()["success"] is False


@pytest.mark.parametrize("path", [
    "/ui/gradio_api/file=/etc/passwd", "/ui/gradio_api/file=../../../../../../etc/passwd",
    "/ui/gradio_api/file=%2Fetc%2Fpasswd", "/ui/gradio_api/file=..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "/ui/gradio_api/file=%252e%252e%252f%252e%252e%252f%252e%252e%252fetc%252fpasswd",
    "/ui/gradio_api/file/../../../../etc/passwd", "/ui/gradio_api/file/..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/ui/file=/etc/passwd", "/ui/gradio_api/file=/proc/self/environ", "/ui/gradio_api/proxy=http://127.0.0.1/",
    "/ui/static/../../../../etc/passwd", "/ui/assets/..%2f..%2f..%2f..%2fetc%2fpasswd"])
def test_no_file_outside_the_ui_through_its_file_routes(ui_gateway: GatewayServer, path: str) -> None:
    cookies = session_cookie(ui_gateway)
    for jar in (cookies, {}):
        # A raw path: httpx would otherwise normalise the ../ away before sending.
        request = httpx.Request("GET", ui_gateway.url, cookies=jar)
        request.url = request.url.copy_with(raw_path=path.encode())
        with httpx.Client() as client:
            answer = client.send(request)
        assert answer.status_code != 200 or b"root:" not in answer.content, (path, answer.status_code)
        assert b"root:x:" not in answer.content and b"I2V_API_TOKEN" not in answer.content, path


def test_the_ui_and_the_api_are_one_process_and_the_ui_has_its_own_port_too(start_gateway) -> None:
    ui_port = free_port()
    gateway = start_gateway({**UI_ON, "I2V_UI_PORT": str(ui_port)})
    assert http_ok(f"{gateway.url}/healthz") and http_ok(f"{gateway.url}/ui/login")
    assert http_ok(f"http://127.0.0.1:{ui_port}/ui/login")
    assert gateway.process is not None
    assert listening_ports(gateway.process.pid) >= {gateway.port, ui_port}


def listening_ports(pid: int) -> set[int]:
    """The TCP ports process ``pid`` listens on, from /proc (its socket inodes)."""
    inodes = {os.readlink(f"/proc/{pid}/fd/{fd}")[8:-1] for fd in os.listdir(f"/proc/{pid}/fd")
              if os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:[")}
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in io.StringIO(Path(table).read_text()).readlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports
