"""Python SDK for the I2VGen-XL image-to-video API: ``Client``, ``AsyncClient``, typed answers,
errors per HTTP status, webhook verification, and the ``i2v`` command line (``i2v_client.cli``)."""

from i2v_client.aio import AsyncClient
from i2v_client.client import Client, I2VClient
from i2v_client.errors import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    BadGateway,
    BadRequest,
    ConfigurationError,
    Conflict,
    Forbidden,
    GatewayTimeout,
    GenerationTimeoutError,
    I2VError,
    InternalServerError,
    InvalidRequestError,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    RateLimitedError,
    ServiceUnavailable,
    ServiceUnavailableError,
    Unauthorized,
    Unprocessable,
    WaitTimeoutError,
    parse_error,
)
from i2v_client.images import encode_image
from i2v_client.models import (
    BatchItemResult,
    BatchResponse,
    GenerateResponse,
    JobError,
    JobListResponse,
    JobProgress,
    JobResponse,
    JobStatus,
    Progress,
    WebhookEvent,
)
from i2v_client.transport import NO_RETRIES, RetryPolicy
from i2v_client.webhooks import WebhookVerificationError, verify_webhook

__all__ = [
    "NO_RETRIES", "APIConnectionError", "APITimeoutError", "AsyncClient", "ConfigurationError", "WaitTimeoutError",
    "AuthenticationError", "BadGateway", "BadRequest", "BatchItemResult",
    "BatchResponse", "Client", "Conflict", "Forbidden", "GatewayTimeout", "GenerateResponse",
    "GenerationTimeoutError", "I2VClient", "I2VError", "InternalServerError", "InvalidRequestError", "JobError",
    "JobListResponse", "JobProgress", "JobResponse", "JobStatus", "NotFound", "PayloadTooLarge", "Progress",
    "RateLimited", "RateLimitedError", "RetryPolicy", "ServiceUnavailable", "ServiceUnavailableError",
    "Unauthorized", "Unprocessable", "WebhookEvent", "WebhookVerificationError", "encode_image", "parse_error",
    "verify_webhook",
]
