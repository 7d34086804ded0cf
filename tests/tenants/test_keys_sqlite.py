"""Keys in the SQLite job store (one gateway): a key made through the admin API runs a job, the
job's work lands in the key's usage (recorded where the job ended), and the file holds no secret."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.gateway.test_api import body
from tests.observability.servers import wait_for
from tests.tenants.test_keys_across_replicas import ADMIN, ADMIN_TOKEN, bearer

pytestmark = pytest.mark.integration


def test_a_stored_key_runs_a_job_and_its_usage_is_recorded(start_gateway, tmp_path: Path) -> None:
    jobs_db = tmp_path / "jobs.sqlite3"
    gateway = start_gateway({"I2V_ADMIN_TOKEN": ADMIN_TOKEN, "I2V_JOBS_DB": str(jobs_db),
                             "I2V_RATE_LIMIT_PER_MINUTE": "0"})
    with httpx.Client(base_url=gateway.url, timeout=120) as api:
        made = api.post("/admin/v1/keys", json={"name": "solo", "scopes": ["generate", "read"],
                                                "quotas": {"compute_units_per_month": 1000}}, headers=ADMIN)
        assert made.status_code == 201, made.text
        secret = bearer(made.json()["key"])
        job = api.post("/api/v1/jobs", json=body(seed=3), headers=secret)
        assert job.status_code == 202, job.text
        assert job.json()["job_id"] in {j["job_id"] for j in api.get("/api/v1/jobs", headers=secret).json()["jobs"]}
        done = wait_for(lambda: (j := api.get(f"/api/v1/jobs/{job.json()['job_id']}", headers=secret).json())
                        ["status"] == "succeeded" and j, 120, "the job")
        usage = wait_for(lambda: (u := api.get("/api/v1/usage", headers=secret).json())["totals"]["videos"] and u,
                         30, "the job's usage")
        width, height = done["result"]["width"], done["result"]["height"]
        assert usage["totals"]["frames"] == 8 and usage["totals"]["requests"] == 1
        assert usage["totals"]["compute_units"] == round(2 * 8 * width * height / 1e6, 6)
        assert usage["quotas"][0]["quota"] == "compute_units_per_month"
        assert usage["quotas"][0]["used"] == usage["totals"]["compute_units"]
        assert api.delete(f"/admin/v1/keys/{made.json()['id']}", headers=ADMIN).status_code == 200
        assert api.get("/api/v1/usage", headers=secret).status_code == 401
    stored = b"".join(path.read_bytes() for path in tmp_path.iterdir() if path.name.startswith("jobs.sqlite3"))
    assert made.json()["id"].encode() in stored and made.json()["key"].encode() not in stored


def test_a_stored_key_signs_in_to_the_web_ui_until_it_is_rotated_or_revoked(start_gateway, tmp_path: Path) -> None:
    gateway = start_gateway({"I2V_UI_ENABLED": "true", "I2V_ADMIN_TOKEN": ADMIN_TOKEN,
                             "I2V_JOBS_DB": str(tmp_path / "jobs.sqlite3")})

    def sign_in(key: str) -> httpx.Response:
        return httpx.post(f"{gateway.url}/ui/login", data={"key": key}, headers={"Origin": gateway.url}, timeout=30)

    def config_status(cookies: dict) -> int:
        return httpx.get(f"{gateway.url}/ui/config", cookies=cookies, timeout=30).status_code

    with httpx.Client(base_url=gateway.url, timeout=60, headers=ADMIN) as admin:
        maker = admin.post("/admin/v1/keys", json={"name": "studio", "scopes": ["generate", "read"]}).json()
        reader = admin.post("/admin/v1/keys", json={"name": "viewer", "scopes": ["read"]}).json()
        # A key that may not make videos, the admin token included, gets no session.
        for key in (reader["key"], ADMIN_TOKEN):
            refused = sign_in(key)
            assert refused.status_code == 403 and "generate scope" in refused.text
            assert "set-cookie" not in refused.headers
        first = dict(sign_in(maker["key"]).cookies)
        assert first and config_status(first) == 200
        # Rotation keeps the old secret for API calls during the overlap, but ends UI sessions.
        rotated = admin.post(f"/admin/v1/keys/{maker['id']}/rotate", json={"overlap_s": 600})
        assert rotated.status_code == 201
        assert config_status(first) == 401
        second = dict(sign_in(rotated.json()["key"]).cookies)
        assert config_status(second) == 200
        assert admin.delete(f"/admin/v1/keys/{maker['id']}").status_code == 200
        assert config_status(second) == 401
        assert sign_in(rotated.json()["key"]).status_code == 401
