"""Valid inputs for any model, made from its config alone.

Values are small on purpose: integers 0 and 1 (the first of each row 1) are valid token ids,
class indices and attention masks for any model; floats lie in 0..1 like images and
probabilities; strings are short UTF-8 sentences.
"""

from __future__ import annotations

import numpy as np

from maas_backends.common import ModelSpec, TensorSpec

VARIABLE_DIM = 8  # what a -1 dimension becomes
BATCH = 3  # rows per request when the model batches
_SENTENCES = (b"hello there", b"do you have a room for the night?", b"\xc3\xa9t\xc3\xa9 !")


def sample_inputs(spec: ModelSpec, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    batch = min(BATCH, spec.max_batch_size) if spec.batching else None
    return {tensor.name: sample_tensor(tensor, batch, rng) for tensor in spec.inputs}


def sample_tensor(
    tensor: TensorSpec,
    batch: int | None,
    rng: np.random.Generator,
    variable_dim: int = VARIABLE_DIM,
) -> np.ndarray:
    dims = tuple(variable_dim if d < 0 else d for d in tensor.dims)
    shape = (batch, *dims) if batch is not None else dims
    kind = tensor.dtype.kind
    if tensor.triton_type == "TYPE_STRING":
        picks = rng.integers(0, len(_SENTENCES), size=shape)
        return np.vectorize(lambda i: _SENTENCES[i], otypes=[object])(picks).astype(object)
    if kind == "b":
        return rng.integers(0, 2, size=shape).astype(np.bool_)
    if kind in "iu":
        values = rng.integers(0, 2, size=shape).astype(tensor.dtype)
        if values.ndim and values.shape[-1]:
            values[..., 0] = 1
        return values
    return rng.random(size=shape).astype(tensor.dtype)
