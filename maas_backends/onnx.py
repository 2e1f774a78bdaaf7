"""ONNX models through ONNX Runtime, named by the graph's own input and output names.

Threads follow the native onnxruntime backend's parameters (intra_op_thread_count,
inter_op_thread_count); the CUDA provider is used when the instance sits on a GPU and
the installed onnxruntime has it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from maas_backends.common import (
    BackendError,
    Inputs,
    ModelSpec,
    Outputs,
    default_intra_op_threads,
    dims_compatible,
)

ONNX_TO_NUMPY = {
    "tensor(bool)": np.bool_,
    "tensor(uint8)": np.uint8,
    "tensor(uint16)": np.uint16,
    "tensor(uint32)": np.uint32,
    "tensor(uint64)": np.uint64,
    "tensor(int8)": np.int8,
    "tensor(int16)": np.int16,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(float16)": np.float16,
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(string)": np.object_,
}


def _text(value: object) -> str:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            raise BackendError(
                "a BYTES input holds bytes that are not UTF-8; ONNX string tensors take text"
            ) from None
    return str(value)


def ort_feed(inputs: Inputs) -> Inputs:
    """String tensors as str: ONNX Runtime's Python API would turn bytes b'x' into "b'x'"."""
    return {
        name: np.vectorize(_text, otypes=[object])(value) if value.dtype.kind in "OS" else value
        for name, value in inputs.items()
    }


class OnnxRunner:
    def __init__(self, path: Path, spec: ModelSpec, *, gpu_id: int | None = None) -> None:
        import onnxruntime as ort

        self.spec = spec
        if not path.exists():
            raise BackendError(f"model '{spec.name}': {path} not found", client_error=False)
        options = ort.SessionOptions()
        options.intra_op_num_threads = spec.parameter_int(
            "intra_op_thread_count"
        ) or default_intra_op_threads(spec)
        options.inter_op_num_threads = spec.parameter_int("inter_op_thread_count") or 1
        providers: list = ["CPUExecutionProvider"]
        if gpu_id is not None and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, ("CUDAExecutionProvider", {"device_id": gpu_id}))
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        self.device = self.session.get_providers()[0]
        self._check_side("input", spec.inputs, self.session.get_inputs(), require_all=True)
        self._check_side("output", spec.outputs, self.session.get_outputs(), require_all=False)
        self.output_names = [t.name for t in spec.outputs]

    def _check_side(self, side: str, configured, graph_tensors, *, require_all: bool) -> None:
        graph = {t.name: t for t in graph_tensors}
        names = {t.name for t in configured}
        unknown = names - set(graph)
        missing = set(graph) - names if require_all else set()
        if unknown or missing:
            raise BackendError(
                f"unable to load model '{self.spec.name}': config {side}s {sorted(names)} do not "
                f"match the ONNX graph's {sorted(graph)}",
                client_error=False,
            )
        for tensor in configured:
            node = graph[tensor.name]
            model_dtype = ONNX_TO_NUMPY.get(node.type)
            if model_dtype is None or np.dtype(model_dtype) != tensor.dtype:
                raise BackendError(
                    f"unable to load model '{self.spec.name}', configuration expects datatype "
                    f"{tensor.triton_type} for {side} '{tensor.name}', model provides {node.type}",
                    client_error=False,
                )
            shape = [d if isinstance(d, int) else None for d in node.shape]
            expected = tensor.full_shape(self.spec.batching)
            if not dims_compatible(shape, expected):
                raise BackendError(
                    f"unable to load model '{self.spec.name}', {side} '{tensor.name}' has shape "
                    f"{node.shape} in the graph, the config says {list(expected)}",
                    client_error=False,
                )

    def run(self, inputs: Inputs) -> Outputs:
        values = self.session.run(self.output_names, ort_feed(inputs))
        return dict(zip(self.output_names, values))
