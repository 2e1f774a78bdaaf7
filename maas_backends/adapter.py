"""The Triton side of our Python-based backends: requests in, one framework call, responses out.

Only this module touches `triton_python_backend_utils`, which exists inside the Python
backend's stub process alone; the runners stay testable without Triton.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from maas_backends.common import BackendError, Inputs, ModelSpec, Outputs, execute_batched

UNSUPPORTED = ("sequence_batching", "batch_input", "batch_output")


class Runner(Protocol):
    def run(self, inputs: Inputs) -> Outputs: ...


class TritonAdapter:
    """Base for the model.py of each Python-based backend; subclasses say how to load."""

    framework = ""
    default_filename = ""

    def make_runner(self, path: Path, spec: ModelSpec, gpu_id: int | None) -> Runner:
        raise NotImplementedError

    def initialize(self, args: dict[str, Any]) -> None:
        import triton_python_backend_utils as pb_utils

        self._pb = pb_utils
        config = json.loads(args["model_config"])
        unsupported = [key for key in UNSUPPORTED if config.get(key)]
        if unsupported:  # refused rather than ignored: never more forgiving than native
            raise pb_utils.TritonModelException(
                f"model '{config.get('name')}' uses {', '.join(unsupported)}, which maas's "
                f"Python-based {self.framework} backend does not support (NVIDIA's image does)"
            )
        self.spec = ModelSpec.from_config(config)
        filename = self.spec.default_model_filename or self.default_filename
        path = Path(args["model_repository"]) / args["model_version"] / filename
        gpu_id = (
            int(args["model_instance_device_id"]) if args["model_instance_kind"] == "GPU" else None
        )
        try:
            self.runner = self.make_runner(path, self.spec, gpu_id)
        except BackendError as error:
            raise pb_utils.TritonModelException(str(error)) from None
        pb_utils.Logger.log_info(
            f"{self.framework} model '{self.spec.name}' ({args['model_instance_name']}) "
            f"loaded from {path} on {getattr(self.runner, 'device', 'cpu')}"
        )

    def execute(self, requests: list[Any]) -> list[Any]:
        pb = self._pb
        batch: list[Inputs] = []
        for request in requests:
            inputs: Inputs = {}
            for tensor in self.spec.inputs:
                given = pb.get_input_tensor_by_name(request, tensor.name)
                if given is not None:
                    inputs[tensor.name] = given.as_numpy()
            batch.append(inputs)
        results = execute_batched(self.spec, batch, self.runner.run)
        responses = []
        for request, result in zip(requests, results):
            if isinstance(result, BackendError):
                code = (
                    pb.TritonError.INVALID_ARG if result.client_error else pb.TritonError.INTERNAL
                )
                responses.append(pb.InferenceResponse(error=pb.TritonError(str(result), code)))
                continue
            wanted = set(request.requested_output_names())
            tensors = [
                pb.Tensor(name, np.ascontiguousarray(value))
                for name, value in result.items()
                if not wanted or name in wanted
            ]
            responses.append(pb.InferenceResponse(output_tensors=tensors))
        return responses
