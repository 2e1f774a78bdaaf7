"""Triton backend `pytorch` (platform pytorch_libtorch) for servers without libtorch."""

from pathlib import Path

from maas.backends.adapter import TritonAdapter
from maas.backends.common import ModelSpec


class TritonPythonModel(TritonAdapter):
    framework = "pytorch"
    default_filename = "model.pt"

    def make_runner(self, path: Path, spec: ModelSpec, gpu_id: int | None):
        import torch

        from maas.backends.torchscript import TorchScriptRunner

        use_gpu = gpu_id is not None and torch.cuda.is_available()
        return TorchScriptRunner(path, spec, device=f"cuda:{gpu_id}" if use_gpu else "cpu")
