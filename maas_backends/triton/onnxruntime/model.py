"""Triton backend `onnxruntime` (platform onnxruntime_onnx) for servers without it."""

import sys
from pathlib import Path

# The backend directory holds a copy of maas_backends beside this folder: the server's Python
# needs the frameworks only, not this project installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from maas_backends.adapter import TritonAdapter
from maas_backends.common import ModelSpec


class TritonPythonModel(TritonAdapter):
    framework = "onnxruntime"
    default_filename = "model.onnx"

    def make_runner(self, path: Path, spec: ModelSpec, gpu_id: int | None):
        from maas_backends.onnx import OnnxRunner

        return OnnxRunner(path, spec, gpu_id=gpu_id)
