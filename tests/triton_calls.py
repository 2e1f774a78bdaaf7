"""Calling a model over HTTP or gRPC with numpy in and out, the same way for both protocols."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import np_to_triton_dtype

from maas_client.admin_key import find_key, headers


def infer(client, model: str, inputs: dict[str, np.ndarray], outputs: list[str] | None = None):
    module = grpcclient if isinstance(client, grpcclient.InferenceServerClient) else httpclient
    tensors = []
    for name, value in inputs.items():
        tensor = module.InferInput(name, list(value.shape), np_to_triton_dtype(value.dtype))
        tensor.set_data_from_numpy(value)
        tensors.append(tensor)
    requested = [module.InferRequestedOutput(n) for n in outputs] if outputs else None
    result = client.infer(model, tensors, outputs=requested)
    names = [o["name"] if isinstance(o, dict) else o.name for o in _outputs(result)]
    return {name: result.as_numpy(name) for name in names}


def _outputs(result):
    response = result.get_response()
    return response["outputs"] if isinstance(response, dict) else response.outputs


def admin_headers() -> dict[str, str]:
    """The admin key every test server uses: the user's key file, as `maas serve` does."""
    return headers(find_key())


def model_counts(client, model: str) -> tuple[int, int]:
    """(inferences, executions) so far, from Triton's statistics API (an admin API) over HTTP."""
    stats = client.get_inference_statistics(model, headers=admin_headers())["model_stats"][0]
    return int(stats["inference_count"]), int(stats["execution_count"])


def settled_counts(client, model: str, at_least: int, timeout_s: float = 5.0) -> tuple[int, int]:
    """(inferences, executions) once Triton has recorded at least `at_least` inferences.

    A composing model's statistics can be recorded just after the ensemble has answered, so a
    count read at once may miss the last turn.
    """
    deadline = time.monotonic() + timeout_s
    counts = model_counts(client, model)
    while counts[0] < at_least and time.monotonic() < deadline:
        time.sleep(0.05)
        counts = model_counts(client, model)
    return counts


def run_players(player: Callable[[int], None], count: int) -> list[str]:
    """Run `player(seed)` in `count` threads started together; return what each one raised
    (an assert inside a thread would otherwise be lost)."""
    errors: list[str] = []
    barrier = threading.Barrier(count)

    def guarded(seed: int) -> None:
        try:
            barrier.wait()
            player(seed)
        except Exception as error:
            errors.append(f"{type(error).__name__}: {error}")

    threads = [threading.Thread(target=guarded, args=(seed,)) for seed in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors
