"""``input_reference`` to the native API's ``image_base64``: a file part, a data: URL, or an http(s)
URL fetched with the webhooks' address checks, the image size limit and the webhook timeout."""

from __future__ import annotations

import asyncio
import base64

import httpx

from gateway.config import Settings
from gateway.errors import InvalidFieldError, PayloadTooLargeError
from gateway.jobs.webhooks import check_callback_url
from gateway.openai.errors import InvalidParamError
from gateway.openai.protocol import ImageReference

PARAM = "input_reference"


async def image_base64(reference: ImageReference | str | None, upload: bytes | None, settings: Settings) -> str:
    """The image as the native API takes it; ``InvalidParamError`` naming input_reference if it cannot be had."""
    if upload is not None:
        if not upload:
            raise InvalidParamError("input_reference is an empty file", PARAM)
        return base64.b64encode(upload).decode()
    if isinstance(reference, ImageReference):
        if reference.file_id is not None:
            raise InvalidParamError("input_reference.file_id is not supported here (there is no Files API): send "
                                    "the image as a file part, or as {\"image_url\": \"data:...\" or \"https://...\"}",
                                    PARAM, "unsupported_value")
        reference = reference.image_url
    if not reference:
        raise InvalidParamError("input_reference is required: this is image-to-video. Send the image as a file "
                                "part, as {\"image_url\": ...}, or as a data: or https: URL", PARAM, "missing")
    if reference.lstrip()[:5].lower() == "data:":
        return reference  # the native decoder takes a data: URL as it is
    if reference.lower().startswith(("http://", "https://")):
        return base64.b64encode(await fetch_image(reference, settings)).decode()
    raise InvalidParamError("input_reference must be a file part, a data: URL or an http(s) URL", PARAM)


async def fetch_image(url: str, settings: Settings) -> bytes:
    """GET ``url`` as a webhook would be POSTed: public addresses only (unless I2V_WEBHOOK_ALLOW_PRIVATE),
    no redirects, at most I2V_MAX_IMAGE_BYTES, all within I2V_WEBHOOK_TIMEOUT_S."""
    try:
        await check_callback_url(url, settings.webhook_allow_private, field=PARAM)
    except InvalidFieldError as exc:
        raise InvalidParamError(exc.message, PARAM) from None
    try:
        return await asyncio.wait_for(_download(url, settings.max_image_bytes, settings.webhook_timeout_s),
                                      settings.webhook_timeout_s)
    except asyncio.TimeoutError:
        raise InvalidParamError(f"input_reference: {url} did not answer within {settings.webhook_timeout_s:g} s",
                                PARAM) from None
    except httpx.HTTPError as exc:
        raise InvalidParamError(f"input_reference: {url} could not be fetched ({type(exc).__name__})", PARAM) \
            from None


async def _download(url: str, max_bytes: int, timeout_s: float) -> bytes:
    async with httpx.AsyncClient(timeout=timeout_s, follow_redirects=False) as client, \
            client.stream("GET", url, headers={"user-agent": "i2v-gateway/1"}) as response:
        if response.status_code != 200:
            raise InvalidParamError(f"input_reference: {url} answered HTTP {response.status_code}", PARAM)
        received = bytearray()
        async for chunk in response.aiter_bytes():
            received.extend(chunk)
            if len(received) > max_bytes:
                raise PayloadTooLargeError(f"input_reference: the image at {url} is larger than {max_bytes} bytes")
        return bytes(received)
