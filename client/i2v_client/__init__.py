"""Python client for the I2VGen-XL image-to-video API."""

from i2v_client.client import I2VClient, encode_image
from i2v_client.errors import (
    AuthenticationError,
    GenerationTimeoutError,
    I2VError,
    InvalidRequestError,
    RateLimitedError,
    ServiceUnavailableError,
    parse_error,
)

__all__ = [
    "AuthenticationError", "GenerationTimeoutError", "I2VClient", "I2VError", "InvalidRequestError",
    "RateLimitedError", "ServiceUnavailableError", "encode_image", "parse_error",
]
