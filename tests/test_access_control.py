"""Secure by default: Triton's admin APIs need the key, so nobody who merely reaches the port can
upload a model (code) and run it; inference, health and metadata stay open."""

from __future__ import annotations

import json
import os
import stat
import textwrap
import time

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from maas.server import ServerConfig
from maas_client.admin_key import AdminKeyError, find_key, find_or_create_key
from tests.cli_calls import maas
from tests.triton_calls import admin_headers, infer

MODEL = "uploaded_probe"


def upload(marker: str) -> tuple[str, dict[str, bytes]]:
    """A python-backend model whose initialize() leaves a file: proof that its code ran."""
    config = {
        "name": MODEL,
        "backend": "python",
        "max_batch_size": 0,
        "input": [{"name": "X", "data_type": "TYPE_FP32", "dims": [1]}],
        "output": [{"name": "Y", "data_type": "TYPE_FP32", "dims": [1]}],
    }
    code = textwrap.dedent(f"""
        import os
        import triton_python_backend_utils as pb_utils

        class TritonPythonModel:
            def initialize(self, args):
                open({marker!r}, "w").write(str(os.getuid()))

            def execute(self, requests):
                return [
                    pb_utils.InferenceResponse(
                        [pb_utils.Tensor("Y", pb_utils.get_input_tensor_by_name(r, "X").as_numpy())]
                    )
                    for r in requests
                ]
    """)
    return json.dumps(config), {"file:1/model.py": code.encode()}


def test_an_upload_without_the_key_is_refused_and_runs_nothing(triton, tmp_path):
    marker = tmp_path / "ran.txt"
    config, files = upload(str(marker))
    client = httpclient.InferenceServerClient(triton.config.http_url)
    try:
        with pytest.raises(InferenceServerException) as refused:
            client.load_model(MODEL, config=config, files=files)
        assert refused.value.status() == "403"
        with pytest.raises(InferenceServerException) as wrong:
            client.load_model(MODEL, config=config, files=files, headers={"maas-admin-key": "x"})
        assert wrong.value.status() == "403"
        assert not marker.exists()
        assert not client.is_model_ready(MODEL)
        names = [m["name"] for m in client.get_model_repository_index(headers=admin_headers())]
        assert MODEL not in names
        # Inference, health and metadata need no key.
        x = np.ones((2, 3), np.float32)
        assert infer(client, "onnx_dynamic", {"x": x})["y"].shape == (2, 2)
        assert client.is_server_ready() and client.get_model_metadata("onnx_dynamic")
    finally:
        client.close()


def test_with_the_key_an_upload_loads_and_serves(triton, tmp_path):
    marker = tmp_path / "ran.txt"
    config, files = upload(str(marker))
    client = httpclient.InferenceServerClient(triton.config.http_url)
    try:
        client.load_model(MODEL, config=config, files=files, headers=triton.admin_headers)
        assert marker.exists() and client.is_model_ready(MODEL)
        value = np.array([4.5], np.float32)
        assert infer(client, MODEL, {"X": value})["Y"].tolist() == [4.5]
    finally:
        client.unload_model(MODEL, headers=triton.admin_headers)
        deadline = time.monotonic() + 30  # strict readiness: not ready while it unloads
        while not client.is_server_ready() and time.monotonic() < deadline:
            time.sleep(0.2)
        client.close()


def test_grpc_admin_calls_need_the_key_too(triton):
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{triton.config.grpc_port}")
    try:
        with pytest.raises(InferenceServerException, match="This protocol is restricted"):
            client.get_inference_statistics("onnx_dynamic")
        with pytest.raises(InferenceServerException, match="This protocol is restricted"):
            client.unload_model("onnx_dynamic", headers=triton.admin_headers)  # the HTTP spelling
        assert client.is_model_ready("onnx_dynamic")
        stats = client.get_inference_statistics("onnx_dynamic", headers=triton.admin_grpc_headers)
        assert stats.model_stats[0].name == "onnx_dynamic"
    finally:
        client.close()


def test_status_without_the_key_says_how_to_get_it(triton, tmp_path):
    env_key = {"MAAS_ADMIN_KEY_FILE": str(tmp_path / "none"), "MAAS_ADMIN_KEY": ""}
    result = maas("status", "--url", triton.config.http_url, env=env_key)
    assert result.returncode == 1
    assert "admin key" in result.stderr and "MAAS_ADMIN_KEY" in result.stderr
    assert "Traceback" not in result.stderr
    assert maas("status", "--url", triton.config.http_url).returncode == 0  # the default key


def test_key_file_is_created_private_and_a_readable_one_is_refused(tmp_path, monkeypatch):
    monkeypatch.delenv("MAAS_ADMIN_KEY", raising=False)
    path = tmp_path / "keys" / "admin.key"
    key, source = find_or_create_key(path)
    assert source == path and len(key) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert find_or_create_key(path)[0] == key and find_key(path) == key  # kept, not replaced
    os.chmod(path, 0o644)
    with pytest.raises(AdminKeyError, match="chmod 600"):
        find_key(path)
    monkeypatch.setenv("MAAS_ADMIN_KEY", "from-the-environment")
    assert find_key() == "from-the-environment"


def test_server_arguments_restrict_admin_apis_and_optionally_inference(tmp_path):
    config = ServerConfig(repository=tmp_path, admin_key="k3y")
    args = config.arguments(tmp_path)
    rule = "model-repository,statistics,trace,logging,shared-memory:maas-admin-key=k3y"
    assert f"--http-restricted-api={rule}" in args
    assert f"--grpc-restricted-protocol={rule}" in args
    assert "--model-control-mode=none" in args and "--metrics-address=127.0.0.1" in args
    explicit = ServerConfig(repository=tmp_path, admin_key="k3y", model_control=True)
    assert "--model-control-mode=explicit" in explicit.arguments(tmp_path)
    strict = ServerConfig(repository=tmp_path, admin_key="k3y", restrict_inference=True)
    assert "inference,model-config,metadata:maas-admin-key=k3y" in " ".join(
        strict.arguments(tmp_path)
    )
    with pytest.raises(ValueError, match="admin key is required"):
        ServerConfig(repository=tmp_path).arguments(tmp_path)


def test_key_command_creates_the_file_once_and_shows_it(tmp_path):
    env = {"MAAS_CACHE": str(tmp_path), "MAAS_ADMIN_KEY": "", "MAAS_ADMIN_KEY_FILE": ""}
    first = maas("key", env=env)
    assert first.returncode == 0 and str(tmp_path / "admin.key") in first.stdout
    shown = maas("key", "--show", env=env)
    assert shown.stdout.strip().splitlines()[-1] == (tmp_path / "admin.key").read_text().strip()


def test_model_code_does_not_inherit_the_key_from_the_environment(tmp_path, monkeypatch):
    """A container hands `maas serve` its key as MAAS_ADMIN_KEY (deploy/k8s/overlays/cpu);
    Triton gets it on its command line, and the models' stub processes never see it."""
    from maas.server import TritonServer

    marker = tmp_path / "seen"
    config, files = upload(str(marker))
    model = tmp_path / "repository" / MODEL
    (model / "1").mkdir(parents=True)
    (model / "1" / "model.py").write_bytes(
        files["file:1/model.py"].replace(
            b"str(os.getuid())", b"repr(os.environ.get('MAAS_ADMIN_KEY'))"
        )
    )
    spec = json.loads(config)
    (model / "config.pbtxt").write_text(
        f'name: "{MODEL}"\nbackend: "python"\nmax_batch_size: 0\n'
        'input [ { name: "X" data_type: TYPE_FP32 dims: [ 1 ] } ]\n'
        'output [ { name: "Y" data_type: TYPE_FP32 dims: [ 1 ] } ]\n'
    )
    assert spec["backend"] == "python"
    monkeypatch.setenv("MAAS_ADMIN_KEY", "from-the-environment")
    with TritonServer(ServerConfig.on_free_ports(tmp_path / "repository")) as server:
        assert server.config.admin_key == "from-the-environment"  # still the server's key
        assert marker.read_text() == "None"
