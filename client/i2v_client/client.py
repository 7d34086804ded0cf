"""The synchronous client: ``Client(base_url, token).generate(image, prompt, ...)``."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from i2v_client.images import ImageInput, encode_image, with_image
from i2v_client.models import (
    BatchResponse,
    GenerateResponse,
    JobListResponse,
    JobResponse,
)
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

DEFAULT_TIMEOUT_S = 900.0  # one synchronous generation may take minutes on a busy model


class Client:
    """The REST API as methods returning typed answers; errors raise an ``I2VError`` subclass.

    ``base_url`` defaults to ``I2V_API_URL`` (else http://127.0.0.1:8000), ``token`` to
    ``I2V_API_TOKEN`` (a key or a JWT), ``signing_secret`` to ``I2V_REQUEST_SIGNING_SECRET``.
    """

    def __init__(self, base_url: str | None = None, token: str | None = None, *, timeout: float = DEFAULT_TIMEOUT_S,
                 signing_secret: str | None = None, retry: RetryPolicy | None = None,
                 http: httpx.Client | None = None) -> None:
        self.transport = Transport(base_url, token, signing_secret, retry)
        self.timeout = timeout
        self.http = http or httpx.Client(timeout=httpx.Timeout(timeout, connect=10))

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
        """Send, retrying 429/503 and connection failures of idempotent calls (``RetryPolicy``)."""
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self.http.send(self.transport.request(self.http, call))
            except httpx.TransportError:
                delay = self.transport.retry_delay(call, attempt, None)
                if delay is None:
                    raise
            else:
                delay = self.transport.retry_delay(call, attempt, response)
                if delay is None:
                    return response
                response.close()
            time.sleep(delay)

    # --- generation ---

    def generate(self, image: ImageInput, prompt: str, **params: Any) -> GenerateResponse:
        """POST /api/v1/generate and wait for the video. ``params``: resolution, num_frames, fps,
        steps, guidance_scale, negative_prompt, seed, fit, and any field the gateway adds."""
        payload = {"image_base64": encode_image(image), "prompt": prompt, **params}
        return parse(self._send(self.transport.call("POST", "/api/v1/generate", payload)), GenerateResponse)

    def generate_json(self, payload: dict[str, Any]) -> dict[str, Any]:
        """POST a ready-made JSON body to /api/v1/generate; the answer as a dict (0.2 API)."""
        response = self._send(self.transport.call("POST", "/api/v1/generate", payload))
        return parse(response, GenerateResponse).model_dump(mode="json")

    # --- jobs ---

    def submit(self, image: ImageInput, prompt: str, *, callback_url: str | None = None,
               idempotency_key: str | None = None, **params: Any) -> JobResponse:
        """POST /api/v1/jobs: the queued job. An Idempotency-Key is sent (a fresh one unless
        given), so a retry after a 429, a 503 or a lost answer never makes a second job."""
        payload = {"image_base64": encode_image(image), "prompt": prompt, **params}
        if callback_url:
            payload["callback_url"] = callback_url
        headers = {"Idempotency-Key": idempotency_key or new_idempotency_key()}
        return parse(self._send(self.transport.call("POST", "/api/v1/jobs", payload, headers=headers)), JobResponse)

    def get(self, job: str | JobResponse) -> JobResponse:
        return parse(self._send(self.transport.call("GET", f"/api/v1/jobs/{job_id_of(job)}")), JobResponse)

    def cancel(self, job: str | JobResponse) -> JobResponse:
        """Cancel: a queued job never runs, a running one stops within a denoising step."""
        return parse(self._send(self.transport.call("DELETE", f"/api/v1/jobs/{job_id_of(job)}")), JobResponse)

    def list_jobs(self, offset: int = 0, limit: int = 20) -> JobListResponse:
        """The caller's jobs, newest first; ``next_offset`` for the next page."""
        call = self.transport.call("GET", "/api/v1/jobs", query={"offset": offset, "limit": limit})
        return parse(self._send(call), JobListResponse)

    def batch(self, items: list[dict[str, Any]], *, image: ImageInput | None = None,
              callback_url: str | None = None, **defaults: Any) -> BatchResponse:
        """POST /api/v1/batch: one job per item over ``defaults`` (``image`` for all, or an
        ``image`` in an item: a path, bytes or a PIL image); each item is accepted or has its error."""
        payload: dict[str, Any] = {"defaults": with_image(defaults, image), "items": [with_image(i) for i in items]}
        if callback_url:
            payload["callback_url"] = callback_url
        return parse(self._send(self.transport.call("POST", "/api/v1/batch", payload)), BatchResponse)

    def wait(self, job: str | JobResponse, *, progress: ProgressCallback | None = None,
             timeout: float | None = None, poll_interval: float = 1.0) -> JobResponse:
        """Until the job has succeeded, failed or been cancelled; the final job. ``progress`` is
        called with each change (status, step of total), from the job's event stream, or from
        polling every ``poll_interval`` s if the stream is not available. ``TimeoutError`` after
        ``timeout`` s."""
        job_id = job_id_of(job)
        deadline, notify = Deadline(job_id, timeout), ProgressNotifier(progress)
        try:
            return self._wait_stream(job_id, notify, deadline)
        except (StreamUnavailable, httpx.TransportError):
            pass
        while True:
            current = self.get(job_id)
            notify(job_progress(current))
            if current.status.final:
                return current
            deadline.check(current.status.value)
            time.sleep(deadline.pause(poll_interval))

    def _wait_stream(self, job_id: str, notify: ProgressNotifier, deadline: Deadline) -> JobResponse:
        call = self.transport.call("GET", f"/api/v1/jobs/{job_id}/events", headers={"Accept": "text/event-stream"})
        request = self.transport.request(self.http, call)
        request.extensions["timeout"] = httpx.Timeout(STREAM_READ_TIMEOUT_S, connect=10).as_dict()
        response = self.http.send(request, stream=True)
        try:
            if response.status_code in (401, 403, 404):
                response.read()
                raise error_of(response)  # polling would only answer the same
            check_event_stream(response)
            follower = EventFollower(job_id, deadline, notify)
            for line in response.iter_lines():
                if (final := follower.feed(line)) is not None:
                    return final
            raise StreamUnavailable("the event stream ended before the job did")
        finally:
            response.close()

    # --- files and health ---

    def download(self, source: str | GenerateResponse | JobResponse, path: str | Path) -> Path:
        """Save the video of ``source`` (a video URL, a generate answer or a succeeded job) to ``path``.
        Videos are capability URLs: no token is sent with them."""
        target = Path(path)
        with self.http.stream("GET", video_url_of(source)) as response:
            if response.status_code >= 400:
                response.read()
                raise error_of(response)
            with target.open("wb") as file:
                for chunk in response.iter_bytes(1 << 20):
                    file.write(chunk)
        return target

    def ready(self) -> bool:
        """True when /readyz says the model and the job store answer."""
        try:
            return self.http.get(f"{self.base_url}/readyz", timeout=10).status_code == 200
        except httpx.TransportError:
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
