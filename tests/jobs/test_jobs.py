"""Asynchronous jobs over HTTP against real gateways, a real tritonserver and (for the Redis
runs) a real redis-server: submit, poll, progress, cancel, webhooks, cache, batch, limits,
restarts. Every test here runs once per job store (see ``conftest.store_env``)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Callable

import httpx
import pytest
import tritonclient.http as httpclient
from standardwebhooks.webhooks import Webhook

from i2v_tools.servers import GatewayServer, TritonServer, free_port
from i2v_tools.triton_stats import model_counts, settled_counts
from tests.gateway.test_api import AUTH, assert_error, body
from tests.jobs.conftest import JOB_ENV, OTHER_KEY, WEBHOOK_SECRET
from tests.support.media import probe_mp4
from tests.support.sse import read_events
from tests.support.webhooks import WebhookReceiver

pytestmark = pytest.mark.integration
OTHER = {"Authorization": f"Bearer {OTHER_KEY}"}
FINAL = {"succeeded", "failed", "cancelled"}


def submit(gateway: GatewayServer, headers: dict | None = None, **overrides) -> dict:
    response = httpx.post(f"{gateway.url}/api/v1/jobs", json=body(**overrides), headers=headers or AUTH, timeout=30)
    assert response.status_code == 202, response.text
    return response.json()


def poll(gateway: GatewayServer, job_id: str, until: Callable[[dict], bool], timeout: float = 180,
         seen: list[dict] | None = None) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = httpx.get(f"{gateway.url}/api/v1/jobs/{job_id}", headers=AUTH, timeout=10).json()
        if seen is not None:
            seen.append(job)
        if until(job):
            return job
        time.sleep(0.2)
    raise TimeoutError(f"job {job_id} still {job['status']} ({job['message']}) after {timeout} s")


def finished(gateway: GatewayServer, job_id: str, timeout: float = 180) -> dict:
    return poll(gateway, job_id, lambda job: job["status"] in FINAL, timeout)


def test_submit_poll_progress_and_download(jobs_gateway: GatewayServer) -> None:
    accepted = submit(jobs_gateway, steps=8, seed=11)
    assert accepted["status"] == "queued"
    assert accepted["status_url"] == f"{jobs_gateway.url}/api/v1/jobs/{accepted['job_id']}"
    # The event log records every step the model reported, however fast the machine: read it to its end.
    events = read_events(f"{accepted['status_url']}/events", AUTH)
    assert [e.type for e in events[:2]] == ["queued", "running"], events
    steps = [e.data["step"] for e in events if e.type == "running" and "step" in e.data]
    assert steps == list(range(1, 9)), f"progress did not grow step by step: {steps}"
    # Ids grow one by one; a queue-place update (if the job waited) repeats the id before it.
    assert list(dict.fromkeys(int(e.id) for e in events)) == list(range(1, int(events[-1].id) + 1))
    assert events[-1].type == "succeeded" and events[-1].data["job"]["result"]["seed"] == 11
    job = httpx.get(accepted["status_url"], headers=AUTH).json()
    assert job["status"] == "succeeded", job
    assert (job["progress"]["step"], job["progress"]["total"]) == (8, 8)
    # Resuming after an event gives the rest, without repeating any.
    rest = read_events(f"{accepted['status_url']}/events", AUTH, last_event_id=events[2].id)
    assert [e.id for e in rest] == [e.id for e in events[3:] if int(e.id) > int(events[2].id)]
    # A resume after the final event gets that event again, alone: the stream of an ended job
    # always ends with it, so a client that missed it still learns the end.
    again = read_events(f"{accepted['status_url']}/events", AUTH, last_event_id=events[-1].id, timeout=30)
    assert [(e.id, e.type) for e in again] == [(events[-1].id, "succeeded")], again
    result = job["result"]
    assert result["success"] is True and result["seed"] == 11 and result["cached"] is False
    assert job["created_at"] <= job["started_at"] <= job["finished_at"]
    video = httpx.get(result["video_url"], timeout=30)
    assert video.status_code == 200
    assert probe_mp4(video.content)["frames"] == 8

    listed = httpx.get(f"{jobs_gateway.url}/api/v1/jobs?limit=1", headers=AUTH).json()
    assert listed["jobs"][0]["job_id"] == job["job_id"]
    # Another key neither sees nor cancels it.
    assert httpx.get(f"{jobs_gateway.url}/api/v1/jobs/{job['job_id']}", headers=OTHER).status_code == 404
    assert httpx.delete(f"{jobs_gateway.url}/api/v1/jobs/{job['job_id']}", headers=OTHER).status_code == 404
    assert job["job_id"] not in [j["job_id"] for j in httpx.get(f"{jobs_gateway.url}/api/v1/jobs",
                                                                headers=OTHER).json()["jobs"]]


def test_prefer_wait_answers_the_finished_job_or_the_queued_one(jobs_gateway: GatewayServer) -> None:
    url = f"{jobs_gateway.url}/api/v1/jobs"
    short = httpx.post(url, json=body(steps=1), headers={**AUTH, "Prefer": "wait=60"}, timeout=90)
    assert short.status_code == 200, short.text
    assert short.headers["preference-applied"] == "wait=60"
    assert short.json()["status"] == "succeeded" and short.json()["result"]["video_url"]
    # No time to finish: the usual 202 with the job as it is.
    long = httpx.post(url, json=body(steps=150), headers={**AUTH, "Prefer": "respond-async, wait=0"}, timeout=30)
    assert long.status_code == 202 and long.headers["preference-applied"] == "wait=0"
    assert long.json()["status"] in ("queued", "running")
    httpx.delete(long.headers["location"], headers=AUTH)
    assert finished(jobs_gateway, long.json()["job_id"], timeout=60)["status"] == "cancelled"


def test_list_pages_newest_first(jobs_gateway: GatewayServer) -> None:
    ids = [submit(jobs_gateway, headers=OTHER, steps=1)["job_id"] for _ in range(3)]
    first = httpx.get(f"{jobs_gateway.url}/api/v1/jobs?limit=2", headers=OTHER).json()
    second = httpx.get(f"{jobs_gateway.url}/api/v1/jobs?limit=2&offset={first['next_offset']}", headers=OTHER).json()
    assert [j["job_id"] for j in first["jobs"] + second["jobs"]][:3] == ids[::-1]
    for job_id in ids:
        httpx.delete(f"{jobs_gateway.url}/api/v1/jobs/{job_id}", headers=OTHER)


def test_idempotency_key(jobs_gateway: GatewayServer) -> None:
    url, key = f"{jobs_gateway.url}/api/v1/jobs", {**AUTH, "Idempotency-Key": f"order-{time.time()}"}
    first = httpx.post(url, json=body(steps=1), headers=key)
    again = httpx.post(url, json=body(steps=1), headers=key)
    assert (first.status_code, again.status_code) == (202, 200)
    assert first.json()["job_id"] == again.json()["job_id"]
    assert_error(httpx.post(url, json=body(steps=2), headers=key), 409, "different body")
    finished(jobs_gateway, first.json()["job_id"])


def test_signed_webhook_is_retried_until_delivered(jobs_gateway: GatewayServer) -> None:
    with WebhookReceiver(fail_first=2) as receiver:
        job_id = submit(jobs_gateway, steps=2, callback_url=receiver.url)["job_id"]
        deliveries = receiver.wait_for(3)
    assert [d.answered for d in deliveries] == [500, 500, 204]
    assert len({d.headers["webhook-id"] for d in deliveries}) == 1, "a retry must keep the message id"
    verifier = Webhook(WEBHOOK_SECRET)
    for delivery in deliveries:
        payload = verifier.verify(delivery.body, delivery.headers)
        assert payload["type"] == "job.succeeded" and payload["data"]["job_id"] == job_id
        assert payload["data"]["result"]["video_url"].endswith(".mp4")
    # The same check without the library: HMAC-SHA256 over "id.timestamp.body".
    last = deliveries[-1]
    secret = base64.b64decode(WEBHOOK_SECRET.removeprefix("whsec_"))
    signed = f"{last.headers['webhook-id']}.{last.headers['webhook-timestamp']}.".encode() + last.body
    expected = base64.b64encode(hmac.new(secret, signed, hashlib.sha256).digest()).decode()
    assert last.headers["webhook-signature"] == f"v1,{expected}"
    with pytest.raises(Exception, match="signature"):
        Webhook(WEBHOOK_SECRET).verify(last.body.replace(b"succeeded", b"failed"), last.headers)

    job = poll(jobs_gateway, job_id, lambda j: j["webhook"]["state"] == "delivered", timeout=10)
    assert [a["status_code"] for a in job["webhook"]["attempts"]] == [500, 500, 204]


def test_webhook_on_cancellation(jobs_gateway: GatewayServer) -> None:
    with WebhookReceiver() as receiver:
        job_id = submit(jobs_gateway, steps=150, callback_url=receiver.url)["job_id"]
        httpx.delete(f"{jobs_gateway.url}/api/v1/jobs/{job_id}", headers=AUTH)
        [delivery] = receiver.wait_for(1)
    payload = Webhook(WEBHOOK_SECRET).verify(delivery.body, delivery.headers)
    assert payload["type"] == "job.cancelled" and payload["data"]["job_id"] == job_id
    assert payload["data"]["status"] == "cancelled"


def test_cancel_a_queued_and_a_running_job(jobs_gateway: GatewayServer, triton: TritonServer) -> None:
    pattern = re.compile(r"cancelled after (\d+) of 150 denoising steps")
    before = len(pattern.findall(triton.server_log.read_text()))
    running = submit(jobs_gateway, steps=150)["job_id"]
    poll(jobs_gateway, running, lambda j: j["status"] == "running" and (j["progress"] or {}).get("step", 0) >= 2)
    queued = submit(jobs_gateway, steps=2)["job_id"]  # the only worker is busy

    answer = httpx.delete(f"{jobs_gateway.url}/api/v1/jobs/{queued}", headers=AUTH).json()
    assert answer["status"] == "cancelled" and answer["started_at"] is None
    answer = httpx.post(f"{jobs_gateway.url}/api/v1/jobs/{running}/cancel", headers=AUTH).json()
    assert answer["status"] in ("cancelling", "cancelled")

    stopped = finished(jobs_gateway, running, timeout=30)
    assert stopped["status"] == "cancelled", stopped
    step = int(re.search(r"after (\d+) of 150", stopped["message"]).group(1))
    assert step < 150
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(pattern.findall(triton.server_log.read_text())) == before:
        time.sleep(0.25)
    found = pattern.findall(triton.server_log.read_text())
    assert len(found) > before and int(found[-1]) < 150, "the Triton execution ran to the end"
    time.sleep(1.5)  # the worker is free now: the cancelled queued job must still not run
    never_ran = httpx.get(f"{jobs_gateway.url}/api/v1/jobs/{queued}", headers=AUTH).json()
    assert never_ran["status"] == "cancelled" and never_ran["attempts"] == 0 and never_ran["started_at"] is None


def test_cached_repeat_skips_triton(jobs_gateway: GatewayServer, triton: TritonServer) -> None:
    client = httpclient.InferenceServerClient(triton.http_url)
    seeded = dict(steps=6, seed=4242, prompt="cache me")
    first = finished(jobs_gateway, submit(jobs_gateway, **seeded)["job_id"])
    assert first["status"] == "succeeded" and first["result"]["cached"] is False
    requests_before = settled_counts(client, 0)[0]

    started = time.perf_counter()
    repeat = httpx.post(f"{jobs_gateway.url}/api/v1/generate", json=body(**seeded), headers=AUTH, timeout=60).json()
    repeat_s = time.perf_counter() - started
    as_job = finished(jobs_gateway, submit(jobs_gateway, **seeded)["job_id"])
    time.sleep(0.5)
    assert model_counts(client)[0] == requests_before, "a cached repeat reached Triton"
    assert as_job["status"] == "succeeded", as_job
    assert repeat["cached"] is True and as_job["result"]["cached"] is True
    assert repeat["video_path"] != first["result"]["video_path"], "each answer gets its own file"
    assert httpx.get(repeat["video_url"]).content == httpx.get(first["result"]["video_url"]).content
    assert repeat_s < first["result"]["inference_time"] / 3, (repeat_s, first["result"]["inference_time"])

    unseeded = [httpx.post(f"{jobs_gateway.url}/api/v1/generate", json=body(steps=1), headers=AUTH,
                           timeout=60).json() for _ in range(2)]
    assert [u["cached"] for u in unseeded] == [False, False]
    assert settled_counts(client, requests_before + 2)[0] == requests_before + 2


def test_batch_reports_a_bad_item_alone(jobs_gateway: GatewayServer) -> None:
    defaults = body(steps=1)
    items = [{"prompt": "a cat", "seed": 1}, {"prompt": "a dog", "seed": 2},
             {"image_base64": "not an image!"}, {"num_frames": 99}]
    response = httpx.post(f"{jobs_gateway.url}/api/v1/batch", json={"defaults": defaults, "items": items},
                          headers=AUTH, timeout=30)
    assert response.status_code == 202, response.text
    batch = response.json()
    assert (batch["accepted"], batch["rejected"]) == (2, 2)
    errors = {item["index"]: item["error"] for item in batch["items"] if item["error"]}
    assert errors[2]["status"] == 400 and errors[3]["status"] == 422 and "num_frames" in errors[3]["message"]
    for item in batch["items"][:2]:
        assert finished(jobs_gateway, item["job"]["job_id"])["status"] == "succeeded"
    too_many = httpx.post(f"{jobs_gateway.url}/api/v1/batch", json={"defaults": defaults, "items": [{}] * 17},
                          headers=AUTH)
    assert_error(too_many, 422, "at most 16")


def test_queue_limits_answer_429_and_503(start_gateway, own_store_env: dict[str, str]) -> None:
    # No workers: nothing leaves the queue while the limits are probed.
    gateway = start_gateway({**JOB_ENV, **own_store_env, "I2V_JOB_WORKERS": "0", "I2V_MAX_QUEUED_PER_KEY": "2",
                             "I2V_MAX_QUEUED_TOTAL": "3"})
    url = f"{gateway.url}/api/v1/jobs"
    for _ in range(2):
        assert httpx.post(url, json=body(), headers=AUTH).status_code == 202
    per_key = httpx.post(url, json=body(), headers=AUTH)
    assert_error(per_key, 429, "queued jobs")
    assert per_key.headers["retry-after"]
    # A batch none of whose items fits the key's queue: that 429, to retry, not a 422.
    batch = httpx.post(f"{gateway.url}/api/v1/batch", json={"defaults": body(), "items": [{}, {}]}, headers=AUTH)
    assert_error(batch, 429, "every item of the batch was rejected: item 0: key")
    assert batch.headers["retry-after"]
    assert httpx.post(url, json=body(), headers=OTHER).status_code == 202
    overall = httpx.post(url, json=body(), headers=OTHER)
    assert_error(overall, 503, "queue is full")
    assert overall.headers["retry-after"]


def test_private_callback_urls_are_refused(start_gateway, own_store_env: dict[str, str]) -> None:
    strict = start_gateway({**JOB_ENV, **own_store_env, "I2V_WEBHOOK_ALLOW_PRIVATE": "false", "I2V_JOB_WORKERS": "0"})
    for url in ("http://127.0.0.1:9/hook", "http://localhost/hook", "http://10.1.2.3/hook",
                "http://169.254.169.254/latest/meta-data", "http://[::1]/hook", "http://192.168.0.10/"):
        response = httpx.post(f"{strict.url}/api/v1/jobs", json=body(callback_url=url), headers=AUTH)
        assert_error(response, 422, "refused")
    assert_error(httpx.post(f"{strict.url}/api/v1/jobs", json=body(callback_url="ftp://example.com/x"),
                            headers=AUTH), 422, "http")
    unsigned = start_gateway({**own_store_env, "I2V_JOB_WORKERS": "0"})
    assert_error(httpx.post(f"{unsigned.url}/api/v1/jobs", json=body(callback_url="https://example.com/hook"),
                            headers=AUTH), 422, "I2V_WEBHOOK_SECRET")


def test_retention_removes_old_jobs_and_videos(start_gateway, own_store_env: dict[str, str]) -> None:
    gateway = start_gateway({**JOB_ENV, **own_store_env, "I2V_RETENTION_S": "3"})
    job = finished(gateway, submit(gateway, steps=1)["job_id"])
    video_url = job["result"]["video_url"]
    assert httpx.get(video_url).status_code == 200
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        gone = httpx.get(f"{gateway.url}/api/v1/jobs/{job['job_id']}", headers=AUTH).status_code == 404
        if gone and httpx.get(video_url).status_code == 404:
            return
        time.sleep(0.5)
    pytest.fail("the job or its video outlived the retention")


def test_killed_gateway_loses_no_job(start_gateway, own_store_env: dict[str, str], tmp_path) -> None:
    shared = {**JOB_ENV, **own_store_env, "I2V_JOBS_DB": str(tmp_path / "jobs.sqlite3"),
              "I2V_OUTPUTS_DIR": str(tmp_path / "outputs"), "I2V_CACHE_DIR": str(tmp_path / "cache")}
    first = start_gateway(shared)
    ids = [submit(first, steps=6, prompt=f"job {i}")["job_id"] for i in range(3)]
    poll(first, ids[0], lambda j: j["status"] == "running")
    first.kill()  # SIGKILL: no chance to hand anything back

    second = start_gateway(shared)
    jobs = [finished(second, job_id, timeout=240) for job_id in ids]
    assert [j["status"] for j in jobs] == ["succeeded"] * 3, [j["message"] for j in jobs]
    assert jobs[0]["attempts"] == 2, "the job that was running ran again after its lease ran out"
    for job in jobs:  # video_url names the gateway it was submitted to; I2V_PUBLIC_BASE_URL fixes that in production
        assert httpx.get(f"{second.url}/{job['result']['video_path']}").status_code == 200


def test_triton_restart_during_a_job(start_gateway, own_store_env: dict[str, str], spare_triton: TritonServer) -> None:
    gateway = start_gateway({**JOB_ENV, **own_store_env}, triton_grpc_url=spare_triton.grpc_url)
    job_id = submit(gateway, steps=20)["job_id"]
    poll(gateway, job_id, lambda j: j["status"] == "running" and (j["progress"] or {}).get("step", 0) >= 1)
    spare_triton.kill()
    waiting = poll(gateway, job_id, lambda j: j["status"] != "running", timeout=30)
    assert waiting["status"] == "queued" and "retry" in waiting["message"], waiting
    spare_triton.start().wait_ready()
    job = finished(gateway, job_id, timeout=240)
    assert job["status"] == "succeeded" and job["attempts"] >= 2, job


def test_with_no_model_server_a_job_fails_clearly_at_its_deadline(start_gateway,
                                                                  own_store_env: dict[str, str]) -> None:
    """Instead of waiting forever. (A store of its own: a gateway with a model would run the job.)"""
    orphan = start_gateway({**JOB_ENV, **own_store_env, "I2V_JOB_DEADLINE_S": "6"},
                           triton_grpc_url=f"127.0.0.1:{free_port()}")
    with WebhookReceiver() as receiver:
        job = finished(orphan, submit(orphan, steps=1, callback_url=receiver.url)["job_id"], timeout=60)
        [delivery] = receiver.wait_for(1)
    assert job["status"] == "failed" and job["error"]["status"] == 503, job
    assert "not reachable" in job["error"]["message"] and "gave up" in job["error"]["message"]
    payload = Webhook(WEBHOOK_SECRET).verify(delivery.body, delivery.headers)
    assert payload["type"] == "job.failed" and payload["data"]["error"] == job["error"]


def test_two_gateways_on_one_redis_share_jobs_and_cache(start_gateway, new_redis_url, store_env, tmp_path) -> None:
    if "I2V_REDIS_URL" not in store_env:
        pytest.skip("replicas share jobs through Redis; this runs in the Redis pass")
    # Replicas share Redis and, as deployed, the outputs and cache volumes.
    shared = {**JOB_ENV, "I2V_REDIS_URL": new_redis_url(), "I2V_OUTPUTS_DIR": str(tmp_path / "outputs"),
              "I2V_CACHE_DIR": str(tmp_path / "cache")}
    front = start_gateway({**shared, "I2V_JOB_WORKERS": "0"})  # accepts only
    back = start_gateway(shared)  # runs them
    job_id = submit(front, steps=2, seed=77)["job_id"]
    # A stream held on the replica that only accepts sees the steps the other one ran, and ends.
    events = read_events(f"{front.url}/api/v1/jobs/{job_id}/events", AUTH)
    assert [e.data.get("step") for e in events if e.type == "running"] == [None, 1, 2], events
    assert events[-1].type == "succeeded"
    job = finished(back, job_id)
    assert job["status"] == "succeeded"
    assert httpx.get(f"{front.url}/api/v1/jobs/{job_id}", headers=AUTH).json()["status"] == "succeeded"
    assert job_id in [j["job_id"] for j in httpx.get(f"{back.url}/api/v1/jobs", headers=AUTH).json()["jobs"]]
    cached = httpx.post(f"{front.url}/api/v1/generate", json=body(steps=2, seed=77), headers=AUTH, timeout=60)
    assert cached.json()["cached"] is True, "the other replica's result is in the shared cache"
    cancel_from_back = submit(front, steps=150)["job_id"]
    httpx.delete(f"{back.url}/api/v1/jobs/{cancel_from_back}", headers=AUTH)
    assert finished(front, cancel_from_back, timeout=30)["status"] == "cancelled"


def test_the_python_client_runs_and_cancels_jobs(jobs_gateway: GatewayServer, tmp_path) -> None:
    from i2v_client import I2VClient
    from tests.support.media import gradient_png

    client = I2VClient(jobs_gateway.url, token=jobs_gateway.token, timeout=60)
    job = client.submit_job(gradient_png((64, 64)), "a cat", resolution="256p", num_frames=8, steps=1,
                            idempotency_key=f"client-{time.time()}")
    done = client.wait_for_job(job["job_id"], poll_s=0.2, timeout_s=120)
    assert done["status"] == "succeeded"
    assert probe_mp4(client.download(done["result"]["video_url"], tmp_path / "v.mp4").read_bytes())["frames"] == 8
    long = client.submit_job(gradient_png((64, 64)), "a slow cat", resolution="256p", num_frames=8, steps=150)
    assert client.cancel_job(long["job_id"])["status"] in ("cancelling", "cancelled")
    assert client.wait_for_job(long["job_id"], poll_s=0.2, timeout_s=60)["status"] == "cancelled"


def test_last_event_ids_the_stream_never_sent_are_a_400_and_an_ended_stream_ends_with_its_final_event(
        jobs_gateway: GatewayServer) -> None:
    job_id = submit(jobs_gateway, steps=2)["job_id"]
    url = f"{jobs_gateway.url}/api/v1/jobs/{job_id}/events"
    events = read_events(url, AUTH)
    final = events[-1]
    assert final.type == "succeeded", events
    for never_sent in ("99999999999999999999999", "-1", str(int(final.id) + 1), "1.5", "abc", "0x1"):
        answer = httpx.get(url, headers={**AUTH, "Last-Event-ID": never_sent}, timeout=30)
        assert_error(answer, 400, "is not an event this job's stream sent")
        assert f"ids run from 1 to {final.id}" in answer.json()["message"]
    # 0 (or no id) is the beginning; the final id gives the final event again, and the stream ends.
    assert [e.id for e in read_events(url, AUTH, last_event_id="0", timeout=30)] == [e.id for e in events]
    again = read_events(url, AUTH, last_event_id=final.id, timeout=30)
    assert [(e.id, e.type, e.data["job"]["status"]) for e in again] == [(final.id, "succeeded", "succeeded")]
    resumed = read_events(url, AUTH, last_event_id=events[0].id, timeout=30)
    assert resumed[-1].type == "succeeded" and resumed[0].id != events[0].id


def test_a_malformed_callback_url_is_a_422_alone_and_per_batch_item(jobs_gateway: GatewayServer) -> None:
    for url in ("http://example.com:99999/", "http://[zz]/", "http://example.com:-1/"):
        answer = httpx.post(f"{jobs_gateway.url}/api/v1/jobs", json=body(callback_url=url), headers=AUTH, timeout=30)
        assert_error(answer, 422, "callback_url is not a valid URL")
        # As the batch's own callback_url, every item carries it: no job, a 422 naming each item.
        every = httpx.post(f"{jobs_gateway.url}/api/v1/batch", headers=AUTH, timeout=30, json={
            "defaults": body(steps=1), "items": [{}, {"prompt": "a dog"}], "callback_url": url})
        assert_error(every, 422, "every item of the batch was rejected")
        message = every.json()["message"]
        assert "item 0: callback_url is not a valid URL" in message and "item 1: callback_url" in message, message
    # On one item: that item is rejected alone, the others are jobs.
    batch = httpx.post(f"{jobs_gateway.url}/api/v1/batch", headers=AUTH, timeout=30, json={
        "defaults": body(steps=1), "items": [{"callback_url": "http://[zz]/"}, {"prompt": "a dog"}]})
    assert batch.status_code == 202, batch.text
    items = batch.json()["items"]
    assert items[0]["error"]["status"] == 422 and "callback_url" in items[0]["error"]["message"], items
    assert finished(jobs_gateway, items[1]["job"]["job_id"])["status"] == "succeeded"
