"""The asynchronous client: ``AsyncClient`` has the methods of ``Client``, as coroutines, and
raises the same errors for the same outcomes."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx

from i2v_client.errors import I2VError
from i2v_client.images import ImageInput, encode_image, with_image
from i2v_client.models import BatchResponse, GenerateResponse, JobListResponse, JobResponse
from i2v_client.transport import (
    CONNECT_TIMEOUT_S,
    DEFAULT_TIMEOUT_S,
    GENERATE_RETRY_STATUSES,
    Call,
    RetryPolicy,
    Transport,
    connection_error,
    error_of,
    new_idempotency_key,
    parse,
)
from i2v_client.waiting import (
    STREAM_READ_TIMEOUT_S,
    Follow,
    ProgressCallback,
    StreamUnavailable,
    check_event_stream,
    job_id_of,
    video_url_of,
)


class AsyncClient:
    """``async with AsyncClient(base_url, token) as client: await client.generate(...)``; see ``Client``."""

    def __init__(self, base_url: str | None = None, token: str | None = None, *, timeout: float = DEFAULT_TIMEOUT_S,
                 signing_secret: str | None = None, retry: RetryPolicy | None = None,
                 max_body_bytes: int | None = None, http: httpx.AsyncClient | None = None) -> None:
        self.transport = Transport(base_url, token, signing_secret, retry, max_body_bytes, timeout)
        self.timeout = timeout
        self.http = http or httpx.AsyncClient(timeout=httpx.Timeout(timeout, connect=CONNECT_TIMEOUT_S))

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
            except httpx.HTTPError as error:
                delay = self.transport.retry_delay(call, attempt, None, error)
                if delay is None:
                    raise connection_error(error, self.base_url) from error
            else:
                delay = self.transport.retry_delay(call, attempt, response)
                if delay is None:
                    if response.status_code == 413:
                        self.transport.learn(response)
                    return response
                await response.aclose()
            await asyncio.sleep(delay)

    async def generate(self, image: ImageInput, prompt: str, *, timeout: float | None = None,
                       max_retries: int | None = None, **params: Any) -> GenerateResponse:
        payload = {"image_base64": encode_image(image), "prompt": prompt, **params}
        call = self.transport.call("POST", "/api/v1/generate", payload, timeout=timeout, max_retries=max_retries,
                                   retry_statuses=GENERATE_RETRY_STATUSES)
        return parse(await self._send(call), GenerateResponse)

    async def submit(self, image: ImageInput, prompt: str, *, callback_url: str | None = None,
                     idempotency_key: str | None = None, timeout: float | None = None,
                     max_retries: int | None = None, **params: Any) -> JobResponse:
        payload = {"image_base64": encode_image(image), "prompt": prompt, **params}
        if callback_url:
            payload["callback_url"] = callback_url
        headers = {"Idempotency-Key": idempotency_key or new_idempotency_key()}
        call = self.transport.call("POST", "/api/v1/jobs", payload, headers=headers, timeout=timeout,
                                   max_retries=max_retries)
        return parse(await self._send(call), JobResponse)

    async def get(self, job: str | JobResponse, *, timeout: float | None = None,
                  max_retries: int | None = None) -> JobResponse:
        call = self.transport.call("GET", f"/api/v1/jobs/{job_id_of(job)}", timeout=timeout, max_retries=max_retries)
        return parse(await self._send(call), JobResponse)

    async def cancel(self, job: str | JobResponse, *, timeout: float | None = None,
                     max_retries: int | None = None) -> JobResponse:
        call = self.transport.call("DELETE", f"/api/v1/jobs/{job_id_of(job)}", timeout=timeout,
                                   max_retries=max_retries)
        return parse(await self._send(call), JobResponse)

    async def list_jobs(self, offset: int = 0, limit: int = 20, *, timeout: float | None = None,
                        max_retries: int | None = None) -> JobListResponse:
        call = self.transport.call("GET", "/api/v1/jobs", query={"offset": offset, "limit": limit},
                                   timeout=timeout, max_retries=max_retries)
        return parse(await self._send(call), JobListResponse)

    async def batch(self, items: list[dict[str, Any]], *, image: ImageInput | None = None,
                    callback_url: str | None = None, timeout: float | None = None, max_retries: int | None = None,
                    **defaults: Any) -> BatchResponse:
        payload: dict[str, Any] = {"defaults": with_image(defaults, image), "items": [with_image(i) for i in items]}
        if callback_url:
            payload["callback_url"] = callback_url
        call = self.transport.call("POST", "/api/v1/batch", payload, timeout=timeout, max_retries=max_retries,
                                   retry_statuses=GENERATE_RETRY_STATUSES)
        return parse(await self._send(call), BatchResponse)

    async def wait(self, job: str | JobResponse, *, progress: ProgressCallback | None = None,
                   timeout: float | None = None, poll_interval: float = 1.0) -> JobResponse:
        """As ``Client.wait``: the event stream, resumed across failures, polling in between."""
        follow = Follow(job_id_of(job), timeout, progress)
        while True:
            if not follow.polling_only:
                try:
                    return await self._follow_stream(follow)
                except (I2VError, StreamUnavailable) as error:
                    follow.failed(error)
            try:
                current = await self.get(follow.job_id, max_retries=0, timeout=STREAM_READ_TIMEOUT_S)
            except I2VError as error:
                follow.failed(error)
            else:
                if (ended := follow.polled(current)) is not None:
                    return ended
                follow.deadline.check(current.status.value)
            await asyncio.sleep(follow.backoff(poll_interval))

    async def _follow_stream(self, follow: Follow) -> JobResponse:
        call = self.transport.call("GET", f"/api/v1/jobs/{follow.job_id}/events", headers=follow.stream_headers(),
                                   timeout=STREAM_READ_TIMEOUT_S)
        try:
            response = await self.http.send(self.transport.request(self.http, call), stream=True)
            try:
                if response.status_code >= 400:
                    await response.aread()
                    raise error_of(response)
                check_event_stream(response)
                reader = follow.connected()
                async for line in response.aiter_lines():
                    if (final := reader.feed(line)) is not None:
                        return final
            finally:
                await response.aclose()
        except httpx.HTTPError as error:
            raise connection_error(error, self.base_url) from error
        raise StreamUnavailable("the event stream ended before the job did")

    async def download(self, source: str | GenerateResponse | JobResponse, path: str | Path) -> Path:
        target = Path(path)
        try:
            async with self.http.stream("GET", video_url_of(source)) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise error_of(response)
                with target.open("wb") as file:
                    async for chunk in response.aiter_bytes(1 << 20):
                        file.write(chunk)
        except httpx.HTTPError as error:
            raise connection_error(error, self.base_url) from error
        return target

    async def ready(self) -> bool:
        try:
            return (await self.http.get(f"{self.base_url}/readyz", timeout=10)).status_code == 200
        except httpx.HTTPError:
            return False
