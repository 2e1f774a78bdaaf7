"""The digit recognizer end to end: a --quick build, served by a real Triton, called by clients."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from maas_client.drawing import typed_digit_files
from tests.cli_calls import maas
from tests.triton_calls import admin_headers

TYPED_DIGITS = typed_digit_files()


@pytest.fixture(scope="module")
def mnist_repository(quick_repository) -> Path:
    """The session's repository with --quick builds (tests/conftest.py), made through the CLI."""
    repository, outputs = quick_repository
    assert "Built mnist version 1" in outputs["mnist"]
    return repository


@pytest.fixture(scope="module")
def mnist_server(quick_server):
    return quick_server


@pytest.fixture(scope="module")
def test_digits():
    from tests.mnist_data import real_test_digits

    return real_test_digits(64)


def test_quick_build_writes_savedmodel_and_model_card(mnist_repository):
    version = mnist_repository / "mnist" / "1"
    assert (version / "model.savedmodel" / "saved_model.pb").exists()
    card = json.loads((version / "model_card.json").read_text())
    assert card["model"] == "mnist" and card["version"] == 1 and card["quick"] is True
    assert card["data"]["train_images"] == 60000 and card["data"]["test_images"] == 10000
    assert card["data"]["md5"]["t10k-labels-idx1-ubyte"] == "27ae3e4e09519cfbb04c329615203637"
    assert 0.5 < card["metrics"]["test_accuracy"] <= 1.0  # a quick model, but a model
    assert card["metrics"]["export_max_abs_diff"] < 1e-5  # SavedModel == Keras at export
    assert card["metrics"]["typed_digits"] == len(TYPED_DIGITS)
    assert card["timings_s"]["train"] > 0


def test_mnist_test_labels_start_as_published(test_digits):
    _, labels = test_digits
    assert labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]


def test_served_equals_in_process(mnist_server, mnist_repository, test_digits):
    import tensorflow as tf
    import tritonclient.grpc as grpcclient

    from maas_client.digits import DigitClient

    images, labels = test_digits
    signature = tf.saved_model.load(str(mnist_repository / "mnist/1/model.savedmodel")).signatures[
        "serving_default"
    ]
    expected = signature(IMAGE=tf.constant(images))["PROBABILITIES"].numpy()
    with DigitClient(mnist_server.config.http_url) as client:
        served = client.probabilities(images)
    np.testing.assert_allclose(served, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(served.sum(axis=1), 1.0, rtol=1e-5)

    grpc = grpcclient.InferenceServerClient(f"127.0.0.1:{mnist_server.config.grpc_port}")
    tensor = grpcclient.InferInput("IMAGE", list(images.shape), "FP32")
    tensor.set_data_from_numpy(images)
    np.testing.assert_allclose(
        grpc.infer("mnist", [tensor]).as_numpy("PROBABILITIES"), expected, rtol=1e-5, atol=1e-6
    )
    assert (served.argmax(axis=1) == labels).mean() > 0.5


def test_classification_extension_returns_labelled_top_k(mnist_server, test_digits):
    import tritonclient.http as httpclient

    images, _ = test_digits
    client = httpclient.InferenceServerClient(mnist_server.config.http_url)
    tensor = httpclient.InferInput("IMAGE", [4, 28, 28], "FP32")
    tensor.set_data_from_numpy(images[:4])
    wanted = httpclient.InferRequestedOutput("PROBABILITIES", class_count=3)
    result = client.infer("mnist", [tensor], outputs=[wanted]).as_numpy("PROBABILITIES")
    probabilities = client.infer("mnist", [tensor]).as_numpy("PROBABILITIES")
    assert result.shape == (4, 3)
    for row, probs in zip(result, probabilities):
        value, index, label = row[0].decode().split(":")
        assert int(index) == int(probs.argmax()) and label == index
        assert float(value) == pytest.approx(float(probs.max()), rel=1e-5)


def test_model_config_contract(mnist_server):
    import tritonclient.http as httpclient

    config = httpclient.InferenceServerClient(mnist_server.config.http_url).get_model_config(
        "mnist"
    )
    assert config["platform"] == "tensorflow_savedmodel" and config["max_batch_size"] >= 64
    assert config["input"][0]["name"] == "IMAGE" and config["input"][0]["dims"] == [28, 28]
    assert config["output"][0]["name"] == "PROBABILITIES" and config["output"][0]["dims"] == [10]
    assert config["dynamic_batching"]["max_queue_delay_microseconds"] > 0


def test_digits_command_prints_json_lines_and_fails_on_bad_files(mnist_server, tmp_path):
    junk = tmp_path / "junk.bin"
    junk.write_bytes(bytes(range(256)))
    ragged = tmp_path / "ragged.txt"
    ragged.write_text("###\n#\n")
    files = [str(p) for p in TYPED_DIGITS[:5]] + [str(junk), str(ragged)]
    result = maas("digits", "--url", f"http://{mnist_server.config.http_url}", *files)
    assert result.returncode == 1
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["file"] for line in lines] == files[:5]
    for line in lines:
        assert isinstance(line["digit"], int) and 0 <= line["digit"] <= 9
        assert len(line["probabilities"]) == 10
        assert sum(line["probabilities"]) == pytest.approx(1.0, abs=1e-4)
    assert "junk.bin: binary data" in result.stderr
    assert "ragged.txt: ragged lines" in result.stderr
    assert "2 of 7 file(s) could not be read" in result.stderr
    assert "Traceback" not in result.stderr


def test_client_batches_every_typed_digit_in_one_call(mnist_server):
    from maas_client.digits import DigitClient
    from maas_client.drawing import load_drawing_file

    drawings = [load_drawing_file(p) for p in TYPED_DIGITS]
    assert len(TYPED_DIGITS) >= 30 and {p.name[0] for p in TYPED_DIGITS} == set("0123456789")
    with DigitClient(mnist_server.config.http_url) as client:
        before = client._client.get_inference_statistics("mnist", headers=admin_headers())[
            "model_stats"
        ][0]
        results = client.classify_batch(drawings)
        after = client._client.get_inference_statistics("mnist", headers=admin_headers())[
            "model_stats"
        ][0]
    assert len(results) == len(drawings)
    assert int(after["execution_count"]) - int(before["execution_count"]) == 1
    assert all(r.image.shape == (28, 28) and len(r.top(3)) == 3 for r in results)


def test_wrong_image_size_is_a_400_and_server_keeps_serving(mnist_server, test_digits):
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    client = httpclient.InferenceServerClient(mnist_server.config.http_url)
    bad = httpclient.InferInput("IMAGE", [1, 32, 32], "FP32")
    bad.set_data_from_numpy(np.zeros((1, 32, 32), np.float32))
    with pytest.raises(InferenceServerException) as caught:
        client.infer("mnist", [bad])
    assert caught.value.status() == "400" and "IMAGE" in str(caught.value)
    assert client.is_model_ready("mnist")


def test_server_down_is_a_clear_client_error():
    from maas.server.config import free_ports
    from maas_client.digits import DigitClient
    from maas_client.errors import ServerUnavailableError

    (port,) = free_ports(1)
    with DigitClient(f"127.0.0.1:{port}") as client, pytest.raises(ServerUnavailableError):
        client.classify(np.eye(10, dtype=np.float32))
