"""Triton backend `pytorch` (platform pytorch_libtorch) for servers without libtorch."""

import sys
from pathlib import Path

# The backend directory holds a copy of maas_backends beside this folder: the server's Python
# needs the frameworks only, not this project installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from maas_backends.adapter import TritonAdapter
from maas_backends.common import ModelSpec


class TritonPythonModel(TritonAdapter):
    framework = "pytorch"
    default_filename = "model.pt"

    def make_runner(self, path: Path, spec: ModelSpec, gpu_id: int | None):
        import torch

        from maas_backends.torchscript import TorchScriptRunner

        use_gpu = gpu_id is not None and torch.cuda.is_available()
        return TorchScriptRunner(path, spec, device=f"cuda:{gpu_id}" if use_gpu else "cpu")
