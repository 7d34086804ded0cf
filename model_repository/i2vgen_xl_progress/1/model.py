"""Triton Python-backend glue for ``i2vgen_xl_progress``: WATCH and REPORT requests to a ``ProgressHub``.

The contract is in ``../config.pbtxt``; the logic in ``i2v_model/progress.py``.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import triton_python_backend_utils as pb_utils

from i2v_model import ProgressHub, ProgressSettings

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL
# A watch ends with a final response whose STEP and TOTAL are this, rather than an empty one: Triton
# only passes empty final responses to clients that ask for them, which the asyncio gRPC client
# (the gateway's) cannot do.
ENDED = -1


class _TritonWatchStream:
    """A watcher's decoupled response sender, as the hub sees it."""

    def __init__(self, sender) -> None:
        self._sender = sender

    def send(self, step: int, total: int, flags: int = 0) -> None:
        self._sender.send(pb_utils.InferenceResponse(output_tensors=[
            pb_utils.Tensor("STEP", np.array([step], dtype=np.int32)),
            pb_utils.Tensor("TOTAL", np.array([total], dtype=np.int32)),
        ]), flags=flags)

    def end(self) -> None:
        self.send(ENDED, ENDED, flags=FINAL)

    def is_cancelled(self) -> bool:
        return self._sender.is_cancelled()


def _input(request, name: str):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy().reshape(-1)


def _first(request, name: str):
    values = _input(request, name)
    if values is not None and values.size != 1:
        raise ValueError(f"{name} must hold exactly one value, got {values.size}")
    return None if values is None else values[0]


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        self.hub = ProgressHub(ProgressSettings.from_parameters(parameters).max_watch_s)
        self.hub.start()

    def execute(self, requests):
        for request in requests:
            sender = request.get_response_sender()
            try:
                self._handle(request, sender)
            except ValueError as exc:
                sender.send(pb_utils.InferenceResponse(
                    error=pb_utils.TritonError(str(exc), pb_utils.TritonError.INVALID_ARG)), flags=FINAL)
        return None

    def _handle(self, request, sender) -> None:
        request_ids = [value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
                       for value in _input(request, "REQUEST_ID")]
        step = _first(request, "STEP")
        if step is None:
            if len(request_ids) != 1 or not request_ids[0]:
                raise ValueError("a watch needs exactly one non-empty REQUEST_ID")
            self.hub.watch(request_ids[0], _TritonWatchStream(sender))
            return
        total = _first(request, "TOTAL")
        if total is None:
            raise ValueError("a report needs TOTAL beside STEP")
        finished = _first(request, "FINISHED")
        # Answer first: the reporting model waits for this answer between its denoising steps,
        # and its next report cannot overtake this one (this instance runs one execute at a time).
        sender.send(flags=FINAL)
        self.hub.report(request_ids, int(step), int(total), finished=bool(finished))

    def finalize(self):
        self.hub.close()
