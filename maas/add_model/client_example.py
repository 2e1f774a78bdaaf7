"""The few lines a game developer copies to call the new model: Python and curl."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from maas_backends.common import ModelSpec, wire_name

INLINE_LIMIT = 24  # values per curl request shown inline; more go to a request file


def _numpy_literal(dtype: np.dtype, triton_type: str, shape: tuple[int, ...]) -> str:
    if triton_type == "TYPE_STRING":
        return f'np.full({shape}, b"hello", dtype=object)'
    name = "bool_" if dtype.kind == "b" else dtype.name  # np.bool is numpy 2 only
    return f"np.zeros({shape}, dtype=np.{name})"


def example_shapes(spec: ModelSpec, inputs: dict[str, np.ndarray]) -> dict[str, tuple[int, ...]]:
    """One request: a batch of one, variable dims as the validation request had them."""
    shapes = {}
    for tensor in spec.inputs:
        shape = tuple(int(d) for d in inputs[tensor.name].shape)
        shapes[tensor.name] = (1, *shape[1:]) if spec.batching else shape
    return shapes


def python_example(spec: ModelSpec, inputs: dict[str, np.ndarray], url: str) -> str:
    shapes = example_shapes(spec, inputs)
    lines = [
        "import numpy as np",
        "from maas_client.http_client import ModelClient",
        "",
        f'with ModelClient("{url}") as client:',
        "    outputs = client.infer(",
        f'        "{spec.name}",',
        "        {",
    ]
    for tensor in spec.inputs:
        literal = _numpy_literal(tensor.dtype, tensor.triton_type, shapes[tensor.name])
        lines.append(f'            "{tensor.name}": {literal},')
    names = ", ".join(f'"{t.name}"' for t in spec.outputs)
    lines += ["        },", f"        [{names}],", "    )"]
    lines += [f'print(outputs["{t.name}"])' for t in spec.outputs]
    return "\n".join(lines)


def request_body(spec: ModelSpec, inputs: dict[str, np.ndarray]) -> dict[str, Any]:
    """The KServe v2 JSON request for the example: zeros, or "hello" for strings."""
    body: dict[str, Any] = {"inputs": []}
    for tensor in spec.inputs:
        shape = example_shapes(spec, inputs)[tensor.name]
        count = int(np.prod(shape)) if shape else 1
        if tensor.triton_type == "TYPE_STRING":
            data: list[Any] = ["hello"] * count
        elif tensor.triton_type == "TYPE_BOOL":
            data = [False] * count
        else:
            data = [0] * count
        body["inputs"].append(
            {
                "name": tensor.name,
                "shape": list(shape),
                "datatype": wire_name(tensor.triton_type),
                "data": data,
            }
        )
    return body


def curl_example(spec: ModelSpec, body: dict[str, Any], url: str, body_file: str) -> str:
    values = sum(len(t["data"]) for t in body["inputs"])
    endpoint = f"http://{url}/v2/models/{spec.name}/infer"
    if values <= INLINE_LIMIT:
        return f"curl -s {endpoint} \\\n  -d '{json.dumps(body, separators=(',', ':'))}'"
    return f"curl -s {endpoint} \\\n  -d @{body_file}"
