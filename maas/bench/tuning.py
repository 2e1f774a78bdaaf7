"""Measure a model's dynamic-batching settings on a running server, one setting at a time.

perf_analyzer is not on PyPI, so this does its core job for our configs: reload the model with
each candidate `dynamic_batching` (Triton's repository API accepts a config override in explicit
mode, which `maas serve` uses), drive it with the closed-loop generator, read Triton's own
statistics for the batch sizes it formed, and put the original config back.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import numpy as np

from maas.bench.loadgen import run_closed_loop
from maas.errors import MaasError
from maas_client.urls import normalize_url


def sample_request(metadata: dict[str, Any], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One request of batch 1 with values in 0..1 (or small integers, or short strings)."""
    from tritonclient.utils import triton_to_np_dtype

    inputs = {}
    for tensor in metadata["inputs"]:
        shape = [1] + [d if d > 0 else 8 for d in tensor["shape"][1:]]
        if tensor["datatype"] == "BYTES":
            inputs[tensor["name"]] = np.full(shape, b"hello there", dtype=object)
        elif tensor["datatype"].startswith("FP"):
            dtype = triton_to_np_dtype(tensor["datatype"])
            inputs[tensor["name"]] = rng.random(shape).astype(dtype)
        else:
            dtype = triton_to_np_dtype(tensor["datatype"])
            inputs[tensor["name"]] = rng.integers(0, 2, shape).astype(dtype)
    return inputs


def _caller(url: str, model: str, metadata: dict[str, Any], seed: int, opened: list):
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url)
    opened.append(client)
    tensors = []
    for name, value in sample_request(metadata, np.random.default_rng(seed)).items():
        datatype = next(t["datatype"] for t in metadata["inputs"] if t["name"] == name)
        tensor = httpclient.InferInput(name, list(value.shape), datatype)
        tensor.set_data_from_numpy(value, binary_data=True)
        tensors.append(tensor)
    outputs = [httpclient.InferRequestedOutput(o["name"]) for o in metadata["outputs"]]

    def call() -> None:
        client.infer(model, tensors, outputs=outputs)

    return call


def _counts(client, model: str, admin: dict[str, str]) -> tuple[int, int]:
    stats = client.get_inference_statistics(model, headers=admin)["model_stats"]
    return sum(int(s["inference_count"]) for s in stats), sum(
        int(s["execution_count"]) for s in stats
    )


def reload_with_batching(
    client: Any,
    model: str,
    original: dict[str, Any],
    batching: dict[str, Any] | None,
    admin: dict[str, str],
) -> None:
    """Reload `model` as its `original` config with `batching` as its dynamic_batching (None:
    none), through Triton's repository API (explicit model control, as `maas serve` runs)."""
    config = copy.deepcopy(original)
    config.pop("dynamic_batching", None)
    if batching is not None:
        config["dynamic_batching"] = batching
    client.load_model(model, config=json.dumps(config), headers=admin)


def tune_batching(
    url: str | None,
    model: str,
    *,
    delays_us: list[int],
    preferred: list[int] | None,
    concurrency: int,
    duration_s: float,
    include_unbatched: bool = True,
    admin_key: str | None = None,
) -> list[dict[str, Any]]:
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    from maas_client.admin_key import headers

    admin = headers(admin_key)
    address = normalize_url(url)
    client = httpclient.InferenceServerClient(address)
    try:
        original = client.get_model_config(model)
        metadata = client.get_model_metadata(model)
    except InferenceServerException as error:
        client.close()
        raise MaasError(f"{model} at {address}: {error.message()}") from None
    except OSError as error:
        client.close()
        raise MaasError(f"no Triton server answers at {address} ({error})") from None
    settings: list[dict[str, Any] | None] = [None] if include_unbatched else []
    for delay in delays_us:
        batching: dict[str, Any] = {"max_queue_delay_microseconds": delay}
        if preferred:
            batching["preferred_batch_size"] = preferred
        settings.append(batching)
    rows = []
    try:
        for batching in settings:
            try:
                reload_with_batching(client, model, original, batching, admin)
            except InferenceServerException as error:
                raise MaasError(
                    f"Triton refused to reload {model}: {error.message()} (it needs the admin "
                    "key and a server started with `maas serve --model-control`)"
                ) from None
            seeds, opened = iter(range(concurrency)), []
            before = _counts(client, model, admin)
            try:
                result = run_closed_loop(
                    lambda seeds=seeds, opened=opened: _caller(
                        address, model, metadata, next(seeds), opened
                    ),
                    concurrency=concurrency,
                    duration_s=duration_s,
                )
            finally:
                for worker_client in opened:
                    worker_client.close()
            inferences, executions = (a - b for a, b in zip(_counts(client, model, admin), before))
            row = {
                "dynamic_batching": "off" if batching is None else batching,
                **result.summary(),
                "avg_batch": round(inferences / executions, 2) if executions else None,
            }
            rows.append(row)
    finally:
        try:
            # Back to the config it had: a plain reload keeps the last override in Triton 2.51.
            client.load_model(model, config=json.dumps(original), headers=admin)
        except (InferenceServerException, OSError) as error:
            print(f"warning: could not restore {model}'s config from disk: {error}")
        client.close()
    return rows
