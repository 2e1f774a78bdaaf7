"""`maas serve` and `maas status` as a user runs them: real processes, real signals."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from maas.paths import PROJECT_ROOT
from maas.server.config import free_ports
from tests.cli_calls import MAAS, maas
from tests.fixture_models import build_repository, write_config


def processes_mentioning(text: str) -> list[str]:
    """Command lines of live processes (Triton, its stubs) that mention `text`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (entry / "stat").read_text().split(")")[-1].split()[0]
        except OSError:
            continue
        if text in cmdline and state != "Z" and int(entry.name) != os.getpid():
            found.append(cmdline)
    return found


def wait_for_line(process: subprocess.Popen, pattern: str, timeout_s: float) -> str:
    seen = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
        seen.append(line)
        if re.search(pattern, line):
            return "".join(seen)
    raise AssertionError(f"no line matching {pattern!r}; output:\n{''.join(seen)}")


def serve_args(repository: Path, http: int, grpc: int, metrics: int) -> list[str]:
    return [
        "serve",
        "--repository",
        str(repository),
        "--http-port",
        str(http),
        "--grpc-port",
        str(grpc),
        "--metrics-port",
        str(metrics),
    ]


@pytest.fixture(scope="module")
def small_repository(tmp_path_factory):
    return build_repository(
        tmp_path_factory.mktemp("serve_repo"), ("onnx_dynamic", "torch_indexed")
    )


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_serve_prints_endpoints_and_stops_cleanly(small_repository, tmp_path, stop_signal):
    http, grpc, metrics = free_ports(3)
    log = tmp_path / "triton.log"
    process = subprocess.Popen(
        [
            *MAAS,
            *serve_args(small_repository, http, grpc, metrics),
            "--log-file",
            str(log),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        banner = wait_for_line(process, "Ctrl-C", 180)
        assert f"http://127.0.0.1:{http}" in banner and f"127.0.0.1:{grpc}" in banner
        assert f"http://127.0.0.1:{metrics}/metrics" in banner and str(log) in banner
        assert re.search(r"onnx_dynamic[\s│]+1[\s│]+READY", banner)
        assert re.search(r"torch_indexed[\s│]+1[\s│]+READY", banner)
        assert processes_mentioning(str(small_repository)), "no stub processes seen while serving"

        for url in (f"127.0.0.1:{http}", f"http://127.0.0.1:{http}"):
            status = maas("status", "--url", url)
            assert status.returncode == 0, status.stderr
            assert "ready" in status.stdout
            assert re.search(r"onnx_dynamic\s+1\s+READY", status.stdout)
        assert "Started HTTPService" in log.read_text()
    finally:
        process.send_signal(stop_signal)
        rest, _ = process.communicate(timeout=60)
    assert process.returncode == 0, rest
    assert "Stopped" in rest
    assert processes_mentioning(str(small_repository)) == []


def test_status_reports_figures_from_statistics(triton, http_client):
    import numpy as np

    from tests.triton_calls import infer

    for _ in range(3):
        infer(http_client, "onnx_dynamic", {"x": np.ones((2, 3), np.float32)})
    result = maas("status", "--url", triton.config.http_url, env={"COLUMNS": "80"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    row = next(line for line in lines if line.split()[:1] == ["onnx_dynamic"])
    _name, version, state, requests, failed, batch, _queue, _compute = row.split()
    assert (version, state, failed) == ("1", "READY", "0")
    assert int(requests) >= 3 and float(batch) >= 2.0  # two rows per request
    for model in ("torch_named", "torch_indexed", "tf_two_inputs", "onnx_dynamic"):
        assert any(line.split()[:1] == [model] for line in lines), model  # names whole


def test_status_without_server_is_one_clear_line():
    (port,) = free_ports(1)
    result = maas("status", "--url", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert f"no Triton server answers at 127.0.0.1:{port}" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_model_that_fails_to_load_stops_the_server_with_its_reason(tmp_path):
    repository = build_repository(tmp_path / "repo", ("onnx_dynamic", "torch_named"))
    # A config whose input names match neither forward() nor NAME__i, with a wrong count.
    config = (repository / "torch_named/config.pbtxt").read_text()
    (repository / "torch_named/config.pbtxt").write_text(
        config.replace('{ name: "scale" data_type: TYPE_FP32 dims: [ 1 ] },', "")
    )
    write_config(
        repository,
        "not_built",
        'name: "not_built"\nplatform: "onnxruntime_onnx"\n'
        'max_batch_size: 4\ninput [ { name: "x" data_type: TYPE_FP32 dims: [ 1 ] } ]\n'
        'output [ { name: "y" data_type: TYPE_FP32 dims: [ 1 ] } ]\n',
    )
    (repository / "not_built/1").rmdir()
    # An ensemble built by a recipe of another name: the hint names the recipe.
    (repository / "npc_dialogue").mkdir()
    (repository / "npc_dialogue/config.pbtxt").write_text(
        (PROJECT_ROOT / "model_repository/npc_dialogue/config.pbtxt").read_text()
    )
    http, grpc, metrics = free_ports(3)
    result = maas(*serve_args(repository, http, grpc, metrics), timeout=240)
    assert result.returncode == 1
    err = result.stderr
    assert "3 model(s) failed to load" in err, err
    assert "npc_dialogue" in err and "maas build npc`" in err
    assert "torch_named" in err and "expects 1 inputs, model provides 2" in err
    assert "not_built" in err and "maas build not_built" in err
    assert "onnx_dynamic" not in err
    assert "Traceback" not in err
    assert processes_mentioning(str(repository)) == []


def test_port_in_use_is_reported_before_starting(triton):
    result = maas(
        "serve",
        "--repository",
        str(triton.config.repository),
        "--http-port",
        str(triton.config.http_port),
    )
    assert result.returncode == 1
    assert f"cannot listen on 127.0.0.1:{triton.config.http_port}" in result.stderr


def test_tune_batching_measures_and_restores_the_config(triton, http_client):
    before = http_client.get_model_config("onnx_dynamic")["dynamic_batching"]
    result = maas(
        "tune-batching",
        "onnx_dynamic",
        "--url",
        triton.config.http_url,
        "--delays",
        "0,300",
        "--preferred",
        "4",
        "--concurrency",
        "2",
        "--seconds",
        "0.5",
        timeout=120,
        env={"COLUMNS": "80"},
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"^\s*off\s+\d+", result.stdout, re.MULTILINE)
    assert re.search(r"^\s*300us pref 4\s+\d+", result.stdout, re.MULTILINE)
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    raw = Path(result.stdout.split("Raw figures: ")[1].split()[0])
    rows = __import__("json").loads(raw.read_text())["rows"]
    raw.unlink()
    assert [r["errors"] for r in rows] == [0, 0, 0] and all(r["requests"] > 0 for r in rows)
    assert http_client.get_model_config("onnx_dynamic")["dynamic_batching"] == before


def test_tune_batching_unknown_model_is_one_line(triton):
    result = maas("tune-batching", "no_such_model", "--url", triton.config.http_url)
    assert result.returncode == 1 and "no_such_model" in result.stderr
    assert "Traceback" not in result.stderr
