"""Named keys, rate limits and concurrency limits over HTTP against the real gateway."""

from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.support.media import gradient_png

pytestmark = pytest.mark.integration
ALICE, BOB = "alice-key-0123456789", "bob-key-0123456789"


def body(**overrides) -> dict:
    return {"image_base64": base64.b64encode(gradient_png((96, 96))).decode(), "prompt": "a cat",
            "resolution": "256p", "num_frames": 8, "steps": 1, **overrides}


@pytest.fixture(scope="module")
def limited(start_gateway, tmp_path_factory):
    keys_file = tmp_path_factory.mktemp("keys") / "keys"
    keys_file.write_text(f"# named keys\nbob={BOB}\n")
    return start_gateway({"I2V_API_KEYS": f"alice={ALICE}", "I2V_API_KEYS_FILE": str(keys_file),
                          "I2V_RATE_LIMIT_PER_MINUTE": "3", "I2V_RATE_LIMIT_BURST": "3",
                          "I2V_MAX_CONCURRENT_PER_KEY": "1", "I2V_MAX_WAITING_PER_KEY": "0"})


def post(gateway, key: str | None, **overrides) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"{gateway.url}/api/v1/generate", json=body(**overrides), headers=headers, timeout=120)


def test_burst_beyond_the_limit_gets_429_and_other_keys_are_unaffected(limited) -> None:
    answers = [post(limited, ALICE, seed=i) for i in range(4)]
    assert [a.status_code for a in answers[:3]] == [200, 200, 200], [a.text for a in answers]
    assert answers[0].headers["RateLimit-Limit"] == "3"
    assert [a.headers["RateLimit-Remaining"] for a in answers[:3]] == ["2", "1", "0"]
    refused = answers[3]
    assert refused.status_code == 429 and refused.json()["success"] is False
    assert "rate limit for key 'alice'" in refused.json()["message"]
    assert int(refused.headers["Retry-After"]) >= 1
    assert post(limited, BOB).status_code == 200  # a key from the keys file, with its own budget


def test_a_key_over_its_cap_with_a_full_line_gets_429(limited) -> None:
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda seed: post(limited, BOB, steps=40, seed=seed), (1, 2)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200, 429], [a.text for a in answers]
    refused = next(a for a in answers if a.status_code == 429)
    assert "1 generations running and 0 waiting" in refused.json()["message"] and refused.headers["Retry-After"]


def test_failed_logins_are_limited_per_address(limited) -> None:
    statuses = [post(limited, "wrong-key-0123456789").status_code for _ in range(5)]
    assert statuses[0] == 401 and statuses[-1] == 429


def test_the_log_names_keys_and_never_shows_them(limited) -> None:
    httpx.post(f"{limited.url}/api/v1/generate?token={ALICE}", json=body(steps=0))
    log = limited.log_path.read_text()
    assert "key=alice" in log and "key=bob" in log
    assert ALICE not in log and BOB not in log


def test_replicas_on_one_redis_share_a_keys_budget(start_gateway, new_redis_url) -> None:
    # No job workers: the accepted jobs only need to be counted, not run.
    shared = {"I2V_REDIS_URL": new_redis_url(), "I2V_API_KEYS": f"alice={ALICE},bob={BOB}",
              "I2V_RATE_LIMIT_PER_MINUTE": "3", "I2V_RATE_LIMIT_BURST": "3", "I2V_JOB_WORKERS": "0"}
    first, second = start_gateway(shared), start_gateway(shared)

    def submit(gateway, key: str) -> httpx.Response:
        return httpx.post(f"{gateway.url}/api/v1/jobs", json=body(), headers={"Authorization": f"Bearer {key}"})

    answers = [submit(gateway, ALICE) for gateway in (first, second, first, second, first)]
    assert [a.status_code for a in answers] == [202, 202, 202, 429, 429], [a.text for a in answers]
    assert [a.headers["RateLimit-Remaining"] for a in answers[:3]] == ["2", "1", "0"]
    assert int(answers[3].headers["Retry-After"]) >= 1
    assert submit(second, BOB).status_code == 202  # another key, its own budget


def test_reads_have_their_own_budget(start_gateway) -> None:
    gateway = start_gateway({"I2V_API_KEYS": f"alice={ALICE}", "I2V_READ_RATE_LIMIT_PER_MINUTE": "6",
                             "I2V_READ_RATE_LIMIT_BURST": "3", "I2V_JOB_WORKERS": "0"})
    headers = {"Authorization": f"Bearer {ALICE}"}
    reads = [httpx.get(f"{gateway.url}/api/v1/jobs", headers=headers) for _ in range(4)]
    assert [r.status_code for r in reads] == [200, 200, 200, 429], [r.text for r in reads]
    assert [r.headers["RateLimit-Remaining"] for r in reads[:3]] == ["2", "1", "0"]
    assert "read rate limit for key 'alice'" in reads[3].json()["message"] and int(reads[3].headers["Retry-After"]) >= 1
    # Polling spent the read budget, not the one for submissions.
    submitted = httpx.post(f"{gateway.url}/api/v1/jobs", json=body(), headers=headers)
    assert submitted.status_code == 202, submitted.text
    assert httpx.get(submitted.headers["location"], headers=headers).status_code == 429
