"""Keys managed at run time (issue 24) against real Redis and two gateway replicas sharing it:
a key made through one works on the other, revocation, expiry and rotation reach the other at
once, the store holds no secret, scopes and quotas are enforced, usage equals what was done,
and the audit log lists each admin action. The CLI and the SDK drive the same admin API."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest
import redis

from i2v_client import Client
from i2v_client.admin import Admin, usage
from i2v_tools.servers import GatewayServer
from tests.client.test_cli import i2v
from tests.conftest import API_TOKEN
from tests.gateway.test_api import body
from tests.observability.servers import wait_for
from tests.support.readme import readme_block

pytestmark = pytest.mark.integration
ADMIN_TOKEN = "admin-token-0123456789abcdef"
METRICS_TOKEN = "metrics-token-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
BOUND_S = 120


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture(scope="module")
def redis_url(new_redis_url) -> str:
    return new_redis_url()


@pytest.fixture(scope="module")
def replicas(start_gateway, redis_url: str) -> tuple[GatewayServer, GatewayServer]:
    env = {"I2V_REDIS_URL": redis_url, "I2V_ADMIN_TOKEN": ADMIN_TOKEN, "I2V_METRICS_TOKEN": METRICS_TOKEN,
           "I2V_RATE_LIMIT_PER_MINUTE": "0", "I2V_MAX_CONCURRENT_PER_KEY": "0"}
    return start_gateway(env), start_gateway(env)


@pytest.fixture(scope="module")
def one(replicas) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=replicas[0].url, timeout=300) as client:
        yield client


@pytest.fixture(scope="module")
def other(replicas) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=replicas[1].url, timeout=300) as client:
        yield client


def new_key(api: httpx.Client, **fields) -> dict:
    answer = api.post("/admin/v1/keys", json={"name": "acme", "scopes": ["generate", "read"], **fields}, headers=ADMIN)
    assert answer.status_code == 201, answer.text
    return answer.json()


def test_a_key_made_on_one_replica_works_on_the_other_until_revoked_there(one, other, redis_url) -> None:
    made = new_key(one, owner="team video", expires_at=time.time() + 3600)
    secret = made["key"]
    assert secret.startswith("i2v_") and len(secret) >= 40 and made["prefix"] == secret[:12]
    assert other.get("/api/v1/jobs", headers=bearer(secret)).status_code == 200
    shown = other.get(f"/admin/v1/keys/{made['id']}", headers=ADMIN).json()
    assert "key" not in shown and shown["last_used_at"] is not None and shown["owner"] == "team video"

    # The store holds the key's hash, never the secret (nor its random part).
    store = redis.Redis.from_url(redis_url)
    dump = b"".join(name + repr(store.dump(name)).encode() for name in store.scan_iter("*"))
    assert made["id"].encode() in dump  # the scan did read the keys
    assert secret.encode() not in dump and secret[12:].encode() not in dump

    revoked = one.delete(f"/admin/v1/keys/{made['id']}", headers=ADMIN)
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    # No cache between requests: the very next request on the other replica is refused.
    refused = other.get("/api/v1/jobs", headers=bearer(secret))
    assert refused.status_code == 401 and "revoked" in refused.json()["message"]


def test_expiry_as_rfc3339_or_unix_seconds_and_an_expired_key_is_refused(one, other) -> None:
    later = dt.datetime.now(dt.timezone.utc).replace(microsecond=0) + dt.timedelta(days=2)
    by_text = new_key(one, expires_at=later.isoformat().replace("+00:00", "Z"))
    by_number = new_key(one, expires_at=int(later.timestamp()))
    assert by_text["expires_at"] == by_number["expires_at"] == later.isoformat().replace("+00:00", "Z")
    assert one.post("/admin/v1/keys", json={"name": "x", "scopes": ["read"], "expires_at": "tomorrow"},
                    headers=ADMIN).status_code == 422
    assert other.get("/api/v1/jobs", headers=bearer(by_text["key"])).status_code == 200
    for change in ({"quotas": {"video_per_day": 1}}, {"name": None}, {"scopes": []}):  # a typo, a null, no scope
        assert one.patch(f"/admin/v1/keys/{by_number['id']}", json=change, headers=ADMIN).status_code == 422
    past = one.patch(f"/admin/v1/keys/{by_text['id']}", json={"expires_at": int(time.time()) - 1}, headers=ADMIN)
    assert past.status_code == 200 and past.json()["status"] == "expired"
    refused = other.get("/api/v1/jobs", headers=bearer(by_text["key"]))
    assert refused.status_code == 401 and "expired" in refused.json()["message"]


def test_a_rotated_key_keeps_its_old_secret_for_the_overlap_only(one, other) -> None:
    made = new_key(one)
    rotated = one.post(f"/admin/v1/keys/{made['id']}/rotate", json={"overlap_s": 600}, headers=ADMIN)
    assert rotated.status_code == 201 and rotated.json()["key"] != made["key"] and rotated.json()["id"] == made["id"]
    for secret in (made["key"], rotated.json()["key"]):  # both, during the overlap
        assert other.get("/api/v1/usage", headers=bearer(secret)).status_code == 200

    # No overlap: the old secret stops at once (the one still in its 600 s overlap too).
    again = one.post(f"/admin/v1/keys/{made['id']}/rotate", json={"overlap_s": 0}, headers=ADMIN).json()
    for old in (made["key"], rotated.json()["key"]):
        assert other.get("/api/v1/usage", headers=bearer(old)).status_code == 401
    assert other.get("/api/v1/usage", headers=bearer(again["key"])).status_code == 200

    # A short overlap: accepted before its end, refused after it (every answer checked against the clock).
    overlap_s = 2.0
    before = time.time()
    newest = one.post(f"/admin/v1/keys/{made['id']}/rotate", json={"overlap_s": overlap_s}, headers=ADMIN).json()
    ends_at = dt.datetime.fromisoformat(newest["rotated_at"].replace("Z", "+00:00")).timestamp() + overlap_s

    def refused() -> bool:
        asked = time.time()
        status = other.get("/api/v1/usage", headers=bearer(again["key"])).status_code
        answered = time.time()  # the gateway checked the secret between these two (one host, one clock)
        assert (status == 200 and asked < ends_at + 0.01) or (status == 401 and answered + 0.01 >= ends_at), \
            (status, asked - before)
        return status == 401

    wait_for(refused, 30, "old secret refused after the overlap", interval=0.2)
    assert other.get("/api/v1/usage", headers=bearer(newest["key"])).status_code == 200


def test_scopes_are_enforced(one, other) -> None:
    reader = new_key(one, scopes=["read"])["key"]
    maker = new_key(one, scopes=["generate"])["key"]
    refused = other.post("/api/v1/jobs", json=body(), headers=bearer(reader))
    assert refused.status_code == 403 and "'generate' scope" in refused.json()["message"]
    assert other.get("/api/v1/jobs", headers=bearer(reader)).status_code == 200
    assert other.get("/api/v1/jobs", headers=bearer(maker)).status_code == 403
    for secret in (reader, maker, API_TOKEN):  # a configured key has no admin scope either
        answer = other.get("/admin/v1/keys", headers=bearer(secret))
        assert answer.status_code == 403 and "'admin' scope" in answer.json()["message"]
    assert other.get("/admin/v1/keys", headers=bearer("i2v_not-a-real-key-0123456789")).status_code == 401
    # Configured keys are listed with their source, read-only.
    listed = {key["id"]: key for key in other.get("/admin/v1/keys", headers=ADMIN).json()["keys"]}
    assert listed["env:default"]["source"] == "environment" and listed["env:default"]["read_only"]
    assert one.delete("/admin/v1/keys/env:default", headers=ADMIN).status_code == 409
    assert one.delete("/admin/v1/keys/key_nothing", headers=ADMIN).status_code == 404


def test_a_keys_own_rate_limit_is_shared_by_the_replicas(one, other) -> None:
    # The replicas run without a rate limit; this key has its own: one request, then 30 s a request.
    limited = bearer(new_key(one, limits={"rate_per_minute": 2, "rate_burst": 1})["key"])
    bad_image = body(image_base64="bm90IGFuIGltYWdl")
    assert one.post("/api/v1/jobs", json=bad_image, headers=limited).status_code == 400  # spent its one
    refused = other.post("/api/v1/jobs", json=bad_image, headers=limited)
    assert refused.status_code == 429 and "rate limit" in refused.json()["message"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 30
    assert other.post("/api/v1/jobs", json=bad_image, headers=bearer(API_TOKEN)).status_code == 400


def test_quota_and_usage_equal_what_was_done(one, other, replicas) -> None:
    capped = new_key(one, quotas={"videos_per_day": 1})
    free = new_key(one)
    first = one.post("/api/v1/generate", json=body(seed=5), headers=bearer(capped["key"]))
    assert first.status_code == 200, first.text
    over = other.post("/api/v1/generate", json=body(seed=6), headers=bearer(capped["key"]))
    assert over.status_code == 429 and "videos_per_day" in over.json()["message"], over.text
    tomorrow = dt.datetime.combine(dt.datetime.now(dt.timezone.utc).date() + dt.timedelta(days=1), dt.time(),
                                   dt.timezone.utc)
    assert 0 < int(over.headers["Retry-After"]) - (tomorrow.timestamp() - time.time()) <= 5
    assert other.post("/api/v1/jobs", json=body(), headers=bearer(capped["key"])).status_code == 429

    # The other key is unaffected: a video, the same again (a cache hit), a job, a bad image.
    secret = bearer(free["key"])
    made = one.post("/api/v1/generate", json=body(seed=7), headers=secret)
    hit = one.post("/api/v1/generate", json=body(seed=7), headers=secret)
    assert made.status_code == 200 and hit.status_code == 200 and hit.json()["cached"], hit.text
    job = other.post("/api/v1/jobs", json=body(seed=8, num_frames=9), headers=secret)
    assert job.status_code == 202, job.text
    assert one.post("/api/v1/generate", json=body(image_base64="bm90IGFuIGltYWdl"), headers=secret).status_code == 400
    wait_for(lambda: other.get(f"/api/v1/jobs/{job.json()['job_id']}", headers=secret).json()["status"]
             == "succeeded", BOUND_S, "the job")

    size = made.json()["width"] * made.json()["height"]
    expected = {"requests": 4, "videos": 3, "frames": 8 + 8 + 9, "cache_hits": 1, "failed": 1,
                "compute_units": round(2 * (8 + 9) * size / 1e6, 6)}

    def totals() -> dict | None:
        got = one.get("/api/v1/usage", headers=secret).json()["totals"]
        return got if got["requests"] == expected["requests"] else None

    got = wait_for(totals, 30, "the job's usage")  # recorded by whichever replica ended the job
    assert {name: got[name] for name in expected} == expected
    assert got["model_seconds"] > 0
    mine = other.get("/api/v1/usage", headers=bearer(capped["key"])).json()
    assert mine["totals"]["videos"] == 1 and mine["days"][0]["videos"] == 1
    assert mine["quotas"] == [{"quota": "videos_per_day", "limit": 1.0, "used": 1.0,
                               "resets_at": tomorrow.isoformat().replace("+00:00", "Z")}]
    everyone = {row["key"]: row for row in one.get("/admin/v1/usage", headers=ADMIN).json()["keys"]}
    assert everyone[free["id"]]["totals"]["videos"] == 3 and everyone[capped["id"]]["name"] == "acme"

    # Prometheus: the work per key, summed over both replicas.
    def videos_counted(gateway: GatewayServer) -> float:
        text = httpx.get(f"{gateway.url}/metrics", headers=bearer(METRICS_TOKEN)).text
        line = f'i2v_key_work_total{{key="{free["id"]}",unit="videos"}} '
        return sum(float(row[len(line):]) for row in text.splitlines() if row.startswith(line))

    assert sum(videos_counted(gateway) for gateway in replicas) == 3


def test_sdk_and_cli_admin_commands_and_the_audit_log(replicas, one) -> None:
    gateway = replicas[1]
    with Client(gateway.url, ADMIN_TOKEN) as client:
        admin = Admin(client)
        made = admin.create_key("sdk", ["read"], owner="ops", quotas={"videos_per_month": 5})
        assert made.key.startswith("i2v_") and made.quotas["videos_per_month"] == 5
        assert admin.update_key(made.id, name="sdk-renamed").name == "sdk-renamed"
        assert any(key.id == made.id for key in admin.list_keys())
        rotated = admin.rotate_key(made.id, overlap_s=60)
        with Client(gateway.url, rotated.key) as user:
            assert usage(user).key == made.id
        assert admin.revoke_key(made.id).status == "revoked"
        actions = [(entry.action, entry.target) for entry in admin.audit(20)]
        for action in ("key.create", "key.update", "key.rotate", "key.revoke"):
            assert (action, made.id) in actions
        entry = admin.audit(1)[0]
        assert entry.actor == "admin" and entry.client_ip == "127.0.0.1"

    created = i2v(gateway, "keys", "create", "cli", "--scopes", "generate,read", "--expires-at",
                  "2099-01-01T00:00:00Z", "--quotas", '{"videos_per_day": 2}', "--json", token=ADMIN_TOKEN)
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    assert key["expires_at"] == "2099-01-01T00:00:00Z" and key["quotas"]["videos_per_day"] == 2
    listed = i2v(gateway, "keys", "list", token=ADMIN_TOKEN)
    assert listed.returncode == 0 and key["id"] in listed.stdout and "environment" in listed.stdout
    own = i2v(gateway, "usage", "--json", token=key["key"])
    assert own.returncode == 0 and json.loads(own.stdout)[0]["key"] == key["id"], own.stderr
    rotated = i2v(gateway, "keys", "rotate", key["id"], "--overlap-s", "0", "--json", token=ADMIN_TOKEN)
    assert rotated.returncode == 0 and json.loads(rotated.stdout)["key"] != key["key"]
    assert i2v(gateway, "usage", token=key["key"]).returncode == 3  # the old secret: refused
    assert i2v(gateway, "keys", "revoke", key["id"], token=ADMIN_TOKEN).returncode == 0
    denied = i2v(gateway, "keys", "list", token=API_TOKEN)
    assert denied.returncode == 3 and "'admin' scope" in denied.stderr
    audit = i2v(gateway, "audit", "--json", token=ADMIN_TOKEN)
    entries = [(entry["action"], entry["target"], entry["actor"]) for entry in json.loads(audit.stdout)]
    for action in ("key.create", "key.rotate", "key.revoke"):
        assert (action, key["id"], "admin") in entries
    assert ("denied", None, "default") in entries


def test_the_readme_example_makes_a_key(one) -> None:
    script = readme_block("admin-curl").replace("localhost:8000", str(one.base_url).rstrip("/"))
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "I2V_ADMIN_TOKEN": ADMIN_TOKEN})
    made = json.loads(result.stdout)
    assert made["key"].startswith("i2v_") and made["quotas"]["videos_per_month"] == 200, result.stderr
    assert made["limits"]["max_concurrent"] == 2 and made["scopes"] == ["generate", "read"]
