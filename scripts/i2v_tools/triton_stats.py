"""Request and execution counts of the i2vgen_xl model, read from Triton's statistics API."""

from __future__ import annotations

import time
from typing import Any

from gateway.generation.triton_inputs import MODEL_NAME


def model_counts(client: Any) -> tuple[int, int]:
    """(requests, model executions) so far; ``client`` is a tritonclient HTTP or gRPC client."""
    import tritonclient.grpc as grpcclient

    if isinstance(client, grpcclient.InferenceServerClient):
        stats = client.get_inference_statistics(MODEL_NAME, as_json=True)
    else:
        stats = client.get_inference_statistics(MODEL_NAME)
    model = stats["model_stats"][0]
    return int(model.get("inference_count", 0)), int(model.get("execution_count", 0))


def settled_counts(client: Any, requests_at_least: int, timeout: float = 10.0) -> tuple[int, int]:
    """Counts once they include ``requests_at_least`` requests.

    Triton updates its statistics just after it sends a response, so a client that reads them
    at once can miss the last execution and see batching that did not happen."""
    deadline = time.monotonic() + timeout
    while model_counts(client)[0] < requests_at_least and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)  # the execution is reported with the batch's last request
    return model_counts(client)
