"""What the user tells add-model about tensors: `--input NAME:DTYPE:DIMS` and `--example`.

DIMS are the config's dims: without the batch dimension when the model batches, `-1` where a
dimension varies (`tokens:INT64:-1`, `image:FP32:28,28`, `flag:BOOL:1`).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maas.errors import MaasError
from maas_backends.common import TRITON_TO_NUMPY

_ALIASES = {
    "FLOAT": "FP32",
    "FLOAT32": "FP32",
    "FLOAT64": "FP64",
    "DOUBLE": "FP64",
    "FLOAT16": "FP16",
    "HALF": "FP16",
    "BYTES": "STRING",
    "STR": "STRING",
}


class AddModelError(MaasError):
    """Why an artifact cannot become a model; nothing in the repository changed."""


@dataclass(frozen=True)
class Declared:
    name: str
    triton_type: str | None
    dims: tuple[int, ...] | None


def triton_type(text: str) -> str:
    """FP32, fp32, TYPE_FP32, float32, BYTES ... -> TYPE_FP32 / TYPE_STRING."""
    word = text.strip().upper().removeprefix("TYPE_")
    word = _ALIASES.get(word, word)
    found = f"TYPE_{word}"
    if found not in TRITON_TO_NUMPY:
        names = ", ".join(t.removeprefix("TYPE_") for t in TRITON_TO_NUMPY)
        raise AddModelError(f"unknown data type {text!r}; use one of {names} (BYTES = STRING)")
    return found


def numpy_triton_type(dtype: np.dtype) -> str | None:
    if dtype.kind in "OSU":
        return "TYPE_STRING"
    for name, numpy_type in TRITON_TO_NUMPY.items():
        if np.dtype(numpy_type) == dtype and name != "TYPE_STRING":
            return name
    return None


def parse_tensor_option(text: str, option: str) -> Declared:
    """NAME:DTYPE:DIMS, NAME:DTYPE or NAME:: (DIMS and DTYPE may be left to the artifact)."""
    parts = text.split(":")
    if len(parts) > 3 or not parts[0].strip():
        raise AddModelError(f"{option} {text!r}: expected NAME:DTYPE:DIMS, e.g. x:FP32:28,28")
    name = parts[0].strip()
    dtype = triton_type(parts[1]) if len(parts) > 1 and parts[1].strip() else None
    dims = None
    if len(parts) == 3 and parts[2].strip():
        raw = parts[2].strip().strip("[]")
        try:
            dims = tuple(int(d) for d in raw.split(",") if d.strip())
        except ValueError:
            raise AddModelError(
                f"{option} {text!r}: dims must be whole numbers separated by commas, -1 where "
                "a dimension varies"
            ) from None
        if any(d == 0 or d < -1 for d in dims):
            raise AddModelError(f"{option} {text!r}: dims are positive, or -1 where they vary")
    return Declared(name, dtype, dims)


def load_example(path: Path) -> dict[str, np.ndarray]:
    """One array per input name, batch dimension included. Never unpickled: an .npz with
    object arrays could run code, so strings come as bytes (dtype S) or unicode (U) arrays."""
    if not path.is_file():
        raise AddModelError(f"--example {path}: no such file")
    try:
        data = np.load(path, allow_pickle=False)
        if not isinstance(data, np.lib.npyio.NpzFile):
            raise AddModelError(
                f"--example {path}: one array (.npy); expected an .npz with one array per input "
                "name: np.savez(path, NAME=array, ...)"
            )
        with data:
            arrays = {name: data[name] for name in data.files}
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise AddModelError(
                f"--example {path}: holds object arrays, which would have to be unpickled; "
                "save strings as bytes, e.g. np.array([b'hello'])"
            ) from None
        raise AddModelError(f"--example {path}: not an .npz file ({error})") from None
    except (OSError, zipfile.BadZipFile, EOFError) as error:
        raise AddModelError(f"--example {path}: not an .npz file ({error})") from None
    flat = [name for name, array in arrays.items() if array.ndim == 0]
    if flat:
        raise AddModelError(
            f"--example {path}: '{flat[0]}' is a single value; each array needs its batch "
            "dimension first (e.g. shape [1] or [1, ...])"
        )
    if not arrays:
        raise AddModelError(f"--example {path}: holds no arrays")
    for name, array in arrays.items():
        if array.dtype.kind == "U":
            arrays[name] = np.vectorize(lambda s: s.encode("utf-8"), otypes=[object])(array)
        elif array.dtype.kind == "S":
            arrays[name] = array.astype(object)
    return arrays
