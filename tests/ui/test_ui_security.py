"""What SECURITY.md promises of the web UI, over HTTP as a hostile caller tries it: a lockout that
holds for the right key too, sessions that end at sign-out, hardened pages, no credentialed
CORS, and a Secure cookie behind a TLS proxy (a real haproxy)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from i2v_tools.servers import GatewayServer
from tests.conftest import API_TOKEN
from tests.support import tls_proxy

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
PROXY = "127.0.0.1/32"
ALLOWED_ORIGIN = "https://app.example"


@pytest.fixture(scope="module")
def proxied_gateway(start_gateway) -> GatewayServer:
    """Behind a trusted proxy on loopback, with a small failed-sign-in budget (3, then one a minute)."""
    return start_gateway({"I2V_UI_ENABLED": "true", "I2V_TRUSTED_PROXIES": PROXY, "I2V_CORS_ORIGINS": ALLOWED_ORIGIN,
                          "I2V_RATE_LIMIT_PER_MINUTE": "1", "I2V_RATE_LIMIT_BURST": "3"})


@pytest.fixture(scope="module")
def tls(proxied_gateway: GatewayServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tls_proxy.TlsProxy]:
    if not tls_proxy.available():
        pytest.skip("Debian's haproxy or openssl is missing (scripts/setup.sh --dev)")
    proxy = tls_proxy.TlsProxy(tmp_path_factory.mktemp("tls-proxy"), f"127.0.0.1:{proxied_gateway.port}")
    proxy.start()
    proxy.wait_until(lambda: _answers(f"{proxy.url}/healthz"), 30, "haproxy with TLS")
    yield proxy
    proxy.stop()


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, verify=False, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def sign_in(base: str, key: str = API_TOKEN, **kwargs) -> httpx.Response:
    return httpx.post(f"{base}/ui/login", data={"key": key}, headers={"Origin": base, **kwargs.pop("headers", {})},
                      **kwargs)


def test_a_locked_out_address_gets_429_for_the_right_key_in_the_ui_and_the_api(proxied_gateway) -> None:
    base = proxied_gateway.url
    guesser = {"X-Forwarded-For": "203.0.113.7"}  # its own address, through the trusted proxy
    for _ in range(3):
        assert sign_in(base, "wrong-key-0123456789", headers=guesser).status_code == 401
    assert sign_in(base, "wrong-key-0123456789", headers=guesser).status_code == 429
    # Locked out: the right key learns nothing more than a wrong one, and no session is made.
    for attempt in (sign_in(base, headers=guesser),
                    sign_in(base, headers={**guesser, "Accept-Language": "zh-CN"}),
                    httpx.get(f"{base}/api/v1/jobs", headers={**AUTH, **guesser}),
                    httpx.get(f"{base}/api/v1/jobs", headers={"Authorization": "Bearer nope-0123456789", **guesser})):
        assert attempt.status_code == 429, (attempt.request.url, attempt.text)
        assert 1 <= int(attempt.headers["Retry-After"]) <= 60
        assert "set-cookie" not in attempt.headers
    assert "Wait" in sign_in(base, headers=guesser).text
    assert "秒后再试" in sign_in(base, headers={**guesser, "Accept-Language": "zh-CN"}).text
    # Another address is not locked out by this one.
    assert sign_in(base, headers={"X-Forwarded-For": "198.51.100.9"}).status_code == 303
    assert httpx.get(f"{base}/api/v1/jobs", headers={**AUTH, "X-Forwarded-For": "198.51.100.9"}).status_code == 200


def test_a_cookie_copied_before_sign_out_is_refused_after_it(gateway: GatewayServer) -> None:
    signed_in = sign_in(gateway.url)
    assert signed_in.status_code == 303
    cookies = dict(signed_in.cookies)
    page = httpx.get(f"{gateway.url}/ui/", cookies=cookies)
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert httpx.get(f"{gateway.url}/ui/config", cookies=cookies).status_code == 200
    out = httpx.post(f"{gateway.url}/ui/logout", cookies=cookies, headers={"Origin": gateway.url})
    assert out.status_code == 303 and out.headers["location"] == "/ui/login"
    assert 'i2v_ui_session=""' in out.headers["set-cookie"] and out.headers["clear-site-data"] == '"cache"'
    # The copy still in an attacker's hands:
    refused = httpx.get(f"{gateway.url}/ui/config", cookies=cookies)
    assert refused.status_code == 401 and "signed out" in refused.json()["message"]
    assert httpx.get(f"{gateway.url}/ui/", cookies=cookies).status_code == 303
    # A session of another sign-in of the same key is its own: it lives on.
    other = dict(sign_in(gateway.url).cookies)
    assert httpx.get(f"{gateway.url}/ui/config", cookies=other).status_code == 200


@pytest.mark.parametrize("path", ["/ui/login", "/ui/", "/ui/config", "/docs", "/redoc", "/ui/nope"])
def test_ui_and_docs_pages_cannot_be_framed_and_are_hardened(gateway: GatewayServer, path: str) -> None:
    cookies = dict(sign_in(gateway.url).cookies)
    answer = httpx.get(f"{gateway.url}{path}", cookies=cookies)
    assert answer.status_code in (200, 404), answer.status_code
    policies = answer.headers.get_list("content-security-policy")
    assert any("frame-ancestors 'none'" in policy for policy in policies), policies
    assert any("script-src 'self'" in policy and "object-src 'none'" in policy for policy in policies), policies
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "same-origin"
    if path == "/redoc":  # its own policy (no logo from the CDN) is kept beside ours
        assert "img-src 'self' data:" in policies


@pytest.mark.parametrize("origin", ["http://evil.example", "http://localhost:22300", "http://127.0.0.1:1", "null"])
def test_no_origin_gets_cors_on_the_ui_unless_configured(gateway: GatewayServer, origin: str) -> None:
    cookies = dict(sign_in(gateway.url).cookies)
    read = httpx.get(f"{gateway.url}/ui/config", cookies=cookies, headers={"Origin": origin})
    assert read.status_code == 200
    preflight = httpx.options(f"{gateway.url}/ui/gradio_api/queue/join", cookies=cookies,
                              headers={"Origin": origin, "Access-Control-Request-Method": "POST"})
    for answer in (read, preflight):
        granted = {k: v for k, v in answer.headers.items() if k.startswith("access-control-")}
        assert granted == {}, (answer.request.method, granted)


def test_a_configured_origin_gets_cors_on_the_ui_without_credentials(proxied_gateway: GatewayServer) -> None:
    base = proxied_gateway.url
    cookies = dict(sign_in(base, headers={"X-Forwarded-For": "198.51.100.10"}).cookies)
    allowed = httpx.get(f"{base}/ui/config", cookies=cookies, headers={"Origin": ALLOWED_ORIGIN})
    assert allowed.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    assert "access-control-allow-credentials" not in allowed.headers
    other = httpx.get(f"{base}/ui/config", cookies=cookies, headers={"Origin": "http://localhost:22300"})
    assert not any(name.startswith("access-control-") for name in other.headers)


def test_sign_in_through_a_tls_proxy_sets_a_secure_cookie(tls: tls_proxy.TlsProxy) -> None:
    with pytest.raises(httpx.ConnectError):  # really TLS, with a certificate nobody vouches for
        httpx.get(f"{tls.url}/healthz")
    with httpx.Client(verify=False) as browser:
        page = browser.get(f"{tls.url}/ui/login")
        assert page.status_code == 200 and "frame-ancestors 'none'" in page.headers["content-security-policy"]
        signed_in = browser.post(f"{tls.url}/ui/login", data={"key": API_TOKEN}, headers={"Origin": tls.url})
        assert signed_in.status_code == 303, signed_in.text
        cookie = signed_in.headers["set-cookie"]
        assert "; Secure" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie, cookie
        assert browser.get(f"{tls.url}/ui/config").status_code == 200
        out = browser.post(f"{tls.url}/ui/logout", headers={"Origin": tls.url})
        assert out.status_code == 303 and "; Secure" in out.headers["set-cookie"]


def test_forwarded_headers_from_an_untrusted_peer_are_ignored(gateway: GatewayServer) -> None:
    """The session gateway trusts no proxy: a client claiming TLS gets no Secure cookie and, with
    an https Origin, is refused as cross-origin."""
    plain = sign_in(gateway.url, headers={"X-Forwarded-Proto": "https"})
    assert plain.status_code == 303 and "Secure" not in plain.headers["set-cookie"]
    host = gateway.url.removeprefix("http://")
    claimed = httpx.post(f"{gateway.url}/ui/login", data={"key": API_TOKEN},
                         headers={"Origin": f"https://{host}", "X-Forwarded-Proto": "https"})
    assert claimed.status_code == 403



def test_sessions_are_shared_through_the_store_and_end_when_the_key_is_rotated(start_gateway, tmp_path) -> None:
    """Two gateways on one SQLite file: the session made on one is good on the other while the key
    is the same, and refused where the key of that name now has another value (a rotation)."""
    database = str(tmp_path / "jobs.sqlite3")
    old, new = "rotating-key-0123456789", "rotated-key-9876543210"
    before = start_gateway({"I2V_UI_ENABLED": "true", "I2V_JOBS_DB": database, "I2V_API_KEYS": f"team={old}"})
    after = start_gateway({"I2V_UI_ENABLED": "true", "I2V_JOBS_DB": database, "I2V_API_KEYS": f"team={new}"})
    cookies = dict(sign_in(before.url, old).cookies)
    assert httpx.get(f"{before.url}/ui/config", cookies=cookies).status_code == 200
    assert httpx.get(f"{after.url}/ui/config", cookies=cookies).status_code == 401
    fresh = dict(sign_in(after.url, new).cookies)  # the store is shared: either gateway knows it
    assert httpx.get(f"{after.url}/ui/config", cookies=fresh).status_code == 200
    assert httpx.get(f"{before.url}/ui/config", cookies=fresh).status_code == 401
