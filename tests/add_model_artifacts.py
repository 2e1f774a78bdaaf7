"""Artifacts a user might bring to `maas add-model`, each in a file or folder of its own.

Mixed dtypes on purpose (fp32, int32, int64, bool, strings where the format has them), and the
broken ones a user makes by accident (a cut-short file, a wrong extension, a SavedModel with no
serving signature, an ONNX export with batch size 1).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ONNX_W = np.arange(6, dtype=np.float32).reshape(3, 2) / 10.0


def onnx_mixed(path: Path, batch: int | str = "batch", scale: float = 1.0) -> Path:
    """x FP32 [b,3], ids INT64 [b,seq], flag BOOL [b,1], words STRING [b,2] ->
    y FP32 [b,2], total INT64 [b,1], negated BOOL [b,1], echo STRING [b,2]."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "W"], ["y"]),
            helper.make_node("ReduceSum", ["ids", "axes"], ["total"], keepdims=1),
            helper.make_node("Not", ["flag"], ["negated"]),
            helper.make_node("Identity", ["words"], ["echo"]),
        ],
        "mixed",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3]),
            helper.make_tensor_value_info("ids", TensorProto.INT64, [batch, "seq"]),
            helper.make_tensor_value_info("flag", TensorProto.BOOL, [batch, 1]),
            helper.make_tensor_value_info("words", TensorProto.STRING, [batch, 2]),
        ],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 2]),
            helper.make_tensor_value_info("total", TensorProto.INT64, [batch, 1]),
            helper.make_tensor_value_info("negated", TensorProto.BOOL, [batch, 1]),
            helper.make_tensor_value_info("echo", TensorProto.STRING, [batch, 2]),
        ],
        initializer=[
            numpy_helper.from_array(ONNX_W * scale, "W"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "axes"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def onnx_other_contract(path: Path) -> Path:
    """Same name and outputs as onnx_mixed but x takes 4 features: a breaking change."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "wider",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        initializer=[numpy_helper.from_array(np.ones((4, 2), np.float32), "W")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def torch_named(path: Path) -> Path:
    """forward(ids int64 [b,-1], mask bool [b,-1], weight fp32 [b,1], offset int32 [b,1]) ->
    (score fp32 [b,1], count int32 [b,1], any bool [b,1])."""
    import torch

    class Mixed(torch.nn.Module):
        def forward(
            self, ids: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor, offset: torch.Tensor
        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            kept = ids * mask.to(torch.int64)
            score = kept.sum(dim=1, keepdim=True).to(torch.float32) * weight
            count = mask.sum(dim=1, keepdim=True).to(torch.int32) + offset
            return score, count, mask.any(dim=1, keepdim=True)

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.script(Mixed().eval()).save(str(path))
    return path


def torch_named_example(path: Path) -> Path:
    rng = np.random.default_rng(7)
    np.savez(
        path,
        ids=rng.integers(0, 50, size=(3, 6)).astype(np.int64),
        mask=rng.integers(0, 2, size=(3, 6)).astype(bool),
        weight=rng.random((3, 1)).astype(np.float32),
        offset=rng.integers(0, 5, size=(3, 1)).astype(np.int32),
    )
    return path


def torch_positional(path: Path) -> Path:
    """forward(x, y) whose argument names a config need not use: INPUT__0 / INPUT__1."""
    import torch

    class Positional(torch.nn.Module):
        def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x * 2.0 + y.to(torch.float32), (y * 3).to(torch.int64)

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.script(Positional().eval()).save(str(path))
    return path


def savedmodel_strings(path: Path, with_signature: bool = True) -> Path:
    """words STRING [b], x FP32 [b,3], n INT32 [b] -> shout STRING [b], total FP32 [b,1],
    doubled INT32 [b], positive BOOL [b,3]."""
    import tensorflow as tf

    class Strings(tf.Module):
        @tf.function(
            input_signature=[
                tf.TensorSpec([None], tf.string, name="words"),
                tf.TensorSpec([None, 3], tf.float32, name="x"),
                tf.TensorSpec([None], tf.int32, name="n"),
            ]
        )
        def serve(self, words, x, n):
            return {
                "shout": tf.strings.upper(words),
                "total": tf.reduce_sum(x, axis=1, keepdims=True),
                "doubled": n * 2,
                "positive": x > 0.5,
            }

    module = Strings()
    if with_signature:
        tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
    else:
        tf.saved_model.save(module, str(path), signatures={})
    return path


def torch_unbatchable(folder: Path) -> tuple[Path, Path]:
    """Two models Triton must not batch: a Gram matrix (x.T @ x: [3, 3] whatever the batch)
    and a centring (x - x.mean(0): each row depends on the others)."""
    import torch

    class Gram(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.T @ x

    class Centre(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x - x.mean(dim=0, keepdim=True)

    folder.mkdir(parents=True, exist_ok=True)
    torch.jit.script(Gram().eval()).save(str(folder / "gram.pt"))
    torch.jit.script(Centre().eval()).save(str(folder / "centre.pt"))
    return folder / "gram.pt", folder / "centre.pt"
