"""The Python SDK, sync and async, against a real gateway and tritonserver."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import httpx
import PIL.Image
import pytest

from i2v_client import (
    NO_RETRIES,
    AsyncClient,
    BadRequest,
    Client,
    Conflict,
    Forbidden,
    GatewayTimeout,
    I2VClient,
    NotFound,
    PayloadTooLarge,
    Progress,
    RateLimited,
    RetryPolicy,
    ServiceUnavailable,
    Unauthorized,
    Unprocessable,
    verify_webhook,
)
from i2v_tools.servers import GatewayServer, free_port
from tests.client.conftest import SDK_ENV, SMALL, WEBHOOK_SECRET
from tests.support.media import probe_mp4
from tests.support.webhooks import WebhookReceiver

pytestmark = pytest.mark.integration


@pytest.fixture
def client(sdk_gateway: GatewayServer):
    with Client(sdk_gateway.url, sdk_gateway.token) as client:
        yield client


def test_generate_from_a_path_bytes_or_pil_image_and_download(client: Client, photo: Path, tmp_path: Path) -> None:
    result = client.generate(photo, "a red kite", seed=3, **SMALL)
    assert result.success and result.seed == 3 and (result.width, result.num_frames) == (256, 8)
    assert probe_mp4(client.download(result, tmp_path / "kite.mp4").read_bytes())["frames"] == 8
    assert client.generate(photo.read_bytes(), "a red kite", **SMALL).success
    assert client.generate(PIL.Image.open(photo), "a red kite", **SMALL).success
    # The 0.2 name and dict-style reads keep working.
    assert I2VClient(client.base_url, client.transport.token).generate(photo, "x", **SMALL)["video_url"]


def test_submit_then_wait_reports_growing_steps(client: Client, photo: Path, tmp_path: Path) -> None:
    job = client.submit(photo, "a red kite", seed=4, **{**SMALL, "steps": 6})
    assert job.status.value == "queued"
    seen: list[Progress] = []
    ended = client.wait(job, progress=seen.append)
    assert ended.status.value == "succeeded" and ended.result is not None and ended.result.seed == 4
    assert [p.step for p in seen if p.step is not None] == [1, 2, 3, 4, 5, 6], seen
    assert seen[-1].status == "succeeded"
    assert client.get(job.job_id).result == ended.result
    assert job.job_id in [j.job_id for j in client.list_jobs(limit=10).jobs]
    assert probe_mp4(client.download(ended, tmp_path / "job.mp4").read_bytes())["frames"] == 8


class NoEventStreams(httpx.HTTPTransport):
    """A proxy in the way that cuts event streams: the real gateway answers everything else."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            raise httpx.RemoteProtocolError("stream cut", request=request)
        return super().handle_request(request)


def test_wait_polls_when_the_event_stream_fails(sdk_gateway: GatewayServer, photo: Path) -> None:
    with Client(sdk_gateway.url, sdk_gateway.token, http=httpx.Client(transport=NoEventStreams())) as client:
        job = client.submit(photo, "polled", **SMALL)
        seen: list[Progress] = []
        assert client.wait(job, progress=seen.append, poll_interval=0.1).status.value == "succeeded"
        assert seen[-1].status == "succeeded"


def test_cancel_and_batch(client: Client, photo: Path) -> None:
    long = client.submit(photo, "a long one", **{**SMALL, "steps": 150})
    assert client.cancel(long).status.value in ("cancelled", "cancelling")
    assert client.wait(long).status.value == "cancelled"

    batch = client.batch([{"prompt": "one"}, {"prompt": "two", "num_frames": 999}], image=photo, **SMALL)
    assert (batch.accepted, batch.rejected) == (1, 1)
    assert batch.items[1].error is not None and batch.items[1].error.status == 422
    assert batch.items[0].job is not None and client.wait(batch.items[0].job).status.value == "succeeded"


def test_one_error_per_status_class(client: Client, sdk_gateway: GatewayServer, photo: Path) -> None:
    with pytest.raises(Unauthorized) as unauthorized, Client(sdk_gateway.url, "wrong-token-0123456789") as wrong:
        wrong.list_jobs()
    assert unauthorized.value.status == 401 and unauthorized.value.message
    with pytest.raises(NotFound):
        client.get("no-such-job")
    with pytest.raises(Unprocessable, match="num_frames"):
        client.generate(photo, "x", num_frames=999)
    with pytest.raises(BadRequest):
        client.generate(b"not an image", "x")
    with pytest.raises(PayloadTooLarge):
        client.generate(os.urandom(3 * 1024 * 1024), "x")
    key = f"sdk-{time.time()}"
    client.submit(photo, "x", idempotency_key=key, **SMALL)
    with pytest.raises(Conflict):
        client.submit(photo, "y", idempotency_key=key, **SMALL)
    with pytest.raises(GatewayTimeout) as timed_out:  # the caller's deadline passed mid-render
        client.generate(photo, "x", cancel_after_s=0.5, **{**SMALL, "steps": 150})
    assert timed_out.value.status == 504 and "Cancel-After" in timed_out.value.message


def test_an_address_outside_the_allow_list_is_forbidden(start_gateway) -> None:
    gateway = start_gateway({**SDK_ENV, "I2V_IP_ALLOWLIST": "198.51.100.0/24"})
    with Client(gateway.url, gateway.token) as client, pytest.raises(Forbidden) as forbidden:
        client.list_jobs()
    assert forbidden.value.status == 403 and "address is not allowed" in forbidden.value.message


def test_rate_limited_answers_carry_retry_after(limited_gateway: GatewayServer, photo: Path) -> None:
    # A Retry-After of about a minute is beyond the bound: the retried submit raises at once.
    gateway = limited_gateway
    client = Client(gateway.url, gateway.token, retry=RetryPolicy(max_retries=3, max_wait_s=5))
    with client, pytest.raises(RateLimited) as error:  # the first may pass, the second cannot
        for _ in range(2):
            client.submit(photo, "rate limited", **SMALL)
    assert error.value.status == 429 and error.value.retry_after is not None and error.value.retry_after > 5


def test_a_gateway_without_triton_answers_service_unavailable(start_gateway, photo: Path) -> None:
    gateway = start_gateway(SDK_ENV, triton_grpc_url=f"127.0.0.1:{free_port()}")
    with Client(gateway.url, gateway.token, retry=NO_RETRIES) as client:
        with pytest.raises(ServiceUnavailable) as error:
            client.generate(photo, "x", **SMALL)
        assert error.value.status == 503 and error.value.retry_after is not None
        assert not client.ready()


def test_a_real_webhook_delivery_verifies(client: Client, photo: Path) -> None:
    with WebhookReceiver() as receiver:
        job = client.submit(photo, "hooked", callback_url=receiver.url, **{**SMALL, "steps": 1})
        client.wait(job)
        delivery = receiver.wait_for(1)[0]
    event = verify_webhook(WEBHOOK_SECRET, delivery.body, delivery.headers)
    assert event.type == "job.succeeded" and event.job.job_id == job.job_id


def test_async_client(sdk_gateway: GatewayServer, photo: Path, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with AsyncClient(sdk_gateway.url, sdk_gateway.token) as client:
            first, job = await asyncio.gather(client.generate(photo, "async", seed=9, **SMALL),
                                              client.submit(photo, "async job", **{**SMALL, "steps": 5}))
            assert first.seed == 9
            assert probe_mp4((await client.download(first, tmp_path / "a.mp4")).read_bytes())["frames"] == 8
            seen: list[Progress] = []
            ended = await client.wait(job, progress=seen.append)
            assert ended.status.value == "succeeded"
            assert [p.step for p in seen if p.step is not None] == [1, 2, 3, 4, 5]
            assert job.job_id in [j.job_id for j in (await client.list_jobs()).jobs]

            long = await client.submit(photo, "a long one", **{**SMALL, "steps": 150})
            await client.cancel(long.job_id)
            assert (await client.wait(long.job_id)).status.value == "cancelled"
            batch = await client.batch([{"prompt": "a"}, {"prompt": "b"}], image=photo.read_bytes(), **SMALL)
            assert batch.accepted == 2

            with pytest.raises(NotFound):
                await client.get("no-such-job")
            with pytest.raises(Unprocessable):
                await client.generate(photo, "x", steps=0)
        async with AsyncClient(sdk_gateway.url, "wrong-token-0123456789") as wrong:
            with pytest.raises(Unauthorized):
                await wrong.list_jobs()

    asyncio.run(scenario())
