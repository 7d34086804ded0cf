"""Fair queueing of synchronous generations against the real gateway and tritonserver: calls over
a key's cap wait their turn instead of failing, and another key is not stuck behind them."""

from __future__ import annotations

import base64
import re
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.support.media import gradient_png

pytestmark = pytest.mark.integration
ALICE, BOB = "alice-key-0123456789", "bob-key-0123456789"
WAIT_S = 120


def post(gateway, key: str, seed: int) -> tuple[httpx.Response, float]:
    body = {"image_base64": base64.b64encode(gradient_png((96, 96))).decode(), "prompt": "a boat",
            "resolution": "256p", "num_frames": 8, "steps": 6, "seed": seed}
    answer = httpx.post(f"{gateway.url}/api/v1/generate", json=body, headers={"Authorization": f"Bearer {key}"},
                        timeout=WAIT_S * 2)
    return answer, time.monotonic()


def wait_for_log(gateway, text: str, count: int) -> None:
    deadline = time.monotonic() + WAIT_S
    while gateway.log_path.read_text().count(text) < count:
        assert time.monotonic() < deadline, f"the gateway never logged {text!r} {count} times"
        time.sleep(0.05)


def test_eight_calls_of_one_key_all_succeed_and_another_key_is_served_first(start_gateway) -> None:
    # Default limits: 4 generations per key, 8 in all, 16 waiting per key.
    gateway = start_gateway({"I2V_API_KEYS": f"alice={ALICE},bob={BOB}", "I2V_CACHE_MAX_BYTES": "0"})
    with ThreadPoolExecutor(9) as pool:
        alice = [pool.submit(post, gateway, ALICE, seed) for seed in range(8)]
        # Alice's calls beyond her 4 wait in her line: the gateway says so as each one queues.
        wait_for_log(gateway, "key alice waits for a generation slot", 4)
        bob = pool.submit(post, gateway, BOB, 100)
        answers = [future.result() for future in alice]
        bob_answer, bob_done = bob.result()
    assert [a.status_code for a, _ in answers] == [200] * 8, [a.text for a, _ in answers]
    assert bob_answer.status_code == 200, bob_answer.text
    # Bob's one call did not wait for Alice's line to drain.
    assert bob_done < max(done for _, done in answers)
    assert "key bob waits" not in gateway.log_path.read_text()


def test_cancel_after_ends_a_synchronous_generation_with_a_504(gateway, triton) -> None:
    pattern = re.compile(r"cancelled after (\d+) of 150 denoising steps")
    before = len(pattern.findall(triton.server_log.read_text()))
    body = {"image_base64": base64.b64encode(gradient_png((96, 96))).decode(), "prompt": "a boat",
            "resolution": "256p", "num_frames": 8, "steps": 150}
    answer = httpx.post(f"{gateway.url}/api/v1/generate", json=body,
                        headers={"Authorization": f"Bearer {gateway.token}", "Cancel-After": "2s"}, timeout=WAIT_S)
    assert answer.status_code == 504, answer.text
    assert answer.json() == {"success": False, "message": "cancelled: the Cancel-After deadline of 2 s passed",
                             "video_path": None, "video_url": None, "inference_time": None}
    # The model stopped early, within a step of the cancel.
    deadline = time.monotonic() + WAIT_S
    while len(stopped := pattern.findall(triton.server_log.read_text())) <= before:
        assert time.monotonic() < deadline, "Triton never logged the cancelled request"
        time.sleep(0.1)
    assert int(stopped[-1]) < 150
