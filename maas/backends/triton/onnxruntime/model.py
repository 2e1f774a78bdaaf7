"""Triton backend `onnxruntime` (platform onnxruntime_onnx) for servers without it."""

from pathlib import Path

from maas.backends.adapter import TritonAdapter
from maas.backends.common import ModelSpec


class TritonPythonModel(TritonAdapter):
    framework = "onnxruntime"
    default_filename = "model.onnx"

    def make_runner(self, path: Path, spec: ModelSpec, gpu_id: int | None):
        from maas.backends.onnx import OnnxRunner

        return OnnxRunner(path, spec, gpu_id=gpu_id)
