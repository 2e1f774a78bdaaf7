"""docker-compose.yml's Triton command, run for real: the wheel's tritonserver (the same 2.51 as
the NGC 24.10 image) started by exactly the compose shell line, with the secret file in place."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request

import numpy as np
import pytest
import tritonclient.http as httpclient
import yaml
from tritonclient.utils import InferenceServerException

from maas.paths import PROJECT_ROOT
from maas.server.backend_dir import assemble_backend_dir
from maas.server.config import free_ports
from maas.server.triton_paths import find_triton
from tests.triton_calls import infer

COMPOSE = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
SERVICE = COMPOSE["services"]["triton"]


def test_compose_publishes_metrics_to_this_host_only_and_reads_the_key_from_a_secret():
    ports = SERVICE["ports"]
    assert "127.0.0.1:8002:8002" in ports and "8002:8002" not in ports
    assert SERVICE["secrets"] == ["maas_admin_key"]
    assert "maas_admin_key" in COMPOSE["secrets"]
    line = SERVICE["command"][0]
    assert "--model-control-mode" not in line and "--load-model" not in line


@pytest.fixture
def compose_server(backend_repository, tmp_path):
    """The compose command with docker's parts mapped to this machine: $$ -> $, the secret and
    /models to temporary paths, `tritonserver` to a wrapper adding what the image has built in
    (its backends) and free ports."""
    install = find_triton()
    http, grpc, metrics = free_ports(3)
    secret = tmp_path / "maas_admin_key"
    secret.write_text("compose-s3cret\n")
    wrapper = tmp_path / "bin" / "tritonserver"
    wrapper.parent.mkdir()
    wrapper.write_text(
        textwrap.dedent(f"""\
        #!/bin/sh
        exec {install.binary} "$@" --backend-directory={assemble_backend_dir(install)} \\
          --http-address=127.0.0.1 --http-port={http} --grpc-address=127.0.0.1 \\
          --grpc-port={grpc} --metrics-address=127.0.0.1 --metrics-port={metrics}
    """)
    )
    wrapper.chmod(0o755)
    line = (
        SERVICE["command"][0]
        .replace("$$", "$")
        .replace("/run/secrets/maas_admin_key", str(secret))
        .replace("/models", str(backend_repository))
    )
    nvidia, *shell = SERVICE["entrypoint"]  # the image's own entrypoint, then the shell
    assert nvidia == "/opt/nvidia/nvidia_entrypoint.sh" and shell == ["/bin/sh", "-c"]
    env = {
        **os.environ,
        "PATH": f"{wrapper.parent}:{sys.prefix}/bin:{os.environ['PATH']}",
        "LD_LIBRARY_PATH": f"{install.library_dir}:{os.environ.get('LD_LIBRARY_PATH', '')}",
    }
    log = (tmp_path / "triton.log").open("w")
    process = subprocess.Popen(
        [*shell, line], env=env, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )  # fmt: skip
    url = f"127.0.0.1:{http}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert process.poll() is None, (tmp_path / "triton.log").read_text()[-3000:]
            try:
                with urllib.request.urlopen(f"http://{url}/v2/health/ready", timeout=2):
                    break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.5)
        else:
            pytest.fail("the compose command's Triton was not ready in 180 s")
        yield url, "compose-s3cret"
    finally:
        os.killpg(process.pid, signal.SIGINT)
        try:
            process.wait(timeout=40)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def test_the_compose_command_serves_and_guards_the_admin_apis(compose_server):
    url, key = compose_server
    client = httpclient.InferenceServerClient(url)
    try:
        out = infer(client, "onnx_dynamic", {"x": np.ones((1, 3), np.float32)})
        assert out["y"].shape == (1, 2)  # inference is open
        with pytest.raises(InferenceServerException) as refused:
            client.get_inference_statistics("onnx_dynamic")
        assert refused.value.status() == "403"
        stats = client.get_inference_statistics("onnx_dynamic", headers={"maas-admin-key": key})
        assert stats["model_stats"][0]["name"] == "onnx_dynamic"
        # Model control is off: even with the key, nothing can be loaded or unloaded.
        with pytest.raises(InferenceServerException, match="not allowed"):
            client.unload_model("onnx_dynamic", headers={"maas-admin-key": key})
        assert client.is_model_ready("onnx_dynamic")
    finally:
        client.close()
