"""TensorFlow SavedModels, run the way Triton's native tensorflow backend runs them.

Tensors are named by the signature's keys (`serving_default` unless the config parameter
TF_SIGNATURE_DEF names another); thread pools follow TF_NUM_INTRA_THREADS/TF_NUM_INTER_THREADS,
the native backend's parameter names, so the config means the same in both runtimes.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from maas.backends.common import (
    BackendError,
    Inputs,
    ModelSpec,
    Outputs,
    default_intra_op_threads,
    dims_compatible,
)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


class SavedModelRunner:
    def __init__(self, path: Path, spec: ModelSpec, *, device: str = "/CPU:0") -> None:
        import tensorflow as tf  # heavy: imported only where a SavedModel is served

        self.tf = tf
        self.spec = spec
        intra = spec.parameter_int("TF_NUM_INTRA_THREADS") or default_intra_op_threads(spec)
        inter = spec.parameter_int("TF_NUM_INTER_THREADS") or 1
        try:
            tf.config.threading.set_intra_op_parallelism_threads(intra)
            tf.config.threading.set_inter_op_parallelism_threads(inter)
        except RuntimeError:  # TF already initialised in this process
            pass
        if not path.is_dir():
            raise BackendError(f"model '{spec.name}': {path} not found", client_error=False)
        self.device = device
        tags = [spec.parameters.get("TF_GRAPH_TAG") or "serve"]
        signature = spec.parameters.get("TF_SIGNATURE_DEF") or "serving_default"
        with tf.device(device):
            self.loaded = tf.saved_model.load(str(path), tags=tags)
        if signature not in self.loaded.signatures:
            raise BackendError(
                f"model '{spec.name}': SavedModel has no signature '{signature}' "
                f"(it has {sorted(self.loaded.signatures)})",
                client_error=False,
            )
        self.function = self.loaded.signatures[signature]
        self._validate()

    def _validate(self) -> None:
        _, input_specs = self.function.structured_input_signature
        output_specs = self.function.structured_outputs
        self._check_side("input", self.spec.inputs, input_specs, require_all=True)
        self._check_side("output", self.spec.outputs, output_specs, require_all=False)

    def _check_side(self, side: str, configured, signature: dict, *, require_all: bool) -> None:
        names = {t.name for t in configured}
        unknown = names - set(signature)
        if unknown:
            raise BackendError(
                f"unable to load model '{self.spec.name}': {side}(s) {sorted(unknown)} are not in "
                f"the SavedModel signature, which has {sorted(signature)}",
                client_error=False,
            )
        missing = set(signature) - names
        if require_all and missing:
            raise BackendError(
                f"unable to load model '{self.spec.name}': the SavedModel needs {side}(s) "
                f"{sorted(missing)} that the config does not declare",
                client_error=False,
            )
        for tensor in configured:
            tf_spec = signature[tensor.name]
            model_dtype = np.dtype(tf_spec.dtype.as_numpy_dtype)
            if tensor.triton_type == "TYPE_STRING":
                dtype_ok = tf_spec.dtype == self.tf.string
            else:
                dtype_ok = model_dtype == tensor.dtype
            if not dtype_ok:
                raise BackendError(
                    f"unable to load model '{self.spec.name}', configuration expects datatype "
                    f"{tensor.triton_type} for {side} '{tensor.name}', model provides "
                    f"{tf_spec.dtype.name}",
                    client_error=False,
                )
            shape = tf_spec.shape.as_list() if tf_spec.shape.rank is not None else None
            expected = tensor.full_shape(self.spec.batching)
            if shape is not None and not dims_compatible(shape, expected):
                raise BackendError(
                    f"unable to load model '{self.spec.name}', {side} '{tensor.name}' has shape "
                    f"{shape} in the SavedModel, the config says {list(expected)} "
                    f"(max_batch_size {self.spec.max_batch_size})",
                    client_error=False,
                )

    def run(self, inputs: Inputs) -> Outputs:
        tf = self.tf
        with tf.device(self.device):
            feeds = {name: tf.constant(value) for name, value in inputs.items()}
            result = self.function(**feeds)
        return {t.name: result[t.name].numpy() for t in self.spec.outputs}
