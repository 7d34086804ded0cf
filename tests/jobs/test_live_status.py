"""Live job status against real gateways and tritonserver, for each job store: the queue
position and ETA of a waiting job (in its body and its event stream), keys served in turn,
Cancel-After deadlines and the webhook event filter."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from i2v_tools.servers import GatewayServer, TritonServer
from tests.gateway.test_api import AUTH, body
from tests.jobs.conftest import WEBHOOK_SECRET
from tests.jobs.test_jobs import FINAL, OTHER, poll
from tests.support.sse import read_events
from tests.support.webhooks import WebhookReceiver

pytestmark = pytest.mark.integration


def submit(gateway: GatewayServer, headers: dict, extra: dict | None = None, **fields) -> dict:
    answer = httpx.post(f"{gateway.url}/api/v1/jobs", json=body(**fields), headers={**headers, **(extra or {})},
                        timeout=30)
    assert answer.status_code == 202, answer.text
    return answer.json()


def get(gateway: GatewayServer, job_id: str, headers: dict = AUTH) -> dict:
    return httpx.get(f"{gateway.url}/api/v1/jobs/{job_id}", headers=headers, timeout=10).json()


def finished(gateway: GatewayServer, job_id: str, headers: dict = AUTH, timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while (job := get(gateway, job_id, headers))["status"] not in FINAL:
        assert time.monotonic() < deadline, f"job {job_id} still {job['status']} after {timeout} s"
        time.sleep(0.2)
    return job


def seconds_between(start: str, end: str) -> float:
    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def test_waiting_jobs_show_their_place_and_keys_are_served_in_turn(jobs_gateway: GatewayServer) -> None:
    # One worker: a long job runs (until cancelled below) while the others wait.
    first = submit(jobs_gateway, AUTH, steps=150)["job_id"]
    running = poll(jobs_gateway, first, lambda j: j["status"] == "running" and (j["progress"] or {}).get("step"))
    assert running["queue_position"] is None and running["eta_s"] is not None and running["eta_s"] > 0
    mine = [submit(jobs_gateway, AUTH, steps=4)["job_id"] for _ in range(2)]
    theirs = submit(jobs_gateway, OTHER, steps=4)
    # The other key has nothing running: its job goes before this key's two, submitted earlier.
    assert theirs["queue_position"] == 1, theirs
    places = [get(jobs_gateway, job_id)["queue_position"] for job_id in mine]
    assert places == [2, 3], places
    waiting = get(jobs_gateway, mine[1])
    assert waiting["status"] == "queued" and waiting["eta_s"] is not None and waiting["eta_s"] > 0, waiting

    # The last one's stream: its queued event carries its place, and the place moves up as the others run.
    url = f"{jobs_gateway.url}/api/v1/jobs/{mine[1]}/events"
    [now] = read_events(url, AUTH, limit=1)
    assert now.type == "queued" and now.data["queue_position"] == 3 and now.data["eta_s"] > 0, now
    with ThreadPoolExecutor(1) as pool:
        stream = pool.submit(read_events, url, AUTH)
        httpx.delete(f"{jobs_gateway.url}/api/v1/jobs/{first}", headers=AUTH)
        events = stream.result()
    queued = [e.data for e in events if e.type == "queued"]
    assert queued and all("queue_position" in data for data in queued), events
    positions = [data["queue_position"] for data in queued]
    assert positions == sorted(positions, reverse=True) and positions[0] <= 3, positions
    steps = [e.data for e in events if e.type == "running" and e.data.get("step")]
    assert steps and all(data["eta_s"] >= 0 for data in steps), events
    assert steps[-1]["eta_s"] == 0  # the last step leaves nothing
    assert events[-1].type == "succeeded", events
    # Logged events are never repeated: a place update carries the id of the event before it.
    ids = [int(e.id) for e in events]
    assert ids == sorted(ids) and list(dict.fromkeys(ids)) == list(range(1, ids[-1] + 1))

    ended = {job_id: finished(jobs_gateway, job_id, headers) for job_id, headers in
             ((first, AUTH), (mine[0], AUTH), (mine[1], AUTH), (theirs["job_id"], OTHER))}
    order = sorted(ended, key=lambda job_id: ended[job_id]["started_at"])
    assert order == [first, theirs["job_id"], *mine], order
    assert [ended[job_id]["status"] for job_id in order] == ["cancelled", "succeeded", "succeeded", "succeeded"]
    assert all(job["eta_s"] is None and job["queue_position"] is None for job in ended.values())


def test_cancel_after_stops_a_running_job_mid_denoise_and_a_waiting_one(jobs_gateway: GatewayServer,
                                                                      triton: TritonServer) -> None:
    pattern = re.compile(r"cancelled after (\d+) of 150 denoising steps")
    before = len(pattern.findall(triton.server_log.read_text()))
    long = submit(jobs_gateway, AUTH, {"Cancel-After": "6s"}, steps=150)["job_id"]
    poll(jobs_gateway, long, lambda j: j["status"] == "running" and (j["progress"] or {}).get("step"))
    # Behind it, with a deadline it cannot meet in the queue: cancelled without running.
    waiting = submit(jobs_gateway, AUTH, steps=2, cancel_after_s=1)["job_id"]
    stopped = finished(jobs_gateway, waiting)
    assert stopped["status"] == "cancelled" and stopped["started_at"] is None, stopped
    assert "Cancel-After deadline of 1 s passed before it started" in stopped["message"]
    # Soon after its deadline, not when the job ahead of it ends (the reaper looks every second).
    assert seconds_between(stopped["created_at"], stopped["finished_at"]) < 1 + 3, stopped

    job = finished(jobs_gateway, long)
    assert job["status"] == "cancelled", job
    assert "Cancel-After deadline of 6 s passed after" in job["message"], job["message"]
    assert 1 <= job["progress"]["step"] < job["progress"]["total"] == 150
    # The model itself stopped early (Triton's log), not only the job's record.
    poll_log = lambda: pattern.findall(triton.server_log.read_text())[before:]  # noqa: E731
    poll(jobs_gateway, long, lambda _: bool(poll_log()), timeout=30)
    assert int(poll_log()[-1]) < 150


@pytest.mark.parametrize("value", ["soon", "-5s", "0", "25h", "1x"])
def test_a_bad_cancel_after_is_a_422(jobs_gateway: GatewayServer, value: str) -> None:
    answer = httpx.post(f"{jobs_gateway.url}/api/v1/jobs", json=body(), headers={**AUTH, "Cancel-After": value})
    assert answer.status_code == 422 and "Cancel-After" in answer.json()["message"], answer.text


def test_webhook_events_start_progress_and_completed_each_signed(jobs_gateway: GatewayServer) -> None:
    with WebhookReceiver() as receiver:
        job_id = submit(jobs_gateway, AUTH, steps=12, callback_url=receiver.url,
                        webhook_events=["start", "progress", "completed"])["job_id"]
        job = finished(jobs_gateway, job_id)
        deliveries = receiver.wait_for_type("job.succeeded")
    verifier = Webhook(WEBHOOK_SECRET)
    payloads = [verifier.verify(d.body, d.headers) for d in deliveries]
    types = [p["type"] for p in payloads]
    assert types[0] == "job.started" and types[-1] == "job.succeeded", types
    progress = [p["data"]["progress"] for p in payloads if p["type"] == "job.progress"]
    assert progress and all(0 < p["step"] <= 12 for p in progress), types
    # Throttled: at most one progress message every 2 s of running.
    assert len(progress) <= seconds_between(job["started_at"], job["finished_at"]) / 2 + 1
    assert len({d.headers["webhook-id"] for d in deliveries}) == len(deliveries)
    assert all(p["data"]["job_id"] == job_id for p in payloads)
    sent = poll(jobs_gateway, job_id, lambda j: j["webhook"]["state"] == "delivered", timeout=30)["webhook"]
    assert sent["events"] == ["start", "progress", "completed"]
    assert [a["event"] for a in sent["attempts"]][0] == "start" and sent["attempts"][-1]["event"] == "completed"


def test_the_default_webhook_event_is_completed_only(jobs_gateway: GatewayServer) -> None:
    with WebhookReceiver() as receiver:
        job_id = submit(jobs_gateway, AUTH, steps=8, callback_url=receiver.url)["job_id"]
        deliveries = receiver.wait_for_type("job.succeeded")
    assert [Webhook(WEBHOOK_SECRET).verify(d.body, d.headers)["type"] for d in deliveries] == ["job.succeeded"]
    assert finished(jobs_gateway, job_id)["webhook"]["events"] == ["completed"]
