"""Triton Python-backend glue for I2VGen-XL: tensors in, ``i2v_model`` calls, tensors out.

Nothing here knows about diffusion; the ``i2v_model`` package beside this file does that work.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

from i2v_model import (
    GenerationCancelledError,
    GenerationRequest,
    GenerationResult,
    GeneratorMetrics,
    InvalidRequestError,
    ModelSettings,
    ProgressReporter,
    VideoGenerator,
    build_request,
)

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
logger = logging.getLogger("i2vgen_xl")

# A denoising step takes milliseconds on the tiny CPU model, 0.23 s at 512x512 and 0.78 s at
# 1280x704 on an H100 (batch 1), and grows with the batch.
STEP_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0]


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
        self.generator.metrics = self._metrics(args["model_name"])
        self.progress = ProgressReporter(self._send_progress if settings.progress_model else None)

    def _metrics(self, model_name: str) -> GeneratorMetrics | None:
        """Custom metrics on Triton's /metrics (the Python backend's metrics API), or None where
        metrics are off: the model serves either way."""
        try:
            steps = pb_utils.MetricFamily(
                name="i2v_model_denoising_step_seconds", kind=pb_utils.MetricFamily.HISTOGRAM,
                description="Seconds of one denoising step, by the number of videos in the pipeline call")
            guards = pb_utils.MetricFamily(
                name="i2v_model_nan_guard_total", kind=pb_utils.MetricFamily.COUNTER,
                description="Videos refused because their frames held NaN or infinite values")
        except Exception as exc:  # noqa: BLE001 - e.g. tritonserver --allow-metrics=false
            logger.warning("custom metrics are off: %s", exc)
            return None
        # Families must outlive their metrics (the backend checks); both live as long as the model.
        self._metric_families = (steps, guards)
        step_metrics: dict[int, Any] = {}
        nan_guards = guards.Metric(labels={"model": model_name})

        def step_seconds(seconds: float, batch: int) -> None:
            if batch not in step_metrics:
                step_metrics[batch] = steps.Metric(labels={"model": model_name, "batch": str(batch)},
                                                   buckets=STEP_BUCKETS)
            step_metrics[batch].observe(seconds)

        return GeneratorMetrics(step_seconds=step_seconds, nan_guard=lambda: nan_guards.increment(1))

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
        step_cache_interval = _scalar(request, "STEP_CACHE_INTERVAL", required=False)
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
            step_cache_interval=None if step_cache_interval is None else int(step_cache_interval),
        )

    def execute(self, requests):
        """Answer each request as soon as its own video is done: through its response sender, one
        final response each, when its pipeline call ends (its group's call when batch_invariant is
        false), not when the whole batch does. Returns None, as the Python backend expects of a
        model that uses response senders. Nothing raised here may fail a neighbour: whatever goes
        wrong is answered per request, and no traceback or path reaches a caller (the log has them).
        """
        answers = _Answers(requests, self.progress)
        try:
            self._execute(requests, answers)
        except Exception:  # noqa: BLE001 - a fault of ours: every request not yet answered gets it
            logger.exception("execute failed for %d request(s) %s", len(requests), answers.ids)
        finally:
            answers.fail_unanswered()
        return None

    def _execute(self, requests, answers: _Answers) -> None:
        accepted: list[int] = []
        parsed: list[GenerationRequest] = []
        for index, request in enumerate(requests):
            try:
                parsed.append(self._parse(request))
                accepted.append(index)
            except InvalidRequestError as exc:
                answers.error(index, str(exc), pb_utils.TritonError.INVALID_ARG)
            except Exception:  # noqa: BLE001 - our fault, not the caller's: this request alone fails
                logger.exception("reading request %s failed", answers.reference(index))
                answers.error(index, f"internal error while reading this request ({answers.reference(index)}); "
                              "the model's log has the details", pb_utils.TritonError.INTERNAL)
        if not parsed:
            return

        def is_cancelled(position: int) -> bool:
            return requests[accepted[position]].is_cancelled()

        def on_step(positions, done: int, total: int) -> None:
            self.progress.step([answers.ids[accepted[position]] for position in positions], done, total)

        def on_done(positions, results: Sequence[GenerationResult]) -> None:
            for position, result in zip(positions, results, strict=True):
                index = accepted[position]
                if result.error is None and result.frames is not None:
                    answers.send(index, pb_utils.InferenceResponse(output_tensors=[
                        pb_utils.Tensor("FRAMES", result.frames[np.newaxis]),
                        pb_utils.Tensor("SEED", np.array([result.seed], dtype=np.int64)),
                    ]))
                    result.frames = None  # sent (copied to shared memory): free it now
                elif isinstance(result.error, GenerationCancelledError):
                    answers.error(index, str(result.error), getattr(pb_utils.TritonError, "CANCELLED",
                                                                    pb_utils.TritonError.UNAVAILABLE))
                else:
                    answers.error(index, f"{result.error} ({answers.reference(index)})",
                                  pb_utils.TritonError.INTERNAL)

        self.generator.generate(parsed, is_cancelled=is_cancelled, on_step=on_step, on_done=on_done)

    def finalize(self):
        self.generator = None


def _error(message: str, code) -> pb_utils.InferenceResponse:
    return pb_utils.InferenceResponse(error=pb_utils.TritonError(message, code))


class _Answers:
    """The one final response of each request of an ``execute``, sent once through its sender."""

    def __init__(self, requests, progress: ProgressReporter) -> None:
        self.ids = [request.request_id() for request in requests]
        self.progress = progress
        self._senders = [request.get_response_sender() for request in requests]
        self._pending = set(range(len(requests)))
        # For log lines and error messages of requests sent without an id.
        self._batch = secrets.token_hex(4)

    def reference(self, index: int) -> str:
        """How a message names the request, so its caller and the log can be matched."""
        return f"request {self.ids[index]}" if self.ids[index] else f"reference {self._batch}-{index}"

    def send(self, index: int, response) -> None:
        if index not in self._pending:
            return
        self._pending.discard(index)
        try:
            self._senders[index].send(response, flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        except Exception:  # noqa: BLE001 - e.g. the caller is gone; the others are still answered
            logger.exception("could not answer %s", self.reference(index))
        finally:
            # Its watchers hear that it ended, whatever the outcome.
            self.progress.finished([self.ids[index]])

    def error(self, index: int, message: str, code) -> None:
        self.send(index, _error(message, code))

    def fail_unanswered(self) -> None:
        for index in sorted(self._pending):
            self.error(index, f"internal error in the model ({self.reference(index)}); the model's log has the "
                       "details", pb_utils.TritonError.INTERNAL)
