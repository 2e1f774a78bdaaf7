"""What an artifact says about itself, and running it with its own framework (the reference
the served outputs must equal).

TorchScript records forward()'s argument names but neither dtypes nor shapes; ONNX graphs and
SavedModel signatures record names, dtypes and (mostly) shapes. -1 marks a dimension that
varies, None a shape the format does not record.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from maas.add_model.declarations import AddModelError, numpy_triton_type
from maas.validate.static import DEFAULT_FILENAMES, PLATFORM_BACKENDS

TORCH_SUFFIXES = (".pt", ".pth", ".torchscript", ".ts")


@dataclass(frozen=True)
class ArtifactTensor:
    name: str
    triton_type: str | None  # None: the format does not record it
    shape: tuple[int, ...] | None  # full shape, batch axis included; None: not recorded


@dataclass
class Artifact:
    path: Path
    framework: str  # pytorch, tensorflow, onnxruntime (our backend names)
    inputs: list[ArtifactTensor]
    outputs: list[ArtifactTensor] | None  # None: known only by running it (TorchScript)
    parameters: dict[str, str] = field(default_factory=dict)

    @property
    def platform(self) -> str:
        return next(p for p, b in PLATFORM_BACKENDS.items() if b == self.framework)

    @property
    def filename(self) -> str:
        return DEFAULT_FILENAMES[self.framework]


def _looks_like(path: Path) -> str:
    """A hint for an artifact whose name and content disagree."""
    if path.is_dir():
        return "a SavedModel folder" if (path / "saved_model.pb").exists() else "a folder"
    try:
        head = path.read_bytes()[:4]
    except OSError:
        return "unreadable"
    if head.startswith(b"PK"):
        return "a zip archive (TorchScript's format)"
    if head[:1] == b"\x08":
        return "a protobuf (ONNX's format)"
    return "neither TorchScript nor ONNX"


def describe(path: Path, signature: str = "") -> Artifact:
    path = path.expanduser()
    if not path.exists():
        raise AddModelError(f"{path}: no such file or folder")
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise AddModelError(
                f"{path}: a folder but not a SavedModel (no saved_model.pb); add-model takes a "
                "TorchScript .pt, a SavedModel folder or an .onnx file"
            )
        return _describe_savedmodel(path, signature)
    suffix = path.suffix.lower()
    if signature:
        raise AddModelError("--signature applies to SavedModels only")
    if suffix in TORCH_SUFFIXES:
        return _describe_torchscript(path)
    if suffix == ".onnx":
        return _describe_onnx(path)
    raise AddModelError(
        f"{path}: unknown extension {suffix or '(none)'} ({_looks_like(path)}); add-model takes "
        f"a TorchScript file ({', '.join(TORCH_SUFFIXES)}), a SavedModel folder or an .onnx file"
    )


def _describe_torchscript(path: Path) -> Artifact:
    import torch

    from maas_backends.torchscript import forward_argument_names

    if not zipfile.is_zipfile(path):
        raise AddModelError(
            f"{path}: not a TorchScript archive (the file is {_looks_like(path)}, or cut short)"
        )
    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as error:  # torch's reason is the useful part
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise AddModelError(
            f"{path}: torch.jit.load failed: {reason}. A file from torch.save(model) or a state "
            "dict is not TorchScript: export with torch.jit.script(model).save(...) or "
            "torch.jit.trace"
        ) from None
    names = forward_argument_names(module)
    return Artifact(path, "pytorch", [ArtifactTensor(n, None, None) for n in names], None)


def _onnx_tensor(value) -> ArtifactTensor:
    from onnx import helper

    tensor_type = value.type.tensor_type
    triton = None
    if tensor_type.elem_type:
        numpy_dtype = np.dtype(helper.tensor_dtype_to_np_dtype(tensor_type.elem_type))
        triton = numpy_triton_type(numpy_dtype)
    shape = None
    if tensor_type.HasField("shape"):
        shape = tuple(
            d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1
            for d in tensor_type.shape.dim
        )
    return ArtifactTensor(value.name, triton, shape)


def _describe_onnx(path: Path) -> Artifact:
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
        onnx.checker.check_model(model)
    except Exception as error:
        raise AddModelError(
            f"{path}: not a valid ONNX model ({_looks_like(path)}): "
            f"{str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__}"
        ) from None
    graph = model.graph
    initializers = {i.name for i in graph.initializer}
    inputs = [_onnx_tensor(v) for v in graph.input if v.name not in initializers]
    outputs = [_onnx_tensor(v) for v in graph.output]
    return Artifact(path, "onnxruntime", inputs, outputs)


def _describe_savedmodel(path: Path, signature: str) -> Artifact:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from tensorflow.core.protobuf import saved_model_pb2

    from maas_backends.savedmodel import signature_tensors

    message = saved_model_pb2.SavedModel()
    try:
        message.ParseFromString((path / "saved_model.pb").read_bytes())
    except Exception as error:
        raise AddModelError(f"{path}: saved_model.pb does not parse ({error})") from None
    graphs = [g for g in message.meta_graphs if "serve" in g.meta_info_def.tags]
    if not graphs:
        raise AddModelError(f"{path}: no graph tagged 'serve' (tf.saved_model.save writes one)")
    signatures = {
        key: value
        for key, value in graphs[0].signature_def.items()
        if not key.startswith("__saved_model")
    }
    key = signature or "serving_default"
    if key not in signatures:
        found = ", ".join(sorted(signatures)) or "none"
        raise AddModelError(
            f"{path}: no signature '{key}' (the SavedModel has: {found}). Triton calls a named "
            "signature: save with tf.saved_model.save(obj, path, signatures={'serving_default': "
            "fn.get_concrete_function(tf.TensorSpec(...))}), or name one with --signature"
        )
    parameters = {"TF_SIGNATURE_DEF": key} if signature else {}

    def side(entries) -> list[ArtifactTensor]:
        found = signature_tensors(entries)
        return [
            ArtifactTensor(k, t.triton_type, tuple(d if d >= 0 else -1 for d in t.dims))
            if t.dims is not None
            else ArtifactTensor(k, t.triton_type, None)
            for k, t in sorted(found.items())
        ]

    chosen = signatures[key]
    return Artifact(path, "tensorflow", side(chosen.inputs), side(chosen.outputs), parameters)


class Reference:
    """The artifact run by its own framework, outside our backends: (inputs by config name)
    -> outputs by config name. Output names for TorchScript come from the derived config."""

    def __init__(self, artifact: Artifact, input_names: list[str]) -> None:
        self.artifact = artifact
        self.input_names = input_names
        self.output_names: list[str] | None = None
        self._run = {
            "pytorch": self._torch,
            "tensorflow": self._tensorflow,
            "onnxruntime": self._onnx,
        }[artifact.framework]()

    def __call__(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self._run(inputs)

    def _torch(self):
        import torch

        from maas_backends.torchscript import argument_order, forward_argument_names

        module = torch.jit.load(str(self.artifact.path), map_location="cpu").eval()
        order = argument_order(self.input_names, forward_argument_names(module))

        def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            with torch.inference_mode():
                result = module(*(torch.from_numpy(np.array(inputs[n])) for n in order))
            if isinstance(result, dict):
                raise AddModelError(
                    "forward() returns a dict; Triton's pytorch backend takes a tensor or a "
                    "tuple of tensors (outputs OUTPUT__0, OUTPUT__1 ...): return a tuple"
                )
            values = [result] if isinstance(result, torch.Tensor) else list(result)
            names = self.output_names or [f"OUTPUT__{i}" for i in range(len(values))]
            return {n: v.detach().cpu().numpy() for n, v in zip(names, values)}

        return run

    def _onnx(self):
        import onnxruntime as ort

        from maas_backends.onnx import ort_feed

        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(str(self.artifact.path), options)
        names = [o.name for o in session.get_outputs()]

        def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            return dict(zip(names, session.run(names, ort_feed(inputs))))

        return run

    def _tensorflow(self):
        import tensorflow as tf

        loaded = tf.saved_model.load(str(self.artifact.path))
        key = self.artifact.parameters.get("TF_SIGNATURE_DEF") or "serving_default"
        function = loaded.signatures[key]

        def run(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            result = function(**{n: tf.constant(v) for n, v in inputs.items()})
            return {n: v.numpy() for n, v in result.items()}

        run.keep_alive = loaded  # signatures hold weak references to their object
        return run
