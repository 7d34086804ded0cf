"""Triton's errors as the gateway's callers see them: a sentence and the request id, never
Triton's own text (a traceback, server paths) unless it is the model's validation message."""

from __future__ import annotations

from tritonclient.utils import InferenceServerException

from gateway.errors import InvalidImageError, ModelFailedError, ModelProcessLostError, ModelUnavailableError
from gateway.generation.triton_client import map_triton_error

TRACEBACK = ('Failed to process the request(s) for model \'i2vgen_xl_0_0\', message: IndexError: index out of '
             'range\n\nAt:\n  /srv/i2v/.venv/lib/python3.11/site-packages/PIL/QoiImagePlugin.py(66): _safe_read\n'
             'Traceback (most recent call last):\n  File "/srv/model_repository/i2vgen_xl/1/model.py", line 147')


def error(message: str, status: str) -> InferenceServerException:
    return InferenceServerException(msg=message, status=status)


def test_an_internal_error_is_one_sentence_with_the_request_id() -> None:
    mapped = map_triton_error(error(TRACEBACK, "StatusCode.INTERNAL"), "job1-2")
    assert isinstance(mapped, ModelFailedError) and mapped.status == 502
    assert mapped.message == "the model failed to make this video (request job1-2); the gateway's log has the details"


def test_a_dead_model_process_is_503_with_retry_after() -> None:
    mapped = map_triton_error(error("Stub process 'i2vgen_xl_0_0' is not healthy.", "StatusCode.INTERNAL"), "r1")
    assert isinstance(mapped, ModelProcessLostError) and isinstance(mapped, ModelUnavailableError)
    assert mapped.status == 503 and mapped.headers["Retry-After"]
    assert "(request r1)" in mapped.message and "Stub" not in mapped.message


def test_the_models_validation_message_passes_through() -> None:
    message = "IMAGE is not a decodable image of an accepted format (PNG, JPEG, WebP, BMP, GIF or TIFF)"
    mapped = map_triton_error(error(message, "StatusCode.INVALID_ARGUMENT"), "r1")
    assert isinstance(mapped, InvalidImageError) and mapped.message == message


def test_a_model_being_reloaded_is_503() -> None:
    mapped = map_triton_error(error("Request for unknown model: 'i2vgen_xl' has no available versions",
                                    "StatusCode.NOT_FOUND"))
    assert isinstance(mapped, ModelUnavailableError) and mapped.status == 503
