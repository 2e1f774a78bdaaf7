"""Triton backend `tensorflow` (platform tensorflow_savedmodel) for servers without it."""

from pathlib import Path

from maas.backends.adapter import TritonAdapter
from maas.backends.common import ModelSpec


class TritonPythonModel(TritonAdapter):
    framework = "tensorflow"
    default_filename = "model.savedmodel"

    def make_runner(self, path: Path, spec: ModelSpec, gpu_id: int | None):
        import tensorflow as tf

        from maas.backends.savedmodel import SavedModelRunner

        use_gpu = gpu_id is not None and bool(tf.config.list_physical_devices("GPU"))
        return SavedModelRunner(path, spec, gpu_id=gpu_id if use_gpu else None)
