"""Triton backend `tensorflow` (platform tensorflow_savedmodel) for servers without it."""

import sys
from pathlib import Path

# The backend directory holds a copy of maas_backends beside this folder: the server's Python
# needs the frameworks only, not this project installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from maas_backends.adapter import TritonAdapter
from maas_backends.common import ModelSpec


class TritonPythonModel(TritonAdapter):
    framework = "tensorflow"
    default_filename = "model.savedmodel"

    def make_runner(self, path: Path, spec: ModelSpec, gpu_id: int | None):
        import tensorflow as tf

        from maas_backends.savedmodel import SavedModelRunner

        use_gpu = gpu_id is not None and bool(tf.config.list_physical_devices("GPU"))
        return SavedModelRunner(path, spec, gpu_id=gpu_id if use_gpu else None)
