"""TensorFlow SavedModels, run the way Triton's native tensorflow backend runs them.

The native backend (tensorflow_backend, r24.10: `TRITONTF_ModelCreateFromSavedModel` and
`savedmodel::ValidateTRITONTFModel`) loads with the C++ `LoadSavedModel` into a TF1-style
session and calls `Session::Run` on the signature's tensor names. We do the same through
`tf.compat.v1`: a SavedModel whose variables the session cannot restore (the Keras 3
`tf.Module`-wrapper pitfall) fails here as it fails on the GPU server, although
`tf.saved_model.load` would run it. The checks and their wording follow the native backend:
the graph tag (TF_GRAPH_TAG, default "serve"), the signature (TF_SIGNATURE_DEF, default
`serving_default`, else the first that is neither init nor train op), input names and count,
dtypes, input dims with wildcards, output dims exactly, a leading -1 when batching.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from maas_backends.common import (
    BackendError,
    Inputs,
    ModelSpec,
    Outputs,
    TensorSpec,
    default_intra_op_threads,
)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

_INIT_OP, _TRAIN_OP = "__saved_model_init_op", "__saved_model_train_op"

# TensorFlow DataType enum values (types.proto) -> Triton types, as the native backend maps them.
TF_TO_TRITON = {
    1: "TYPE_FP32",
    2: "TYPE_FP64",
    3: "TYPE_INT32",
    4: "TYPE_UINT8",
    5: "TYPE_INT16",
    6: "TYPE_INT8",
    7: "TYPE_STRING",
    9: "TYPE_INT64",
    10: "TYPE_BOOL",
    17: "TYPE_UINT16",
    19: "TYPE_FP16",
    22: "TYPE_UINT32",
    23: "TYPE_UINT64",
}


@dataclass(frozen=True)
class SignatureTensor:
    """One entry of a SignatureDef: its key, the graph tensor behind it, dtype and dims.

    `dims` is None when the signature gives no shape (rank 0 to the native backend, which then
    takes the config's dims on trust)."""

    key: str
    tensor_name: str
    triton_type: str | None
    dtype_name: str
    dims: tuple[int, ...] | None


def signature_tensors(entries: Mapping[str, Any]) -> dict[str, SignatureTensor]:
    """SignatureDef inputs or outputs (TensorInfo protos) by key."""
    found = {}
    for key, info in entries.items():
        shape = info.tensor_shape
        dims = None if shape.unknown_rank or not shape.dim else tuple(d.size for d in shape.dim)
        found[key] = SignatureTensor(
            key=key,
            tensor_name=info.name,
            triton_type=TF_TO_TRITON.get(info.dtype),
            dtype_name=_dtype_name(info.dtype),
            dims=dims,
        )
    return found


def _dtype_name(enum_value: int) -> str:
    from tensorflow.core.framework import types_pb2

    return types_pb2.DataType.Name(enum_value)


def choose_signature(signatures: Mapping[str, Any], wanted: str, model: str) -> str:
    """The native rule: the named signature; with none named, `serving_default`, else the
    first one that is neither the init nor the train op."""
    key = wanted or "serving_default"
    if key in signatures:
        return key
    if not wanted:
        for other in signatures:
            if other not in (_INIT_OP, _TRAIN_OP):
                return other
    raise BackendError(
        f"unable to load model '{model}', expected '{key}' signature "
        f"(the SavedModel has {sorted(signatures)})",
        client_error=False,
    )


def compare_dims(
    model: str,
    tensor: str,
    model_dims: Sequence[int],
    config_dims: Sequence[int],
    *,
    batching: bool,
    exact: bool,
) -> None:
    """tensorflow_utils.cc CompareDims: with batching the model's first dim must be -1; inputs
    accept a model wildcard anywhere (exact=False), outputs must match dim for dim."""
    shown = f"[{','.join(str(d) for d in model_dims)}]"
    if batching and (not model_dims or model_dims[0] != -1):
        raise BackendError(
            f"model '{model}', tensor '{tensor}': for the model to support batching the shape "
            f"should have at least 1 dimension and the first dimension must be -1; but shape "
            f"expected by the model is {shown}",
            client_error=False,
        )
    full = [-1, *config_dims] if batching else list(config_dims)
    ok = len(model_dims) == len(full) and all(
        m == c for m, c in zip(model_dims, full) if exact or m != -1
    )
    if not ok:
        raise BackendError(
            f"model '{model}', tensor '{tensor}': the model expects {len(model_dims)} dimensions "
            f"(shape {shown}) but the model configuration specifies {len(full)} dimensions "
            f"(shape [{','.join(str(d) for d in full)}])",
            client_error=False,
        )


def validate_signature(
    spec: ModelSpec,
    inputs: Mapping[str, SignatureTensor],
    outputs: Mapping[str, SignatureTensor],
) -> None:
    """savedmodel::ValidateTRITONTFModel, in its order and with its messages."""
    for tensor in spec.inputs:
        _require_known(spec, "input", tensor.name, inputs)
    if len(inputs) != len(spec.inputs):
        raise BackendError(
            f"unable to load model '{spec.name}', configuration expects {len(spec.inputs)} "
            f"inputs, model provides {len(inputs)} ({', '.join(sorted(inputs))})",
            client_error=False,
        )
    for tensor in spec.inputs:
        _check_tensor(spec, "input", tensor, inputs[tensor.name], exact=False)
    for tensor in spec.outputs:
        _require_known(spec, "output", tensor.name, outputs)
        _check_tensor(spec, "output", tensor, outputs[tensor.name], exact=True)


def _require_known(spec: ModelSpec, side: str, name: str, allowed: Mapping[str, object]) -> None:
    if name not in allowed:
        raise BackendError(
            f"unable to load model '{spec.name}', unexpected inference {side} '{name}', "
            f"allowed {side}s are: {', '.join(sorted(allowed))}",
            client_error=False,
        )


def _check_tensor(
    spec: ModelSpec, side: str, tensor: TensorSpec, found: SignatureTensor, *, exact: bool
) -> None:
    if found.dims is not None:
        compare_dims(
            spec.name, tensor.name, found.dims, tensor.dims, batching=spec.batching, exact=exact
        )
    if found.triton_type != tensor.triton_type:
        raise BackendError(
            f"unable to load model '{spec.name}', configuration expects datatype "
            f"{tensor.triton_type} for {side} '{tensor.name}', model provides "
            f"{found.triton_type or found.dtype_name}",
            client_error=False,
        )


class SavedModelRunner:
    """Loads into a session as the native backend does and runs the signature's tensors."""

    def __init__(self, path: Path, spec: ModelSpec, *, gpu_id: int | None = None) -> None:
        import tensorflow as tf  # heavy: imported only where a SavedModel is served

        tf1 = tf.compat.v1
        self.spec = spec
        if not path.is_dir():
            raise BackendError(f"model '{spec.name}': {path} not found", client_error=False)
        config = tf1.ConfigProto(
            intra_op_parallelism_threads=(
                spec.parameter_int("TF_NUM_INTRA_THREADS") or default_intra_op_threads(spec)
            ),
            inter_op_parallelism_threads=spec.parameter_int("TF_NUM_INTER_THREADS") or 1,
            allow_soft_placement=True,
        )
        if gpu_id is None:
            config.device_count["GPU"] = 0
            self.device = "/CPU:0"
        else:  # memory growth, so that several instances and other frameworks share the GPU
            config.gpu_options.visible_device_list = str(gpu_id)
            config.gpu_options.allow_growth = True
            self.device = f"/GPU:{gpu_id}"
        tag = spec.parameters.get("TF_GRAPH_TAG") or "serve"
        self.session = tf1.Session(graph=tf.Graph(), config=config)
        try:
            with self.session.graph.as_default():
                meta_graph = tf1.saved_model.loader.load(self.session, [tag], str(path))
        except RuntimeError as error:  # no MetaGraphDef with these tags
            raise BackendError(
                f"unable to load model '{spec.name}', expected '{tag}' tag: {error}",
                client_error=False,
            ) from None
        except (tf.errors.OpError, OSError, ValueError) as error:
            raise BackendError(
                f"unable to load model '{spec.name}': {type(error).__name__}: {error}",
                client_error=False,
            ) from None
        key = choose_signature(
            meta_graph.signature_def, spec.parameters.get("TF_SIGNATURE_DEF", ""), spec.name
        )
        signature = meta_graph.signature_def[key]
        self.inputs = signature_tensors(signature.inputs)
        self.outputs = signature_tensors(signature.outputs)
        validate_signature(spec, self.inputs, self.outputs)
        self._feeds = [(t.name, self.inputs[t.name].tensor_name) for t in spec.inputs]
        self._fetches = [self.outputs[t.name].tensor_name for t in spec.outputs]

    def run(self, inputs: Inputs) -> Outputs:
        feed = {tensor: _feedable(inputs[name]) for name, tensor in self._feeds}
        values = self.session.run(self._fetches, feed_dict=feed)
        return {t.name: np.asarray(v) for t, v in zip(self.spec.outputs, values)}

    def close(self) -> None:
        self.session.close()


def _feedable(array: np.ndarray) -> np.ndarray:
    if array.dtype.kind in "OU":  # Triton hands BYTES over as objects; TF wants bytes
        return np.vectorize(
            lambda v: v if isinstance(v, bytes) else str(v).encode(), otypes=[object]
        )(array)
    return array
