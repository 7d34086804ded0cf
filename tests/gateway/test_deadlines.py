"""A caller's deadline (Cancel-After) bounds every wait of a synchronous generation, against the
real gateway and tritonserver: behind a full key, behind a full gateway and in Triton's busy
queue the call is answered 504 within its deadline plus a second, leaves the key's line and
never runs in the model."""

from __future__ import annotations

import base64
import re
import time
from concurrent.futures import Future, ThreadPoolExecutor

import httpx
import pytest

from i2v_tools.servers import GatewayServer, TritonServer
from tests.support.media import gradient_png

pytestmark = pytest.mark.integration
KEYS = {name: f"{name}-key-0123456789" for name in ("alice", "bob", "carol", "dave")}
METRICS_TOKEN = "metrics-token-0123456789"
WAIT_S = 120
DEADLINE_S = 2.0
# Each blocker ends at its own deadline: 150 steps of 16 frames outlast it on any CPU, so the
# test takes as long on a fast machine as on a slow one, and never longer.
BLOCKER_DEADLINE = "10s"
# The calls that must never run ask for a step count nothing else asks for: the model's log of a
# run names it ("pipeline call: ... steps=3 in 0.4 s", "cancelled after N of 3 denoising steps").
NEVER_RUN_STEPS = 3
NEVER_RUN = re.compile(rf"steps={NEVER_RUN_STEPS} in |of {NEVER_RUN_STEPS} denoising steps")


def call(gateway: GatewayServer, key: str, steps: int, cancel_after: str | None = None,
         frames: int = 8) -> tuple[httpx.Response, float]:
    body = {"image_base64": base64.b64encode(gradient_png((96, 96))).decode(), "prompt": "a boat",
            "resolution": "256p", "num_frames": frames, "steps": steps}
    headers = {"Authorization": f"Bearer {KEYS[key]}"}
    if cancel_after is not None:
        headers["Cancel-After"] = cancel_after
    started = time.monotonic()
    answer = httpx.post(f"{gateway.url}/api/v1/generate", json=body, headers=headers, timeout=WAIT_S)
    return answer, time.monotonic() - started


def requests_seen(triton: TritonServer) -> int:
    """Requests Triton has answered for the model, run or not (cancelled in its queue included)."""
    stats = httpx.get(f"http://{triton.http_url}/v2/models/i2vgen_xl/stats", timeout=10).json()
    counts = stats["model_stats"][0]["inference_stats"]
    return int(counts["success"]["count"]) + int(counts["fail"]["count"])


def gauge(gateway: GatewayServer, name: str) -> float:
    text = httpx.get(f"{gateway.url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}).text
    match = re.search(rf"^{name} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} is not among the gateway's metrics"
    return float(match.group(1))


def wait_for_gauge(gateway: GatewayServer, name: str, value: float, blockers: list[Future]) -> None:
    deadline = time.monotonic() + WAIT_S
    while gauge(gateway, name) != value:
        assert not any(b.done() for b in blockers), [b.result() for b in blockers if b.done()]
        assert time.monotonic() < deadline, f"{name} never reached {value}"
        time.sleep(0.05)


def assert_timed_out_in_time(answer: httpx.Response, took_s: float, where: str) -> None:
    assert answer.status_code == 504, answer.text
    assert answer.json()["success"] is False and "Cancel-After deadline of 2 s" in answer.json()["message"]
    assert where in answer.json()["message"], answer.json()["message"]
    assert took_s < DEADLINE_S + 1, f"answered {took_s:.2f} s after a {DEADLINE_S:g} s deadline"


def test_the_deadline_bounds_the_wait_behind_a_full_key_a_full_gateway_and_a_busy_triton(
        start_gateway, triton: TritonServer) -> None:
    # One slot a key, two in all, one waiting call a key.
    gateway = start_gateway({"I2V_API_KEYS": ",".join(f"{n}={k}" for n, k in KEYS.items()),
                             "I2V_MAX_CONCURRENT_PER_KEY": "1", "I2V_MAX_CONCURRENT_GENERATIONS": "2",
                             "I2V_MAX_WAITING_PER_KEY": "1", "I2V_RATE_LIMIT_PER_MINUTE": "0",
                             "I2V_CACHE_MAX_BYTES": "0", "I2V_METRICS_TOKEN": METRICS_TOKEN})
    before_seen = requests_seen(triton)
    before_log = len(NEVER_RUN.findall(triton.server_log.read_text()))
    with ThreadPoolExecutor(6) as pool:
        # Alice's long call holds her slot and Triton's one model instance.
        alice = pool.submit(call, gateway, "alice", 150, BLOCKER_DEADLINE, 16)
        wait_for_gauge(gateway, "i2v_generations_in_flight", 1, [alice])

        # A busy Triton: Dave's call is admitted by the gateway and waits in Triton's queue.
        answer, took_s = call(gateway, "dave", NEVER_RUN_STEPS, f"{DEADLINE_S:g}s")
        assert_timed_out_in_time(answer, took_s, "passed")

        # Bob's long call takes the gateway's second slot (it waits in Triton behind Alice's).
        bob = pool.submit(call, gateway, "bob", 150, BLOCKER_DEADLINE, 16)
        wait_for_gauge(gateway, "i2v_generations_in_flight", 2, [alice, bob])

        # A full key (Alice's) and a full gateway (Carol's): both wait for a slot, past their deadline.
        waiting = [pool.submit(call, gateway, key, NEVER_RUN_STEPS, f"{DEADLINE_S:g}s") for key in ("alice", "carol")]
        for answer, took_s in (w.result() for w in waiting):
            assert_timed_out_in_time(answer, took_s, "while the call waited for a generation slot")
        assert not alice.done() and not bob.done(), "the blockers ended before the deadlines were tested"
        # They left the lines: none waits, and Alice's line (of one) takes her next call.
        assert gauge(gateway, "i2v_sync_generations_queued") == 0
        alice_again = pool.submit(call, gateway, "alice", 1)
        wait_for_gauge(gateway, "i2v_sync_generations_queued", 1, [alice, bob])
        ends = [alice.result(), bob.result(), alice_again.result()]
    assert ends[2][0].status_code == 200, ends[2][0].text
    assert all(answer.status_code in (200, 504) for answer, _ in ends), [a.text for a, _ in ends]
    # Triton saw the blockers, Dave's call (dropped from its queue) and Alice's last call; the
    # calls that timed out waiting for a gateway slot never reached it.
    seen = before_seen + 4
    deadline = time.monotonic() + 30
    while requests_seen(triton) < seen and time.monotonic() < deadline:
        time.sleep(0.05)  # Triton counts a request just after answering it
    assert requests_seen(triton) == seen
    # And none that timed out ran, not even for a step: the model logged no run of theirs,
    # finished or cancelled.
    assert len(NEVER_RUN.findall(triton.server_log.read_text())) == before_log
