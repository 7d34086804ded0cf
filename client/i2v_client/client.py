"""A small synchronous client for the image-to-video REST API."""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path
from typing import Any

import requests

from i2v_client.errors import parse_error
from i2v_client.signing import signature_headers

DEFAULT_URL = "http://localhost:8000"


def encode_image(image: str | Path | bytes) -> str:
    """A file path or raw bytes as the base64 text ``image_base64`` expects."""
    data = image if isinstance(image, bytes) else Path(image).read_bytes()
    return base64.b64encode(data).decode("ascii")


class I2VClient:
    """``I2VClient(base_url, token).generate(image, prompt, ...)`` returns the response fields."""

    def __init__(self, base_url: str | None = None, token: str | None = None, timeout: float = 900.0,
                 signing_secret: str | None = None) -> None:
        self.base_url = (base_url or os.environ.get("I2V_API_URL") or DEFAULT_URL).rstrip("/")
        self.token = token if token is not None else os.environ.get("I2V_API_TOKEN", "")
        self.timeout = timeout
        # Set when the gateway requires signed requests (I2V_REQUEST_SIGNING_SECRET there).
        self.signing_secret = signing_secret or os.environ.get("I2V_REQUEST_SIGNING_SECRET")
        self.session = requests.Session()

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _call(self, method: str, path: str, payload: Any = None, query: str = "",
              headers: dict[str, str] | None = None) -> dict[str, Any]:
        """One API call: JSON body, auth and (when configured) signature headers, errors raised."""
        body = json.dumps(payload).encode() if payload is not None else b""
        all_headers = {**self._headers(), **(headers or {})}
        if payload is not None:
            all_headers["Content-Type"] = "application/json"
        if self.signing_secret:
            all_headers.update(signature_headers(self.signing_secret, method, path, query, body))
        url = f"{self.base_url}{path}" + (f"?{query}" if query else "")
        response = self.session.request(method, url, data=body or None, headers=all_headers, timeout=self.timeout)
        return self._check(response)

    def _check(self, response: requests.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = response.text
        if response.status_code >= 400:
            raise parse_error(response.status_code, body, response.headers.get("Retry-After"))
        return body

    def generate(self, image: str | Path | bytes, prompt: str, **options: Any) -> dict[str, Any]:
        """POST /api/v1/generate. Options: resolution, num_frames, fps, steps, guidance_scale,
        negative_prompt, seed, fit. Raises an ``I2VError`` subclass on failure."""
        payload = {"image_base64": encode_image(image), "prompt": prompt, **options}
        return self.generate_json(payload)

    def generate_json(self, payload: dict[str, Any]) -> dict[str, Any]:
        """POST a ready-made JSON body to /api/v1/generate."""
        return self._call("POST", "/api/v1/generate", payload)

    def submit_job(self, image: str | Path | bytes, prompt: str, callback_url: str | None = None,
                   idempotency_key: str | None = None, **options: Any) -> dict[str, Any]:
        """POST /api/v1/jobs; the job (``job_id``, ``status``, ``status_url``)."""
        payload = {"image_base64": encode_image(image), "prompt": prompt, **options}
        if callback_url:
            payload["callback_url"] = callback_url
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return self._call("POST", "/api/v1/jobs", payload, headers=headers)

    def get_job(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/api/v1/jobs/{job_id}")

    def list_jobs(self, offset: int = 0, limit: int = 20) -> dict[str, Any]:
        return self._call("GET", "/api/v1/jobs", query=f"offset={offset}&limit={limit}")

    def cancel_job(self, job_id: str) -> dict[str, Any]:
        return self._call("DELETE", f"/api/v1/jobs/{job_id}")

    def wait_for_job(self, job_id: str, poll_s: float = 1.0, timeout_s: float | None = None) -> dict[str, Any]:
        """Poll until the job is succeeded, failed or cancelled; the final job."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            job = self.get_job(job_id)
            if job["status"] in ("succeeded", "failed", "cancelled"):
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} is still {job['status']} after {timeout_s} s")
            time.sleep(poll_s)

    def download(self, video_url: str, path: str | Path) -> Path:
        """Save the video at ``video_url`` to ``path``."""
        target = Path(path)
        with self.session.get(video_url, stream=True, timeout=self.timeout) as response:
            if response.status_code >= 400:
                raise parse_error(response.status_code, response.text)
            with target.open("wb") as file:
                for chunk in response.iter_content(1 << 20):
                    file.write(chunk)
        return target

    def ready(self) -> bool:
        return self.session.get(f"{self.base_url}/readyz", timeout=10).status_code == 200
