"""A small synchronous client for the image-to-video REST API."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import requests

from i2v_client.errors import parse_error

DEFAULT_URL = "http://localhost:8000"


def encode_image(image: str | Path | bytes) -> str:
    """A file path or raw bytes as the base64 text ``image_base64`` expects."""
    data = image if isinstance(image, bytes) else Path(image).read_bytes()
    return base64.b64encode(data).decode("ascii")


class I2VClient:
    """``I2VClient(base_url, token).generate(image, prompt, ...)`` returns the response fields."""

    def __init__(self, base_url: str | None = None, token: str | None = None, timeout: float = 900.0) -> None:
        self.base_url = (base_url or os.environ.get("I2V_API_URL") or DEFAULT_URL).rstrip("/")
        self.token = token if token is not None else os.environ.get("I2V_API_TOKEN", "")
        self.timeout = timeout
        self.session = requests.Session()

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

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
        response = self.session.post(f"{self.base_url}/api/v1/generate", json=payload, headers=self._headers(),
                                     timeout=self.timeout)
        return self._check(response)

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
