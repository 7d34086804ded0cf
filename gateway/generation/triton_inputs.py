"""The ``i2vgen_xl`` request as Triton tensors; works with ``tritonclient.http`` and ``.grpc``.

The names and types mirror ``model_repository/i2vgen_xl/config.pbtxt`` (contract 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

MODEL_NAME = "i2vgen_xl"
PROGRESS_MODEL_NAME = "i2vgen_xl_progress"


@dataclass(frozen=True)
class VideoRequest:
    """One video for the Triton model."""

    image: bytes
    prompt: str
    num_frames: int = 16
    num_inference_steps: int = 50
    guidance_scale: float = 9.0
    height: int = 512
    width: int = 512
    negative_prompt: str | None = None
    seed: int | None = None
    step_cache_interval: int | None = None  # None: the model's configured default


def build_inputs(protocol: ModuleType, request: VideoRequest) -> list[Any]:
    """``InferInput`` objects for ``protocol`` (``tritonclient.grpc``, ``.grpc.aio`` or ``.http``)."""
    tensors: list[tuple[str, np.ndarray, str]] = [
        ("IMAGE", np.array([[request.image]], dtype=object), "BYTES"),
        ("PROMPT", np.array([[request.prompt.encode("utf-8")]], dtype=object), "BYTES"),
        ("NUM_FRAMES", np.array([[request.num_frames]], dtype=np.int32), "INT32"),
        ("NUM_INFERENCE_STEPS", np.array([[request.num_inference_steps]], dtype=np.int32), "INT32"),
        ("GUIDANCE_SCALE", np.array([[request.guidance_scale]], dtype=np.float32), "FP32"),
        ("HEIGHT", np.array([[request.height]], dtype=np.int32), "INT32"),
        ("WIDTH", np.array([[request.width]], dtype=np.int32), "INT32"),
    ]
    if request.negative_prompt is not None:
        negative = np.array([[request.negative_prompt.encode("utf-8")]], dtype=object)
        tensors.append(("NEGATIVE_PROMPT", negative, "BYTES"))
    if request.seed is not None:
        tensors.append(("SEED", np.array([[request.seed]], dtype=np.int64), "INT64"))
    if request.step_cache_interval is not None:
        interval = np.array([[request.step_cache_interval]], dtype=np.int32)
        tensors.append(("STEP_CACHE_INTERVAL", interval, "INT32"))
    inputs = []
    for name, array, datatype in tensors:
        tensor = protocol.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    return inputs
