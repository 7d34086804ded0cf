"""The I2VGen-XL work of the Triton models, importable and testable without Triton.

``settings`` (tunables), ``inputs`` (validation, grouping), ``pipeline`` (the controlled diffusers
pipeline), ``generator`` (batches of requests to uint8 frames), ``progress`` (per-step reports and
the hub that streams them to watchers). Torch and diffusers are imported only when a pipeline loads.
"""

from i2v_model.generator import (
    GenerationCancelledError,
    GenerationFailedError,
    GenerationResult,
    GeneratorMetrics,
    VideoGenerator,
    frames_to_uint8,
)
from i2v_model.inputs import (
    MAX_SEED,
    GenerationRequest,
    InvalidRequestError,
    build_request,
    decode_image,
    fit_image,
    group_by_batch_key,
)
from i2v_model.progress import ProgressHub, ProgressReporter, ProgressSettings
from i2v_model.settings import ModelSettings

__all__ = [
    "MAX_SEED", "GenerationCancelledError", "GenerationFailedError", "GenerationRequest", "GenerationResult",
    "GeneratorMetrics", "InvalidRequestError", "ModelSettings", "ProgressHub", "ProgressReporter", "ProgressSettings",
    "VideoGenerator", "build_request", "decode_image", "fit_image", "frames_to_uint8", "group_by_batch_key",
]
