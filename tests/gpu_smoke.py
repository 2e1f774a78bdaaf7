"""On a CUDA machine: serve TorchScript models through the wheel's Triton and check that the
Python-based pytorch backend runs them on the GPU with the same results as the CPU in-process.

Not collected by pytest (CI has no GPU); run by hand: `python -m tests.gpu_smoke`.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

from maas.server import ServerConfig, TritonServer
from maas.server.config import free_ports
from tests.fixture_models import CONFIGS, build_repository, reference, sample_inputs, write_config

OUTPUTS = {
    "plain_python": ["y"],
    "onnx_dynamic": ["y"],
    "torch_named": ["OUTPUT__0"],
    "torch_indexed": ["OUTPUT__0", "OUTPUT__1"],
    "torch_indexed_gpu": ["OUTPUT__0", "OUTPUT__1"],
    "torch_indexed_cpu": ["OUTPUT__0", "OUTPUT__1"],
}
WIRE = {np.dtype(np.float32): "FP32", np.dtype(np.int32): "INT32", np.dtype(np.int64): "INT64"}


def json_inputs(inputs: dict[str, np.ndarray]) -> list[dict]:
    return [
        {"name": k, "shape": list(v.shape), "datatype": WIRE[v.dtype], "data": v.ravel().tolist()}
        for k, v in inputs.items()
    ]


def post_infer(url: str, model: str, body: dict):
    """The raw HTTP response to a KServe infer request; an HTTP error becomes SystemExit."""
    request = urllib.request.Request(
        f"http://{url}/v2/models/{model}/infer", data=json.dumps(body).encode(), method="POST"
    )
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as error:
        raise SystemExit(f"{model}: HTTP {error.code}: {error.read().decode()}") from None
    with response:
        return response.headers, response.read()


def infer_json(url: str, model: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    _, raw = post_infer(url, model, {"inputs": json_inputs(inputs)})
    outputs = json.loads(raw)["outputs"]
    return {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in outputs}


def infer_binary(url: str, model: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """KServe JSON request, outputs as binary data (what tritonclient.http asks for)."""
    body = {
        "inputs": json_inputs(inputs),
        "outputs": [{"name": n, "parameters": {"binary_data": True}} for n in OUTPUTS[model]],
    }
    headers, raw = post_infer(url, model, body)
    header_length = int(headers["Inference-Header-Content-Length"])
    header, offset, found = json.loads(raw[:header_length]), header_length, {}
    for out in header["outputs"]:
        size = out["parameters"]["binary_data_size"]
        dtype = {v: k for k, v in WIRE.items()}[out["datatype"]]
        found[out["name"]] = np.frombuffer(raw[offset : offset + size], dtype).reshape(out["shape"])
        offset += size
    return found


def infer_grpc(url: str, model: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import np_to_triton_dtype

    tensors = []
    for name, value in inputs.items():
        tensor = grpcclient.InferInput(name, list(value.shape), np_to_triton_dtype(value.dtype))
        tensor.set_data_from_numpy(value)
        tensors.append(tensor)
    client = grpcclient.InferenceServerClient(url)
    result = client.infer(model, tensors)
    return {o.name: result.as_numpy(o.name) for o in result.get_response().outputs}


def add_copy(repository: Path, kind: str) -> str:
    name = f"torch_indexed_{kind.lower()}"
    config = CONFIGS["torch_indexed"].replace('"torch_indexed"', f'"{name}"')
    config += f"\ninstance_group [ {{ kind: KIND_{kind} count: 2 }} ]\n"
    target = write_config(repository, name, config)
    (target / "model.pt").write_bytes((repository / "torch_indexed/1/model.pt").read_bytes())
    return name


PLAIN_PYTHON_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "x").as_numpy()
            y = pb_utils.Tensor("y", (x * 2).astype(np.float32))
            responses.append(pb_utils.InferenceResponse([y]))
        return responses
"""


def add_plain_python_model(repository: Path) -> str:
    """A python-backend model with none of our code: tells our bugs from the environment's."""
    config = CONFIGS["onnx_dynamic"].replace('"onnx_dynamic"', '"plain_python"')
    config = config.replace('platform: "onnxruntime_onnx"', 'backend: "python"')
    config = config.replace("dims: [ 2 ]", "dims: [ 3 ]")
    target = write_config(repository, "plain_python", config)
    (target / "model.py").write_text(PLAIN_PYTHON_MODEL)
    return "plain_python"


def main() -> int:
    import torch

    print("torch", torch.__version__, "cuda available:", torch.cuda.is_available())
    root = Path(tempfile.mkdtemp())
    repository = build_repository(root / "repo", ("torch_named", "torch_indexed", "onnx_dynamic"))
    models = ["onnx_dynamic", "torch_named", "torch_indexed"]
    if torch.cuda.is_available():  # KIND_GPU fails to load where there is no GPU
        models.append(add_copy(repository, "GPU"))
    models.append(add_copy(repository, "CPU"))
    models.insert(0, add_plain_python_model(repository))
    http, grpc, metrics = free_ports(3)
    config = ServerConfig(
        repository=repository,
        http_port=http,
        grpc_port=grpc,
        metrics_port=metrics,
        log_file=Path(os.environ.get("OUT", root)) / "triton.log",
        verbose="--verbose" in sys.argv,
        extra_args=tuple(a for a in sys.argv[1:] if a.startswith("--") and a != "--verbose"),
    )
    failures = 0
    with TritonServer(config) as server:
        print(f"ready in {server.startup_s:.1f} s")
        for line in server.log_tail(400).splitlines():
            if "loaded from" in line:
                print(line[-140:])
        rng = np.random.default_rng(0)
        for model in models:
            name = model.removesuffix("_gpu").removesuffix("_cpu")
            if model == "plain_python":
                inputs = sample_inputs("onnx_dynamic", 4, rng)
                expected = {"y": inputs["x"] * 2}
            else:
                inputs = sample_inputs(name, 4, rng)
                expected = reference(repository, name)(inputs)
            for protocol in ("grpc", "binary", "json"):
                try:
                    if protocol == "grpc":
                        served = infer_grpc(f"127.0.0.1:{grpc}", model, inputs)
                    elif protocol == "binary":
                        served = infer_binary(config.http_url, model, inputs)
                    else:
                        served = infer_json(config.http_url, model, inputs)
                except (Exception, SystemExit) as error:
                    failures += 1
                    print(f"{model} over {protocol}: FAILED {error}")
                    continue
                for key, value in expected.items():
                    same = np.allclose(served[key], value, rtol=1e-4, atol=1e-5)
                    failures += not same
                    verdict = "same as CPU in-process" if same else "DIFFERENT"
                    print(f"{model}.{key} over {protocol}: {verdict}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
