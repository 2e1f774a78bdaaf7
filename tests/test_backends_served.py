"""The Python-based backends, served by a real Triton, against the frameworks in-process."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from tests.fixture_models import BUILDERS, reference, sample_inputs
from tests.triton_calls import infer, model_counts, run_players, settled_counts

MODELS = tuple(BUILDERS)


def assert_same(served: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert set(served) == set(expected)
    for name, value in expected.items():
        assert served[name].dtype == value.dtype, name
        assert served[name].shape == value.shape, name
        if np.issubdtype(value.dtype, np.floating):
            np.testing.assert_allclose(served[name], value, rtol=1e-5, atol=1e-6)
        else:
            np.testing.assert_array_equal(served[name], value)


@pytest.fixture(scope="module")
def references(backend_repository):
    return {name: reference(backend_repository, name) for name in MODELS}


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("batch", [1, 5])
@pytest.mark.parametrize("model", MODELS)
def test_served_equals_in_process(request, references, model, batch, protocol):
    client = request.getfixturevalue(f"{protocol}_client")
    inputs = sample_inputs(model, batch, np.random.default_rng(batch))
    assert_same(infer(client, model, inputs), references[model](inputs))


def test_only_requested_outputs_come_back(http_client, references):
    inputs = sample_inputs("torch_indexed", 2, np.random.default_rng(3))
    served = infer(http_client, "torch_indexed", inputs, outputs=["OUTPUT__1"])
    assert list(served) == ["OUTPUT__1"]
    np.testing.assert_array_equal(
        served["OUTPUT__1"], references["torch_indexed"](inputs)["OUTPUT__1"]
    )


@pytest.mark.parametrize("model", ["onnx_dynamic", "torch_named", "tf_two_inputs"])
def test_concurrent_clients_are_batched_and_correct(triton, http_client, references, model):
    """16 clients at once: the dynamic batcher must merge requests into fewer executions."""
    before = model_counts(http_client, model)

    def player(seed: int) -> None:
        client = httpclient.InferenceServerClient(triton.config.http_url)  # one per thread
        rng = np.random.default_rng(seed)
        try:
            for _ in range(8):
                inputs = sample_inputs(model, int(rng.integers(1, 4)), rng)
                if model == "torch_named":  # same token length so requests can be merged
                    inputs["tokens"] = inputs["tokens"][:, :1].repeat(3, axis=1)
                assert_same(infer(client, model, inputs), references[model](inputs))
        finally:
            client.close()

    errors = run_players(player, 16)
    assert not errors, errors[:3]
    after = settled_counts(http_client, model, before[0] + 16 * 8)
    inferences, executions = (a - b for a, b in zip(after, before))
    assert inferences >= 16 * 8  # each request carries 1..3 rows
    assert executions < 16 * 8, f"{executions} executions for 128 requests: nothing was merged"


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_wrong_dtype_is_a_client_error_and_server_keeps_serving(request, references, protocol):
    client = request.getfixturevalue(f"{protocol}_client")
    good = sample_inputs("onnx_dynamic", 2, np.random.default_rng(1))
    with pytest.raises(InferenceServerException) as caught:
        infer(client, "onnx_dynamic", {"x": good["x"].astype(np.float64)})
    message = str(caught.value)
    assert "'x'" in message and "FP64" in message and "FP32" in message
    if protocol == "http":
        assert caught.value.status() == "400"
    else:
        assert caught.value.status() == "StatusCode.INVALID_ARGUMENT"
    assert_same(infer(client, "onnx_dynamic", good), references["onnx_dynamic"](good))


@pytest.mark.parametrize(
    "model,bad",
    [
        ("onnx_dynamic", {"x": np.zeros((2, 4), np.float32)}),
        (
            "torch_indexed",
            {"INPUT__0": np.zeros((1, 3), np.float32), "INPUT__1": np.zeros((1, 4), np.int32)},
        ),
        (
            "tf_two_inputs",
            {"features": np.zeros((40, 3), np.float32), "count": np.zeros((40, 1), np.int32)},
        ),
    ],
)
def test_wrong_shape_is_a_400_naming_the_input(http_client, references, model, bad):
    with pytest.raises(InferenceServerException) as caught:
        infer(http_client, model, bad)
    assert caught.value.status() == "400"
    assert "shape" in str(caught.value) or "batch" in str(caught.value)
    good = sample_inputs(model, 1, np.random.default_rng(2))
    assert_same(infer(http_client, model, good), references[model](good))


def test_missing_input_is_a_400(http_client):
    with pytest.raises(InferenceServerException) as caught:
        infer(http_client, "tf_two_inputs", {"features": np.zeros((1, 3), np.float32)})
    assert caught.value.status() == "400"
    assert "count" in str(caught.value)


def test_the_backend_directory_carries_its_own_package(triton):
    """The adapters import the copy of maas_backends in the backend directory, never this
    project: a server whose Python has only the frameworks runs them."""
    import subprocess
    import sys

    from maas.paths import PROJECT_ROOT
    from maas.server.backend_dir import assemble_backend_dir
    from maas.server.triton_paths import find_triton

    backend_dir = assemble_backend_dir(find_triton())
    assert (backend_dir / "maas_backends" / "adapter.py").is_file()
    code = (
        "import sys, runpy\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'maas':\n"
        "            raise ImportError(f'{name}: the project is not installed on this server')\n"
        "sys.meta_path.insert(0, Block())\n"
        f"sys.path = [p for p in sys.path if p not in ('', '.', r'{PROJECT_ROOT}')]\n"
        f"runpy.run_path(r'{backend_dir / 'onnxruntime' / 'model.py'}')\n"
        "import maas_backends\n"
        "print(maas_backends.__file__)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd="/"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().startswith(str(backend_dir))
