"""Small models of each native platform, written into a repository for the tests.

Each one exercises a naming rule of the native backend it stands for; `reference(name)`
gives the in-process callable whose outputs the served ones must equal.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np

Reference = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]

DYNAMIC_BATCHING = "dynamic_batching { max_queue_delay_microseconds: 20000 }"

CONFIGS = {
    # Inputs listed in another order than forward(): they must be matched by name.
    "torch_named": f"""
        name: "torch_named"
        platform: "pytorch_libtorch"
        max_batch_size: 16
        input [
          {{ name: "scale" data_type: TYPE_FP32 dims: [ 1 ] }},
          {{ name: "tokens" data_type: TYPE_INT64 dims: [ -1 ] }}
        ]
        output [ {{ name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 4 ] }} ]
        {DYNAMIC_BATCHING}
    """,
    # Outputs listed out of order: OUTPUT__1 must still be the second element of the tuple.
    "torch_indexed": f"""
        name: "torch_indexed"
        platform: "pytorch_libtorch"
        max_batch_size: 16
        input [
          {{ name: "INPUT__1" data_type: TYPE_INT32 dims: [ 4 ] }},
          {{ name: "INPUT__0" data_type: TYPE_FP32 dims: [ 4 ] }}
        ]
        output [
          {{ name: "OUTPUT__1" data_type: TYPE_INT64 dims: [ 4 ] }},
          {{ name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ 4 ] }}
        ]
        {DYNAMIC_BATCHING}
    """,
    "tf_two_inputs": f"""
        name: "tf_two_inputs"
        platform: "tensorflow_savedmodel"
        max_batch_size: 16
        input [
          {{ name: "features" data_type: TYPE_FP32 dims: [ 3 ] }},
          {{ name: "count" data_type: TYPE_INT32 dims: [ 1 ] }}
        ]
        output [
          {{ name: "weighted" data_type: TYPE_FP32 dims: [ 2 ] }},
          {{ name: "count_sq" data_type: TYPE_INT32 dims: [ 1 ] }}
        ]
        {DYNAMIC_BATCHING}
    """,
    "onnx_dynamic": f"""
        name: "onnx_dynamic"
        platform: "onnxruntime_onnx"
        max_batch_size: 32
        input [ {{ name: "x" data_type: TYPE_FP32 dims: [ 3 ] }} ]
        output [ {{ name: "y" data_type: TYPE_FP32 dims: [ 2 ] }} ]
        {DYNAMIC_BATCHING}
    """,
}

_rng = np.random.default_rng(7)
EMBEDDING = _rng.normal(size=(50, 4)).astype(np.float32)
TF_WEIGHTS = _rng.normal(size=(3, 2)).astype(np.float32)
ONNX_WEIGHTS = _rng.normal(size=(3, 2)).astype(np.float32)
ONNX_BIAS = _rng.normal(size=(2,)).astype(np.float32)


def write_config(repository: Path, name: str, text: str | None = None) -> Path:
    folder = repository / name
    (folder / "1").mkdir(parents=True, exist_ok=True)
    (folder / "config.pbtxt").write_text(textwrap.dedent(text or CONFIGS[name]).strip() + "\n")
    return folder / "1"


def build_torch_named(version_dir: Path) -> None:
    import torch

    class Named(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedding = torch.nn.Embedding.from_pretrained(torch.from_numpy(EMBEDDING))

        def forward(self, tokens: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
            return self.embedding(tokens).mean(dim=1) * scale

    torch.jit.script(Named().eval()).save(str(version_dir / "model.pt"))


def build_torch_indexed(version_dir: Path) -> None:
    import torch

    class Indexed(torch.nn.Module):
        def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x * 2.0 + y.to(torch.float32), (y * 3).to(torch.int64)

    torch.jit.script(Indexed().eval()).save(str(version_dir / "model.pt"))


def build_tf_two_inputs(version_dir: Path) -> None:
    import tensorflow as tf

    class TwoInputs(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weights = tf.Variable(TF_WEIGHTS)

        @tf.function(
            input_signature=[
                tf.TensorSpec([None, 3], tf.float32, name="features"),
                tf.TensorSpec([None, 1], tf.int32, name="count"),
            ]
        )
        def serve(self, features: tf.Tensor, count: tf.Tensor) -> dict[str, tf.Tensor]:
            weighted = tf.matmul(features, self.weights) * tf.cast(count, tf.float32)
            return {"weighted": weighted, "count_sq": count * count}

    module = TwoInputs()
    path = str(version_dir / "model.savedmodel")
    tf.saved_model.save(module, path, signatures={"serving_default": module.serve})


def build_onnx_dynamic(version_dir: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["xw"]),
            helper.make_node("Add", ["xw", "b"], ["z"]),
            helper.make_node("Relu", ["z"], ["y"]),
        ],
        "dynamic_batch",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        initializer=[
            numpy_helper.from_array(ONNX_WEIGHTS, "W"),
            numpy_helper.from_array(ONNX_BIAS, "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(version_dir / "model.onnx"))


BUILDERS = {
    "torch_named": build_torch_named,
    "torch_indexed": build_torch_indexed,
    "tf_two_inputs": build_tf_two_inputs,
    "onnx_dynamic": build_onnx_dynamic,
}


def build_repository(repository: Path, names: tuple[str, ...] = tuple(BUILDERS)) -> Path:
    for name in names:
        BUILDERS[name](write_config(repository, name))
    return repository


def reference(repository: Path, name: str) -> Reference:
    """The same model file run in-process by its own framework."""
    version_dir = repository / name / "1"
    if name.startswith("torch"):
        import torch

        module = torch.jit.load(str(version_dir / "model.pt")).eval()

        def run_torch(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            with torch.inference_mode():
                if name == "torch_named":
                    out = module(
                        torch.from_numpy(inputs["tokens"]), torch.from_numpy(inputs["scale"])
                    )
                    return {"OUTPUT__0": out.numpy()}
                first, second = module(
                    torch.from_numpy(inputs["INPUT__0"]), torch.from_numpy(inputs["INPUT__1"])
                )
                return {"OUTPUT__0": first.numpy(), "OUTPUT__1": second.numpy()}

        return run_torch
    if name.startswith("tf"):
        import tensorflow as tf

        signature = tf.saved_model.load(str(version_dir / "model.savedmodel")).signatures[
            "serving_default"
        ]

        def run_tf(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
            result = signature(**{k: tf.constant(v) for k, v in inputs.items()})
            return {k: v.numpy() for k, v in result.items()}

        return run_tf
    import onnxruntime as ort

    session = ort.InferenceSession(
        str(version_dir / "model.onnx"), providers=["CPUExecutionProvider"]
    )

    def run_onnx(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"y": session.run(["y"], inputs)[0]}

    return run_onnx


def sample_inputs(name: str, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    if name == "torch_named":
        length = int(rng.integers(1, 6))
        return {
            "tokens": rng.integers(0, 50, size=(batch, length)).astype(np.int64),
            "scale": rng.normal(size=(batch, 1)).astype(np.float32),
        }
    if name == "torch_indexed":
        return {
            "INPUT__0": rng.normal(size=(batch, 4)).astype(np.float32),
            "INPUT__1": rng.integers(-100, 100, size=(batch, 4)).astype(np.int32),
        }
    if name == "tf_two_inputs":
        return {
            "features": rng.normal(size=(batch, 3)).astype(np.float32),
            "count": rng.integers(0, 10, size=(batch, 1)).astype(np.int32),
        }
    return {"x": rng.normal(size=(batch, 3)).astype(np.float32)}
