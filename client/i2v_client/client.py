"""The synchronous client: ``Client(base_url, token).generate(image, prompt, ...)``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from i2v_client.errors import I2VError
from i2v_client.images import ImageInput, encode_image, with_image
from i2v_client.models import (
    BatchResponse,
    GenerateResponse,
    JobListResponse,
    JobResponse,
)
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

__all__ = ["DEFAULT_TIMEOUT_S", "Client", "I2VClient"]


class Client:
    """The REST API as methods returning typed answers; every failure raises an ``I2VError``
    subclass (``APIConnectionError``, ``APITimeoutError`` when there is no answer).

    ``base_url`` defaults to ``I2V_API_URL`` (else http://127.0.0.1:8000), ``token`` to
    ``I2V_API_TOKEN`` (a key or a JWT), ``signing_secret`` to ``I2V_REQUEST_SIGNING_SECRET``,
    ``max_body_bytes`` (the gateway's body limit, checked before sending) to ``I2V_MAX_BODY_BYTES``.
    ``timeout`` bounds each attempt of a call (900 s: a synchronous generation); each method
    also takes its own ``timeout`` and ``max_retries``. A malformed URL or token raises
    ``ConfigurationError`` here.
    """

    def __init__(self, base_url: str | None = None, token: str | None = None, *, timeout: float = DEFAULT_TIMEOUT_S,
                 signing_secret: str | None = None, retry: RetryPolicy | None = None,
                 max_body_bytes: int | None = None, http: httpx.Client | None = None) -> None:
        self.transport = Transport(base_url, token, signing_secret, retry, max_body_bytes, timeout)
        self.timeout = timeout
        self.http = http or httpx.Client(timeout=httpx.Timeout(timeout, connect=CONNECT_TIMEOUT_S))

    @property
    def base_url(self) -> str:
        return self.transport.base_url

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _send(self, call: Call) -> httpx.Response:
        """Send, retrying 429/502/503/504 and network failures of idempotent calls, a 429 and a
        failed connect of any call (``RetryPolicy``); a network failure raises ``APIConnectionError``."""
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self.http.send(self.transport.request(self.http, call))
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
                response.close()
            time.sleep(delay)

    # --- generation ---

    def generate(self, image: ImageInput, prompt: str, *, timeout: float | None = None,
                 max_retries: int | None = None, **params: Any) -> GenerateResponse:
        """POST /api/v1/generate and wait for the video. ``params``: resolution, num_frames, fps,
        steps, guidance_scale, negative_prompt, seed, fit, and any field the gateway adds. Retried
        only where nothing ran: a 429 (after its Retry-After) and a connection never made."""
        payload = {"image_base64": encode_image(image), "prompt": prompt, **params}
        call = self.transport.call("POST", "/api/v1/generate", payload, timeout=timeout, max_retries=max_retries,
                                   retry_statuses=GENERATE_RETRY_STATUSES)
        return parse(self._send(call), GenerateResponse)

    def generate_json(self, payload: dict[str, Any], *, timeout: float | None = None,
                      max_retries: int | None = None) -> dict[str, Any]:
        """POST a ready-made JSON body to /api/v1/generate; the answer as a dict (0.2 API)."""
        call = self.transport.call("POST", "/api/v1/generate", payload, timeout=timeout, max_retries=max_retries,
                                   retry_statuses=GENERATE_RETRY_STATUSES)
        return parse(self._send(call), GenerateResponse).model_dump(mode="json")

    # --- jobs ---

    def submit(self, image: ImageInput, prompt: str, *, callback_url: str | None = None,
               idempotency_key: str | None = None, timeout: float | None = None, max_retries: int | None = None,
               **params: Any) -> JobResponse:
        """POST /api/v1/jobs: the queued job. An Idempotency-Key is sent (a fresh one unless
        given), so a retry after a 429, a 503 or a lost answer never makes a second job."""
        payload = {"image_base64": encode_image(image), "prompt": prompt, **params}
        if callback_url:
            payload["callback_url"] = callback_url
        headers = {"Idempotency-Key": idempotency_key or new_idempotency_key()}
        call = self.transport.call("POST", "/api/v1/jobs", payload, headers=headers, timeout=timeout,
                                   max_retries=max_retries)
        return parse(self._send(call), JobResponse)

    def get(self, job: str | JobResponse, *, timeout: float | None = None,
            max_retries: int | None = None) -> JobResponse:
        call = self.transport.call("GET", f"/api/v1/jobs/{job_id_of(job)}", timeout=timeout, max_retries=max_retries)
        return parse(self._send(call), JobResponse)

    def cancel(self, job: str | JobResponse, *, timeout: float | None = None,
               max_retries: int | None = None) -> JobResponse:
        """Cancel: a queued job never runs, a running one stops within a denoising step."""
        call = self.transport.call("DELETE", f"/api/v1/jobs/{job_id_of(job)}", timeout=timeout,
                                   max_retries=max_retries)
        return parse(self._send(call), JobResponse)

    def list_jobs(self, offset: int = 0, limit: int = 20, *, timeout: float | None = None,
                  max_retries: int | None = None) -> JobListResponse:
        """The caller's jobs, newest first; ``next_offset`` for the next page."""
        call = self.transport.call("GET", "/api/v1/jobs", query={"offset": offset, "limit": limit},
                                   timeout=timeout, max_retries=max_retries)
        return parse(self._send(call), JobListResponse)

    def batch(self, items: list[dict[str, Any]], *, image: ImageInput | None = None,
              callback_url: str | None = None, timeout: float | None = None, max_retries: int | None = None,
              **defaults: Any) -> BatchResponse:
        """POST /api/v1/batch: one job per item over ``defaults`` (``image`` for all, or an
        ``image`` in an item: a path, bytes or a PIL image); each item is accepted or has its error."""
        payload: dict[str, Any] = {"defaults": with_image(defaults, image), "items": [with_image(i) for i in items]}
        if callback_url:
            payload["callback_url"] = callback_url
        call = self.transport.call("POST", "/api/v1/batch", payload, timeout=timeout, max_retries=max_retries,
                                   retry_statuses=GENERATE_RETRY_STATUSES)
        return parse(self._send(call), BatchResponse)

    def wait(self, job: str | JobResponse, *, progress: ProgressCallback | None = None,
             timeout: float | None = None, poll_interval: float = 1.0) -> JobResponse:
        """Until the job has succeeded, failed or been cancelled; the final job. ``progress`` is
        called once with each change (status, step of total) from the job's event stream, or from
        polling every ``poll_interval`` s where there is no stream. Connection failures, 429 and
        5xx answers and gateway restarts are ridden out (the stream resumes with Last-Event-ID,
        polling in between, back-off capped at 5 s) until the job ends or ``timeout`` s pass:
        then ``WaitTimeoutError`` (the job goes on). 401, 403 and 404 raise at once."""
        follow = Follow(job_id_of(job), timeout, progress)
        while True:
            if not follow.polling_only:
                try:
                    return self._follow_stream(follow)
                except (I2VError, StreamUnavailable) as error:
                    follow.failed(error)
            try:
                current = self.get(follow.job_id, max_retries=0, timeout=STREAM_READ_TIMEOUT_S)
            except I2VError as error:
                follow.failed(error)
            else:
                if (ended := follow.polled(current)) is not None:
                    return ended
                follow.deadline.check(current.status.value)
            time.sleep(follow.backoff(poll_interval))

    def _follow_stream(self, follow: Follow) -> JobResponse:
        """One connection to the job's events, read until its final event."""
        call = self.transport.call("GET", f"/api/v1/jobs/{follow.job_id}/events", headers=follow.stream_headers(),
                                   timeout=STREAM_READ_TIMEOUT_S)
        try:
            response = self.http.send(self.transport.request(self.http, call), stream=True)
            try:
                if response.status_code >= 400:
                    response.read()
                    raise error_of(response)
                check_event_stream(response)
                reader = follow.connected()
                for line in response.iter_lines():
                    if (final := reader.feed(line)) is not None:
                        return final
            finally:
                response.close()
        except httpx.HTTPError as error:
            raise connection_error(error, self.base_url) from error
        raise StreamUnavailable("the event stream ended before the job did")

    # --- files and health ---

    def download(self, source: str | GenerateResponse | JobResponse, path: str | Path) -> Path:
        """Save the video of ``source`` (a video URL, a generate answer or a succeeded job) to ``path``.
        Videos are capability URLs: no token is sent with them."""
        target = Path(path)
        try:
            with self.http.stream("GET", video_url_of(source)) as response:
                if response.status_code >= 400:
                    response.read()
                    raise error_of(response)
                with target.open("wb") as file:
                    for chunk in response.iter_bytes(1 << 20):
                        file.write(chunk)
        except httpx.HTTPError as error:
            raise connection_error(error, self.base_url) from error
        return target

    def ready(self) -> bool:
        """True when /readyz says the model and the job store answer."""
        try:
            return self.http.get(f"{self.base_url}/readyz", timeout=10).status_code == 200
        except httpx.HTTPError:
            return False


class I2VClient(Client):
    """The 0.2 client's name and method names, over ``Client`` (answers are models, which also
    read like the dicts they were: ``result["video_url"]``)."""

    def submit_job(self, image: ImageInput, prompt: str, **params: Any) -> JobResponse:
        return self.submit(image, prompt, **params)

    def get_job(self, job_id: str) -> JobResponse:
        return self.get(job_id)

    def cancel_job(self, job_id: str) -> JobResponse:
        return self.cancel(job_id)

    def wait_for_job(self, job_id: str, poll_s: float = 1.0, timeout_s: float | None = None) -> JobResponse:
        return self.wait(job_id, timeout=timeout_s, poll_interval=poll_s)
