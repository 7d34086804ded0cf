"""The UI's pieces that need no server: sessions, language choice, the string table, the guard's checks."""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
import redis.asyncio as aioredis
from fastapi import FastAPI
from PIL import Image
from pydantic import ValidationError

from gateway.config import Settings
from gateway.edge.client_ip import forwarded_scheme, parse_networks
from gateway.edge.rate_limit import RedisTokenBucketLimiter, TokenBucketLimiter
from gateway.edge.security_headers import page_headers
from gateway.edge.sessions import SessionStore, key_fingerprint, open_session_store
from gateway.errors import InvalidImageError
from gateway.jobs.redis_store import RedisJobStore
from gateway.jobs.sqlite_store import SQLiteJobStore
from gateway.schemas import VideoParams
from gateway.tenants.schemas import KeyUsage, QuotaState
from gateway.tenants.usage import UsageCounts
from gateway.ui.actions import (
    INPUTS_FOLDER,
    FormValues,
    UiActions,
    form_from_params,
    owner_tag,
    plain_validation,
    usage_html,
)
from gateway.ui.guard import file_allowed, kept_picture_of, same_origin
from gateway.ui.texts import TEXTS, pick_language


async def _session_lifecycle(sessions: SessionStore) -> None:
    alice = await sessions.create("alice.team", max_age_s=60, fingerprint=key_fingerprint("alice-key"))
    alice_again = await sessions.create("alice.team", max_age_s=60, fingerprint=key_fingerprint("alice-key"))
    bob = await sessions.create("bob", max_age_s=60)
    assert "alice" not in alice and len(alice) >= 40  # a random token: neither the name nor a key
    assert [await caller(sessions, t) for t in (alice, alice_again, bob)] == ["alice.team", "alice.team", "bob"]
    assert await sessions.session(alice) == ("alice.team", key_fingerprint("alice-key"))
    assert "alice-key" not in key_fingerprint("alice-key") and key_fingerprint("alice-key") != key_fingerprint("x")
    for junk in (None, "", "forged-token", alice + "x"):
        assert await sessions.session(junk) is None
    await sessions.revoke(alice)  # sign-out: that cookie is dead wherever it was copied
    assert await caller(sessions, alice) is None and await caller(sessions, alice_again) == "alice.team"
    assert await sessions.revoke_key("alice.team") == 1  # a removed or rotated key: all its sessions
    assert await caller(sessions, alice_again) is None and await caller(sessions, bob) == "bob"


async def caller(sessions: SessionStore, token: str | None) -> str | None:
    found = await sessions.session(token)
    return None if found is None else found.caller


def test_ui_sessions_in_sqlite_end_at_sign_out_expiry_and_key_revocation(tmp_path: Path) -> None:
    async def run() -> None:
        store = SQLiteJobStore(tmp_path / "jobs.sqlite3")
        sessions = open_session_store(store)
        await _session_lifecycle(sessions)
        expired = await sessions.create("carol", max_age_s=-1)  # ended a second ago
        assert await sessions.session(expired) is None
        await store.close()
        # A second gateway process on the same file sees the same sessions.
        again = SQLiteJobStore(tmp_path / "jobs.sqlite3")
        live = await open_session_store(again).create("dave", 60)
        assert await caller(open_session_store(again), live) == "dave"
        await again.close()
    asyncio.run(run())


def test_ui_sessions_in_redis_are_shared_by_replicas(new_redis_url) -> None:
    async def run() -> None:
        url = new_redis_url()
        one, two = aioredis.from_url(url), aioredis.from_url(url)
        try:
            await _session_lifecycle(open_session_store(RedisJobStore(one)))
            token = await open_session_store(RedisJobStore(one)).create("erin", max_age_s=60)
            other_replica = open_session_store(RedisJobStore(two))
            assert await caller(other_replica, token) == "erin"
            assert 0 < await one.pttl(f"i2v:uisession:{hashlib.sha256(token.encode()).hexdigest()}") <= 60_000
            await other_replica.revoke(token)
            assert await open_session_store(RedisJobStore(one)).session(token) is None
        finally:
            await one.aclose()
            await two.aclose()
    asyncio.run(run())


def test_a_locked_out_address_is_refused_before_any_key_is_compared() -> None:
    """peek() tells the lockout without spending; acquire() spends."""
    now = [1000.0]
    limiter = TokenBucketLimiter(per_minute=6, burst=2, clock=lambda: now[0])
    assert asyncio.run(limiter.peek("ip:x")).allowed
    for _ in range(2):
        assert asyncio.run(limiter.acquire("ip:x")).allowed
    for _ in range(3):  # peeking again and again spends nothing and changes nothing
        refused = asyncio.run(limiter.peek("ip:x"))
        assert not refused.allowed and refused.headers()["Retry-After"] == "10"
    now[0] += 10
    assert asyncio.run(limiter.peek("ip:x")).allowed


@pytest.mark.parametrize(("header", "language"), [
    ("zh-CN,zh;q=0.9,en;q=0.8", "zh"), ("en-US,en;q=0.9,zh;q=0.8", "en"), ("fr-FR,zh-TW;q=0.5", "zh"),
    ("de", "en"), (None, "en"), ("en;q=0.1,zh;q=0.9", "zh"), ("zh;q=bad", "en")])
def test_language_follows_the_browser(header: str | None, language: str) -> None:
    assert pick_language(header) == language


def test_every_string_exists_in_both_languages() -> None:
    assert TEXTS["en"].keys() == TEXTS["zh"].keys()


def test_file_routes_serve_only_inside_the_ui_folders(tmp_path: Path) -> None:
    root = tmp_path / "outputs"
    root.mkdir()
    (root / "a.mp4").write_bytes(b"x")
    (root / "link").symlink_to("/etc")
    roots = [root.resolve()]
    assert file_allowed(f"{root}/a.mp4", roots)
    for path in ("/etc/passwd", f"{root}/../../../../etc/passwd", f"{root}/link/passwd",
                 f"{root}/%2e%2e/%2e%2e/etc/passwd", f"{root}/%252e%252e%252f%252e%252e%252fetc/passwd",
                 "../../../etc/passwd", "http://example.com/x.png", ""):
        assert not file_allowed(path, roots), path


def _scope(headers: dict[str, str]) -> dict:
    return {"type": "http", "scheme": "http", "method": "POST", "path": "/ui/x", "server": ("127.0.0.1", 8000),
            "headers": [(k.encode(), v.encode()) for k, v in {"host": "127.0.0.1:8000", **headers}.items()]}


def test_state_changes_need_this_gateways_origin() -> None:
    assert same_origin(_scope({"origin": "http://127.0.0.1:8000"}), None)
    assert same_origin(_scope({"referer": "http://127.0.0.1:8000/ui/"}), None)
    assert same_origin(_scope({"origin": "https://videos.example.com"}), "https://videos.example.com/")
    for headers in ({}, {"origin": "null"}, {"origin": "http://evil.example"},
                    {"origin": "http://127.0.0.1:8001"}, {"referer": "http://127.0.0.1.evil.example/"}):
        assert not same_origin(_scope(headers), None), headers


def test_an_expired_upload_asks_for_the_image_again(tmp_path: Path) -> None:
    """Uploads are deleted after I2V_RETENTION_S; a form still naming one gets the reason, not a 500."""
    form = FormValues(image=str(tmp_path / "deleted.png"), prompt="a cat", negative_prompt="", resolution="256p",
                      num_frames=8, fps=8, steps=2, guidance_scale=9.0, seed=None, random_seed=True, fit="crop")
    with pytest.raises(InvalidImageError, match="expired; upload the image again"):
        asyncio.run(UiActions(FastAPI()).submit(form, "en", SimpleNamespace(username="alice")))  # type: ignore[arg-type]


def _proxied(peer: str, headers: dict[str, str]) -> dict:
    return {"type": "http", "client": (peer, 5000), "headers": [(k.encode(), v.encode()) for k, v in headers.items()]}


def test_the_scheme_is_taken_from_trusted_proxies_only() -> None:
    trusted = parse_networks(["10.0.0.0/8"])
    assert forwarded_scheme(_proxied("10.1.2.3", {"x-forwarded-proto": "https"}), trusted) == "https"
    assert forwarded_scheme(_proxied("10.1.2.3", {"x-forwarded-proto": "http, https"}), trusted) == "https"
    assert forwarded_scheme(_proxied("10.1.2.3", {"x-forwarded-proto": "gopher"}), trusted) is None
    assert forwarded_scheme(_proxied("10.1.2.3", {}), trusted) is None
    assert forwarded_scheme(_proxied("203.0.113.9", {"x-forwarded-proto": "https"}), trusted) is None


def test_pages_get_the_hardening_headers_and_the_api_only_nosniff() -> None:
    for path in ("/ui", "/ui/", "/ui/login", "/docs", "/redoc", "/static-offline-docs/swagger-ui.css"):
        headers = dict(page_headers(path))
        policy = headers[b"content-security-policy"].decode()
        assert "frame-ancestors 'none'" in policy and headers[b"x-frame-options"] == b"DENY", path
        assert ("'unsafe-eval'" in policy) == path.startswith("/ui"), path  # Gradio's templates only
    for path in ("/api/v1/jobs", "/outputs/x.mp4", "/healthz", "/uix", "/documents"):
        assert dict(page_headers(path)) == {b"x-content-type-options": b"nosniff"}, path


def _actions(**settings: object) -> UiActions:
    app = FastAPI()
    app.state.edge = SimpleNamespace(settings=Settings(api_token="unit-test-key-0123456789", **settings))
    return UiActions(app)


def test_uploads_the_api_would_refuse_are_refused_in_plain_words(tmp_path: Path) -> None:
    actions = _actions(max_image_bytes=20_000, max_image_pixels=20_000)
    small, wide, noise, text_file = (tmp_path / n for n in ("small.png", "wide.png", "noise.png", "note.png"))
    Image.new("RGB", (80, 60)).save(small)
    Image.new("RGB", (300, 100)).save(wide)
    Image.frombytes("RGB", (100, 100), os.urandom(100 * 100 * 3)).save(noise)  # ~30 kB: noise does not compress
    text_file.write_text("not a picture")
    assert actions.upload_problem(str(small), "en") is None
    assert actions.upload_problem(str(wide), "en") == ("This picture is 300 × 100 pixels; the largest accepted "
                                                         "is 0.02 million pixels. Choose a smaller one.")
    assert "the largest accepted is 0.02 MB" in (actions.upload_problem(str(noise), "en") or "")
    assert actions.upload_problem(str(text_file), "zh") == TEXTS["zh"]["not_an_image"]


def test_form_errors_name_the_field_and_say_what_is_allowed() -> None:
    form = FormValues(image="x.png", prompt="a cat", negative_prompt="", resolution="256p", num_frames=8, fps=8,
                      steps=500, guidance_scale=9.0, seed=None, random_seed=True, fit="crop")
    with pytest.raises(ValidationError) as refused:
        form.job_request("aGVsbG8=")
    message = plain_validation(refused.value, "en")
    assert message.startswith("Denoising steps: use a whole number from 1 to "), message
    assert "image_base64" not in message and "Input should" not in message


def test_reuse_brings_back_the_seed_the_video_was_made_with() -> None:
    params = VideoParams(prompt="a cat", seed=None)
    values = form_from_params(params, seed_used=1234)
    assert values[7] == 1234 and values[8] is False  # seed, Random unticked
    assert form_from_params(VideoParams(prompt="a cat", seed=5), seed_used=5)[7:9] == [5, False]


def test_the_lockout_in_redis_is_read_without_spending(new_redis_url) -> None:
    async def run() -> None:
        client = aioredis.from_url(new_redis_url())
        try:
            limiter = RedisTokenBucketLimiter(client, per_minute=1, burst=2)
            assert (await limiter.peek("ip:y")).allowed
            assert (await limiter.acquire("ip:y")).allowed and (await limiter.acquire("ip:y")).allowed
            for _ in range(3):
                refused = await limiter.peek("ip:y")
                assert not refused.allowed and 1 <= int(refused.headers()["Retry-After"]) <= 60
            assert (await limiter.peek("ip:other")).allowed
        finally:
            await client.aclose()
    asyncio.run(run())


def test_a_kept_picture_is_served_to_its_key_only(tmp_path: Path) -> None:
    folder = tmp_path / INPUTS_FOLDER
    folder.mkdir()
    alices = folder / f"0123abcd.{owner_tag('alice')}.png"
    alices.write_bytes(b"png")
    assert kept_picture_of(str(alices), "alice")
    assert not kept_picture_of(str(alices), "bob")
    assert not kept_picture_of(str(folder / "0123abcd.png"), "alice")  # no owner in the name: nobody's
    assert kept_picture_of(str(tmp_path / "outputs" / "video.mp4"), "bob")  # other files are not its business


def test_the_usage_box_shows_the_months_work_and_marks_a_reached_quota() -> None:
    resets = dt.datetime(2026, 12, 4, tzinfo=dt.timezone.utc)
    usage = KeyUsage(key="key_x", name="studio", days=[],
                     totals=UsageCounts(requests=4, videos=3, frames=24, compute_units=4.71, model_seconds=2.5,
                                        cache_hits=1, failed=1),
                     quotas=[QuotaState(quota="videos_per_day", limit=3, used=3, resets_at=resets),
                             QuotaState(quota="compute_units_per_month", limit=100, used=4.71, resets_at=resets)])
    shown = usage_html("en", usage)
    assert 'data-videos="3"' in shown and 'data-frames="24"' in shown and 'data-failed="1"' in shown
    assert "videos 3, frames 24, compute units 4.7, model seconds 2.5, from the cache 1, failed 1" in shown
    reached, open_ = shown.split("<li")[1:]
    assert 'class="i2v-quota i2v-quota-reached" data-quota="videos_per_day"' in reached
    assert "Videos today: 3 of 3 (resets 2026-12-04 00:00 UTC): reached" in reached
    assert "i2v-quota-reached" not in open_ and 'data-used="4.71" data-limit="100"' in open_
    assert "本月：3 个视频" in usage_html("zh", usage) and "今日视频：3 / 3" in usage_html("zh", usage)
    assert 'data-state="unavailable"' in usage_html("en", None)
    assert "<ul" not in usage_html("en", usage.model_copy(update={"quotas": []}))
