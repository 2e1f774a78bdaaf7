"""The bad-input matrix: malformed and hostile requests to every public model over HTTP (raw
bytes, so nothing is fixed up on the way) and gRPC (raw protobuf through the service stub, past
tritonclient's own checks). Each case is followed by a valid request, which must succeed.

`python -m tests.bad_requests HTTP_URL GRPC_URL` prints the table kept in docs/reliability.md.
"""

from __future__ import annotations

import http.client
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

MNIST_IMAGE = np.zeros((1, 28, 28), np.float32)
MNIST_IMAGE[0, 4:24, 13:15] = 1.0  # a "1"


@dataclass(frozen=True)
class Model:
    name: str
    inputs: dict[str, tuple[str, list[int]]]  # name -> (datatype, shape of a valid request)
    max_batch: int

    def valid_json(self) -> dict:
        return {"inputs": [_json_tensor(n, dt, shape) for n, (dt, shape) in self.inputs.items()]}


def _value(datatype: str):
    return {"BYTES": "hello there", "FP32": 0.5, "INT64": 1}[datatype]


def _json_tensor(name: str, datatype: str, shape: list[int], value=None) -> dict:
    count = int(np.prod(shape))
    return {
        "name": name,
        "datatype": datatype,
        "shape": shape,
        "data": [value if value is not None else _value(datatype)] * count,
    }


MODELS = [
    Model("mnist", {"IMAGE": ("FP32", [1, 28, 28])}, 128),
    Model("npc_dialogue", {"QUERY": ("BYTES", [1, 1]), "CANDIDATE": ("BYTES", [1, 1])}, 64),
    Model(
        "npc_tokenizer", {"QUERY": ("BYTES", [1, 1]), "CANDIDATE": ("BYTES", [1, 1])}, 64
    ),
    Model("npc_turn", {"QUERY": ("BYTES", [1, 1]), "CANDIDATE": ("BYTES", [1, 3])}, 32),
    Model(
        "npc_bert",
        {n: ("INT64", [1, 16]) for n in ("query_ids", "query_mask", "candidate_ids",
                                         "candidate_mask")},
        384,
    ),
]  # fmt: skip


@dataclass
class Outcome:
    case: str
    model: str
    protocol: str
    status: str  # HTTP status code, or the gRPC status name
    message: str
    served_after: bool  # the next valid request succeeded


# --- HTTP ---------------------------------------------------------------------------------------


def _post(url: str, model: str, body: bytes, headers: dict[str, str] | None = None):
    host, port = url.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=120)
    try:
        connection.request(
            "POST",
            f"/v2/models/{model}/infer",
            body=body,
            headers={"Content-Type": "application/octet-stream", **(headers or {})},
        )
        response = connection.getresponse()
        text = response.read().decode("utf-8", "replace")
        try:
            message = json.loads(text).get("error", "") if text else ""
        except ValueError:
            message = text[:200]
        if response.status == 200 and not message:
            message = "200 with outputs"
        return str(response.status), message
    except (OSError, http.client.HTTPException) as error:
        return "no answer", f"{type(error).__name__}: {error}"
    finally:
        connection.close()


def _binary_body(model: Model, arrays: dict[str, np.ndarray]) -> tuple[bytes, dict[str, str]]:
    """The binary tensor extension: JSON header, then raw tensor bytes."""
    header = {"inputs": []}
    blobs = []
    for name, array in arrays.items():
        datatype = model.inputs[name][0]
        if datatype == "BYTES":
            raw = b"".join(
                len(item).to_bytes(4, "little") + item for item in array.reshape(-1).tolist()
            )
        else:
            raw = array.tobytes()
        header["inputs"].append(
            {
                "name": name,
                "datatype": datatype,
                "shape": list(array.shape),
                "parameters": {"binary_data_size": len(raw)},
            }
        )
        blobs.append(raw)
    head = json.dumps(header).encode()
    return head + b"".join(blobs), {"Inference-Header-Content-Length": str(len(head))}


def _valid_arrays(model: Model) -> dict[str, np.ndarray]:
    if model.name == "mnist":
        return {"IMAGE": MNIST_IMAGE}
    arrays = {}
    for name, (datatype, shape) in model.inputs.items():
        if datatype == "BYTES":
            arrays[name] = np.full(shape, b"hello there", dtype=object)
        else:
            arrays[name] = np.ones(shape, np.int64)
    return arrays


def http_cases(model: Model) -> dict[str, Callable[[], tuple[bytes, dict[str, str]]]]:
    first, (dtype, shape) = next(iter(model.inputs.items()))
    other_dtype = "INT32" if dtype != "INT32" else "FP32"

    def with_first(tensor: dict) -> tuple[bytes, dict[str, str]]:
        body = model.valid_json()
        body["inputs"][0] = tensor
        return json.dumps(body).encode(), {}

    def extra() -> tuple[bytes, dict[str, str]]:
        body = model.valid_json()
        body["inputs"].append(_json_tensor("EXTRA", "FP32", [1, 1]))
        return json.dumps(body).encode(), {}

    def missing() -> tuple[bytes, dict[str, str]]:
        body = model.valid_json()
        body["inputs"] = body["inputs"][1:]
        return json.dumps(body).encode(), {}

    def over_batch() -> tuple[bytes, dict[str, str]]:
        big = model.max_batch + 1
        body = {
            "inputs": [_json_tensor(n, dt, [big, *s[1:]]) for n, (dt, s) in model.inputs.items()]
        }
        return json.dumps(body).encode(), {}

    def binary_lengths(delta: int) -> Callable[[], tuple[bytes, dict[str, str]]]:
        def build() -> tuple[bytes, dict[str, str]]:
            body, headers = _binary_body(model, _valid_arrays(model))
            length = int(headers["Inference-Header-Content-Length"]) + delta
            return body, {"Inference-Header-Content-Length": str(length)}

        return build

    def non_finite() -> tuple[bytes, dict[str, str]]:
        arrays = _valid_arrays(model)
        if model.name != "mnist":
            arrays = {k: v.copy() for k, v in arrays.items()}
            return _binary_body(model, arrays)  # no float input: a valid request
        image = MNIST_IMAGE.copy()
        image[0, 0, :3] = [np.nan, np.inf, -np.inf]
        return _binary_body(model, {"IMAGE": image})

    def text(value: bytes) -> Callable[[], tuple[bytes, dict[str, str]]]:
        def build() -> tuple[bytes, dict[str, str]]:
            arrays = _valid_arrays(model)
            if dtype == "BYTES":
                arrays[first] = np.full(shape, value, dtype=object)
            return _binary_body(model, arrays)

        return build

    cases: dict[str, Callable[[], tuple[bytes, dict[str, str]]]] = {
        "wrong dtype": lambda: with_first(_json_tensor(first, other_dtype, shape, 1)),
        "wrong shape": lambda: with_first(_json_tensor(first, dtype, [1, *[3] * len(shape[1:])])),
        "missing input": missing,
        "extra input": extra,
        "batch above max": over_batch,
        "NaN/Inf values": non_finite,
        "empty body": lambda: (b"", {}),
        "malformed JSON": lambda: (b'{"inputs": [', {}),
        "data not matching shape": lambda: with_first(
            {**_json_tensor(first, dtype, shape), "data": [_value(dtype)] * 3}
        ),
        "string where a number goes": lambda: with_first(
            _json_tensor(first, dtype, shape, "abc" if dtype != "BYTES" else 7)
        ),
        "binary header length > body": binary_lengths(10_000),
        "binary header length < header": binary_lengths(-5),
    }
    if model.name == "mnist":  # one model is enough to show the front end copes; it is slow
        cases["100 MB body"] = lambda: (
            b" " * 100_000_000 + json.dumps(model.valid_json()).encode(),
            {},
        )
    if dtype == "BYTES":
        cases["non-UTF-8 text"] = text(b"\xff\xfe\xfa bad")
    if model.name == "npc_dialogue":
        cases["10 MB text element"] = text(b"word " * 2_000_000)
    return cases


def valid_http(url: str, model: Model) -> bool:
    body, headers = _binary_body(model, _valid_arrays(model))
    return _post(url, model.name, body, headers)[0] == "200"


# --- gRPC ---------------------------------------------------------------------------------------


def _grpc_request(model: Model, arrays: dict[str, np.ndarray], datatypes: dict[str, str]):
    from tritonclient.grpc import service_pb2

    request = service_pb2.ModelInferRequest(model_name=model.name)
    for name, array in arrays.items():
        tensor = request.inputs.add(name=name, datatype=datatypes.get(name, "FP32"))
        tensor.shape.extend(array.shape)
        if array.dtype == object:
            request.raw_input_contents.append(
                b"".join(len(x).to_bytes(4, "little") + x for x in array.reshape(-1).tolist())
            )
        else:
            request.raw_input_contents.append(array.tobytes())
    return request


def grpc_cases(model: Model) -> dict[str, Callable[[], object]]:
    first, (dtype, shape) = next(iter(model.inputs.items()))
    types = {n: dt for n, (dt, _) in model.inputs.items()}

    def build(change: Callable[[dict[str, np.ndarray], dict[str, str]], None]):
        def make():
            arrays, datatypes = dict(_valid_arrays(model)), dict(types)
            change(arrays, datatypes)
            return _grpc_request(model, arrays, datatypes)

        return make

    def wrong_dtype(arrays, datatypes):
        datatypes[first] = "INT32" if dtype != "INT32" else "FP32"
        arrays[first] = np.ones(shape, np.int32 if dtype != "INT32" else np.float32)

    def wrong_shape(arrays, datatypes):
        sample = arrays[first]
        arrays[first] = np.resize(sample, (1, *[3] * len(shape[1:])))

    def over_batch(arrays, datatypes):
        for name, value in list(arrays.items()):
            arrays[name] = np.repeat(value, model.max_batch + 1, axis=0)

    def non_finite(arrays, datatypes):
        if model.name == "mnist":
            image = MNIST_IMAGE.copy()
            image[0, 0, :3] = [np.nan, np.inf, -np.inf]
            arrays["IMAGE"] = image

    def raw_size_mismatch(arrays, datatypes):
        arrays[first] = arrays[first].reshape(-1)[:1].reshape([1] * len(shape))
        datatypes[first] = dtype

    cases = {
        "wrong dtype": build(wrong_dtype),
        "wrong shape": build(wrong_shape),
        "missing input": build(lambda a, d: a.pop(first)),
        "extra input": build(lambda a, d: a.update(EXTRA=np.ones((1, 1), np.float32))),
        "batch above max": build(over_batch),
        "NaN/Inf values": build(non_finite),
    }
    if dtype == "BYTES":
        cases["non-UTF-8 text"] = build(
            lambda a, d: a.update({first: np.full(shape, b"\xff\xfe bad", dtype=object)})
        )
    if model.name == "npc_dialogue":
        cases["10 MB text element"] = build(
            lambda a, d: a.update({first: np.full(shape, b"word " * 2_000_000, dtype=object)})
        )
    if dtype != "BYTES":
        cases["data not matching shape"] = build(raw_size_mismatch)
    return cases


def _grpc_call(address: str, request) -> tuple[str, str]:
    import grpc
    from tritonclient.grpc import service_pb2_grpc

    options = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    with grpc.insecure_channel(address, options=options) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        try:
            stub.ModelInfer(request, timeout=120)
        except grpc.RpcError as error:
            return error.code().name, error.details() or ""
    return "OK", "outputs"


def valid_grpc(address: str, model: Model) -> bool:
    types = {n: dt for n, (dt, _) in model.inputs.items()}
    return _grpc_call(address, _grpc_request(model, _valid_arrays(model), types))[0] == "OK"


# --- the matrix ---------------------------------------------------------------------------------


def run_matrix(http_url: str, grpc_address: str) -> list[Outcome]:
    rows = []
    for model in MODELS:
        for case, make in http_cases(model).items():
            body, headers = make()
            status, message = _post(http_url, model.name, body, headers)
            rows.append(
                Outcome(case, model.name, "HTTP", status, message, valid_http(http_url, model))
            )
        for case, make in grpc_cases(model).items():
            status, message = _grpc_call(grpc_address, make())
            rows.append(
                Outcome(case, model.name, "gRPC", status, message, valid_grpc(grpc_address, model))
            )
    return rows


def markdown(rows: list[Outcome]) -> str:
    lines = ["| case | protocol | model | answer | message (start) | next valid request |"]
    lines.append("|---|---|---|---|---|---|")
    for row in rows:
        message = " ".join(row.message.split())[:90].replace("|", "/")
        ok = "served" if row.served_after else "**FAILED**"
        lines.append(
            f"| {row.case} | {row.protocol} | {row.model} | {row.status} | {message} | {ok} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown(run_matrix(sys.argv[1], sys.argv[2])))
