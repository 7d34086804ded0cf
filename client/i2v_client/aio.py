"""The asynchronous client: ``AsyncClient`` has the methods of ``Client``, as coroutines."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from i2v_client.client import DEFAULT_TIMEOUT_S
from i2v_client.images import ImageInput, encode_image, with_image
from i2v_client.models import BatchResponse, GenerateResponse, JobListResponse, JobResponse
from i2v_client.transport import Call, RetryPolicy, Transport, error_of, new_idempotency_key, parse
from i2v_client.waiting import (
    STREAM_READ_TIMEOUT_S,
    Deadline,
    EventFollower,
    ProgressCallback,
    ProgressNotifier,
    StreamUnavailable,
    check_event_stream,
    job_id_of,
    job_progress,
    video_url_of,
)


class AsyncClient:
    """``async with AsyncClient(base_url, token) as client: await client.generate(...)``; see ``Client``."""

    def __init__(self, base_url: str | None = None, token: str | None = None, *, timeout: float = DEFAULT_TIMEOUT_S,
                 signing_secret: str | None = None, retry: RetryPolicy | None = None,
                 http: httpx.AsyncClient | None = None) -> None:
        self.transport = Transport(base_url, token, signing_secret, retry)
        self.timeout = timeout
        self.http = http or httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=10))

    @property
    def base_url(self) -> str:
        return self.transport.base_url

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self.http.aclose()

    async def _send(self, call: Call) -> httpx.Response:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self.http.send(self.transport.request(self.http, call))
            except httpx.TransportError:
                delay = self.transport.retry_delay(call, attempt, None)
                if delay is None:
                    raise
            else:
                delay = self.transport.retry_delay(call, attempt, response)
                if delay is None:
                    return response
                await response.aclose()
            await asyncio.sleep(delay)

    async def generate(self, image: ImageInput, prompt: str, **params: Any) -> GenerateResponse:
        payload = {"image_base64": encode_image(image), "prompt": prompt, **params}
        return parse(await self._send(self.transport.call("POST", "/api/v1/generate", payload)), GenerateResponse)

    async def submit(self, image: ImageInput, prompt: str, *, callback_url: str | None = None,
                     idempotency_key: str | None = None, **params: Any) -> JobResponse:
        payload = {"image_base64": encode_image(image), "prompt": prompt, **params}
        if callback_url:
            payload["callback_url"] = callback_url
        headers = {"Idempotency-Key": idempotency_key or new_idempotency_key()}
        call = self.transport.call("POST", "/api/v1/jobs", payload, headers=headers)
        return parse(await self._send(call), JobResponse)

    async def get(self, job: str | JobResponse) -> JobResponse:
        return parse(await self._send(self.transport.call("GET", f"/api/v1/jobs/{job_id_of(job)}")), JobResponse)

    async def cancel(self, job: str | JobResponse) -> JobResponse:
        call = self.transport.call("DELETE", f"/api/v1/jobs/{job_id_of(job)}")
        return parse(await self._send(call), JobResponse)

    async def list_jobs(self, offset: int = 0, limit: int = 20) -> JobListResponse:
        call = self.transport.call("GET", "/api/v1/jobs", query={"offset": offset, "limit": limit})
        return parse(await self._send(call), JobListResponse)

    async def batch(self, items: list[dict[str, Any]], *, image: ImageInput | None = None,
                    callback_url: str | None = None, **defaults: Any) -> BatchResponse:
        payload: dict[str, Any] = {"defaults": with_image(defaults, image), "items": [with_image(i) for i in items]}
        if callback_url:
            payload["callback_url"] = callback_url
        return parse(await self._send(self.transport.call("POST", "/api/v1/batch", payload)), BatchResponse)

    async def wait(self, job: str | JobResponse, *, progress: ProgressCallback | None = None,
                   timeout: float | None = None, poll_interval: float = 1.0) -> JobResponse:
        """As ``Client.wait``: the event stream, polling when it is not available."""
        job_id = job_id_of(job)
        deadline, notify = Deadline(job_id, timeout), ProgressNotifier(progress)
        try:
            return await self._wait_stream(job_id, notify, deadline)
        except (StreamUnavailable, httpx.TransportError):
            pass
        while True:
            current = await self.get(job_id)
            notify(job_progress(current))
            if current.status.final:
                return current
            deadline.check(current.status.value)
            await asyncio.sleep(deadline.pause(poll_interval))

    async def _wait_stream(self, job_id: str, notify: ProgressNotifier, deadline: Deadline) -> JobResponse:
        call = self.transport.call("GET", f"/api/v1/jobs/{job_id}/events", headers={"Accept": "text/event-stream"})
        request = self.transport.request(self.http, call)
        request.extensions["timeout"] = httpx.Timeout(STREAM_READ_TIMEOUT_S, connect=10).as_dict()
        response = await self.http.send(request, stream=True)
        try:
            if response.status_code in (401, 403, 404):
                await response.aread()
                raise error_of(response)
            check_event_stream(response)
            follower = EventFollower(job_id, deadline, notify)
            async for line in response.aiter_lines():
                if (final := follower.feed(line)) is not None:
                    return final
            raise StreamUnavailable("the event stream ended before the job did")
        finally:
            await response.aclose()

    async def download(self, source: str | GenerateResponse | JobResponse, path: str | Path) -> Path:
        target = Path(path)
        async with self.http.stream("GET", video_url_of(source)) as response:
            if response.status_code >= 400:
                await response.aread()
                raise error_of(response)
            with target.open("wb") as file:
                async for chunk in response.aiter_bytes(1 << 20):
                    file.write(chunk)
        return target

    async def ready(self) -> bool:
        try:
            return (await self.http.get(f"{self.base_url}/readyz", timeout=10)).status_code == 200
        except httpx.TransportError:
            return False
