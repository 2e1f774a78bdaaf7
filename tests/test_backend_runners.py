"""The runners and the batching logic without Triton: naming rules and load-time validation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from maas_backends.common import BackendError, ModelSpec, TensorSpec, execute_batched
from tests.fixture_models import build_repository


def spec(inputs, outputs, max_batch_size=8, name="m") -> ModelSpec:
    return ModelSpec(
        name=name,
        max_batch_size=max_batch_size,
        inputs=tuple(TensorSpec(name=n, triton_type=t, dims=d) for n, t, d in inputs),
        outputs=tuple(TensorSpec(name=n, triton_type=t, dims=d) for n, t, d in outputs),
    )


DOUBLE = spec([("x", "TYPE_FP32", (-1,))], [("y", "TYPE_FP32", (-1,))])


def double(inputs):
    return {"y": inputs["x"] * 2}


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 4), st.integers(1, 3)), min_size=1, max_size=10))
def test_batched_execution_splits_back_per_request(shapes):
    requests = [{"x": np.full((b, w), i, np.float32)} for i, (b, w) in enumerate(shapes)]
    calls = []

    def counting(inputs):
        calls.append(inputs["x"].shape)
        return double(inputs)

    results = execute_batched(DOUBLE, requests, counting)
    for request, result in zip(requests, results):
        np.testing.assert_array_equal(result["y"], request["x"] * 2)
    assert len(calls) == len({w for _, w in shapes})  # one framework call per distinct shape


def test_one_bad_request_does_not_fail_its_neighbours():
    requests = [{"x": np.ones((1, 2), np.float32)}, {"x": np.ones((1, 2), np.float64)}]
    results = execute_batched(DOUBLE, requests, double)
    np.testing.assert_array_equal(results[0]["y"], [[2, 2]])
    assert isinstance(results[1], BackendError) and results[1].client_error
    assert "'x'" in str(results[1]) and "FP32" in str(results[1])


def test_framework_failure_in_merged_batch_is_isolated():
    def fragile(inputs):
        if (inputs["x"] < 0).any():
            raise ValueError("negative ink")
        return double(inputs)

    requests = [{"x": np.ones((1, 2), np.float32)}, {"x": -np.ones((1, 2), np.float32)}]
    ok, bad = execute_batched(DOUBLE, requests, fragile)
    np.testing.assert_array_equal(ok["y"], [[2, 2]])
    assert isinstance(bad, BackendError) and "negative ink" in str(bad)
    assert not bad.client_error


def test_output_dtype_that_differs_from_config_is_reported():
    result = execute_batched(
        DOUBLE, [{"x": np.ones((1, 2), np.float32)}], lambda i: {"y": i["x"].astype(np.float64)}
    )[0]
    assert isinstance(result, BackendError) and "TYPE_FP32" in str(result)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return build_repository(tmp_path_factory.mktemp("runners"))


def _config_spec(repo, name) -> ModelSpec:
    from google.protobuf import json_format, text_format  # shipped with tritonclient/grpc
    from tritonclient.grpc import model_config_pb2

    config = text_format.Parse(
        (repo / name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig()
    )
    return ModelSpec.from_config(
        json_format.MessageToDict(config, preserving_proto_field_name=True)
    )


def test_torchscript_inputs_follow_forward_argument_names(repo):
    from maas_backends.torchscript import TorchScriptRunner

    runner = TorchScriptRunner(repo / "torch_named/1/model.pt", _config_spec(repo, "torch_named"))
    assert runner.argument_order == ["tokens", "scale"]  # config lists scale first


def test_torchscript_indexed_outputs_map_to_tuple_positions(repo):
    from maas_backends.torchscript import TorchScriptRunner

    runner = TorchScriptRunner(
        repo / "torch_indexed/1/model.pt", _config_spec(repo, "torch_indexed")
    )
    assert runner.argument_order == ["INPUT__0", "INPUT__1"]
    out = runner.run(
        {"INPUT__0": np.ones((1, 4), np.float32), "INPUT__1": np.ones((1, 4), np.int32)}
    )
    assert out["OUTPUT__1"].dtype == np.int64 and out["OUTPUT__0"].dtype == np.float32


def test_torchscript_output_subset_keeps_its_tuple_position(repo):
    from maas_backends.torchscript import TorchScriptRunner

    only_second = spec(
        [("INPUT__0", "TYPE_FP32", (4,)), ("INPUT__1", "TYPE_INT32", (4,))],
        [("OUTPUT__1", "TYPE_INT64", (4,))],
    )
    runner = TorchScriptRunner(repo / "torch_indexed/1/model.pt", only_second)
    ones = {"INPUT__0": np.ones((1, 4), np.float32), "INPUT__1": np.ones((1, 4), np.int32)}
    np.testing.assert_array_equal(runner.run(ones)["OUTPUT__1"], [[3, 3, 3, 3]])


def test_requests_with_unequal_batch_sizes_across_inputs_are_refused():
    two = spec([("a", "TYPE_FP32", (1,)), ("b", "TYPE_FP32", (1,))], [("y", "TYPE_FP32", (1,))])
    result = execute_batched(
        two,
        [{"a": np.ones((2, 1), np.float32), "b": np.ones((3, 1), np.float32)}],
        lambda i: {"y": i["a"]},
    )[0]
    assert isinstance(result, BackendError) and "same batch size" in str(result)


def test_torchscript_with_wrong_input_count_fails_to_load(repo, tmp_path):
    from maas_backends.torchscript import TorchScriptRunner

    bad = spec([("tokens", "TYPE_INT64", (-1,))], [("OUTPUT__0", "TYPE_FP32", (4,))])
    with pytest.raises(BackendError, match="expects 1 inputs, model provides 2"):
        TorchScriptRunner(repo / "torch_named/1/model.pt", bad)


def test_savedmodel_checks_names_and_dtypes_at_load(repo):
    from maas_backends.savedmodel import SavedModelRunner

    path = repo / "tf_two_inputs/1/model.savedmodel"
    wrong_name = spec(
        [("features", "TYPE_FP32", (3,)), ("counts", "TYPE_INT32", (1,))],
        [("weighted", "TYPE_FP32", (2,))],
    )
    with pytest.raises(BackendError, match="counts"):
        SavedModelRunner(path, wrong_name)
    wrong_dtype = spec(
        [("features", "TYPE_FP32", (3,)), ("count", "TYPE_INT64", (1,))],
        [("weighted", "TYPE_FP32", (2,))],
    )
    with pytest.raises(
        BackendError, match="TYPE_INT64 for input 'count', model provides TYPE_INT32"
    ):
        SavedModelRunner(path, wrong_dtype)


def test_onnx_checks_shapes_at_load(repo):
    from maas_backends.onnx import OnnxRunner

    wrong_dims = spec([("x", "TYPE_FP32", (4,))], [("y", "TYPE_FP32", (2,))])
    with pytest.raises(BackendError, match="shape"):
        OnnxRunner(repo / "onnx_dynamic/1/model.onnx", wrong_dims)


def test_unknown_config_parameter_value_is_named(tmp_path):
    bad = ModelSpec(
        name="m",
        max_batch_size=0,
        inputs=(),
        outputs=(),
        parameters={"INTRA_OP_THREAD_COUNT": "many"},
    )
    with pytest.raises(BackendError, match="INTRA_OP_THREAD_COUNT='many'"):
        bad.parameter_int("INTRA_OP_THREAD_COUNT")
