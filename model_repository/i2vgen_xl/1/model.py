"""Triton Python-backend glue for I2VGen-XL: tensors in, ``i2v_model`` calls, tensors out.

Nothing here knows about diffusion; the ``i2v_model`` package beside this file does that work.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from i2v_model import (
    GenerationCancelledError,
    GenerationRequest,
    InvalidRequestError,
    ModelSettings,
    ProgressReporter,
    VideoGenerator,
    build_request,
)

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")


def _scalar(request, name: str, required: bool = True):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    if tensor is None:
        if required:
            raise InvalidRequestError(f"input {name} is required")
        return None
    array = tensor.as_numpy()
    if array.size != 1:
        raise InvalidRequestError(f"input {name} must hold exactly one value per request, got {array.size}")
    return array.reshape(-1)[0]


def _text(value) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequestError("text inputs must be UTF-8") from None
    return str(value)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        model_dir = Path(args["model_repository"])
        settings = ModelSettings.from_parameters(parameters, base_dir=model_dir)
        if settings.device.startswith("cuda") and args.get("model_instance_kind") == "GPU":
            # One instance per GPU in the instance group: use the device Triton assigned.
            settings = dataclasses.replace(settings, device=f"cuda:{args['model_instance_device_id']}")
        self.settings = settings
        self.generator = VideoGenerator.load(settings)
        self.progress = ProgressReporter(self._send_progress if settings.progress_model else None)

    def _send_progress(self, request_ids: Sequence[str], step: int, total: int, finished: bool) -> None:
        """One report to the progress model (see i2v_model/progress.py), answered at once."""
        inputs = [
            pb_utils.Tensor("REQUEST_ID", np.array([i.encode() for i in request_ids], dtype=np.object_)),
            pb_utils.Tensor("STEP", np.array([step], dtype=np.int32)),
            pb_utils.Tensor("TOTAL", np.array([total], dtype=np.int32)),
            pb_utils.Tensor("FINISHED", np.array([finished], dtype=np.bool_)),
        ]
        request = pb_utils.InferenceRequest(model_name=self.settings.progress_model, inputs=inputs,
                                            requested_output_names=[])
        for response in request.exec(decoupled=True):
            if response.has_error():
                raise RuntimeError(response.error().message())

    def _parse(self, request) -> GenerationRequest:
        image = _scalar(request, "IMAGE")
        negative = _scalar(request, "NEGATIVE_PROMPT", required=False)
        seed = _scalar(request, "SEED", required=False)
        return build_request(
            self.settings,
            image=image if isinstance(image, bytes) else bytes(image),
            prompt=_text(_scalar(request, "PROMPT")),
            negative_prompt=None if negative is None else _text(negative),
            num_frames=int(_scalar(request, "NUM_FRAMES")),
            num_inference_steps=int(_scalar(request, "NUM_INFERENCE_STEPS")),
            guidance_scale=float(_scalar(request, "GUIDANCE_SCALE")),
            height=int(_scalar(request, "HEIGHT")),
            width=int(_scalar(request, "WIDTH")),
            seed=None if seed is None else int(seed),
        )

    def execute(self, requests):
        request_ids = [request.request_id() for request in requests]
        try:
            return self._execute(requests, request_ids)
        finally:
            # Whatever the outcome, the watchers of these requests must hear that they ended.
            self.progress.finished(request_ids)

    def _execute(self, requests, request_ids: list[str]):
        responses: list = [None] * len(requests)
        accepted: list[int] = []
        parsed: list[GenerationRequest] = []
        for index, request in enumerate(requests):
            try:
                parsed.append(self._parse(request))
                accepted.append(index)
            except InvalidRequestError as exc:
                responses[index] = _error(str(exc), pb_utils.TritonError.INVALID_ARG)

        def is_cancelled(position: int) -> bool:
            return requests[accepted[position]].is_cancelled()

        def on_step(positions, done: int, total: int) -> None:
            self.progress.step([request_ids[accepted[position]] for position in positions], done, total)

        results = self.generator.generate(parsed, is_cancelled=is_cancelled, on_step=on_step)
        for position, result in zip(accepted, results, strict=True):
            if result.error is None:
                responses[position] = pb_utils.InferenceResponse(output_tensors=[
                    pb_utils.Tensor("FRAMES", result.frames[np.newaxis]),
                    pb_utils.Tensor("SEED", np.array([result.seed], dtype=np.int64)),
                ])
            elif isinstance(result.error, GenerationCancelledError):
                responses[position] = _error(str(result.error), getattr(pb_utils.TritonError, "CANCELLED",
                                                                         pb_utils.TritonError.UNAVAILABLE))
            else:
                responses[position] = _error(str(result.error), pb_utils.TritonError.INTERNAL)
        return responses

    def finalize(self):
        self.generator = None


def _error(message: str, code) -> pb_utils.InferenceResponse:
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, code))
