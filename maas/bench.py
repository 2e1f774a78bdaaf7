"""`maas bench`: the served models beside the alternatives, measured in one run on one machine.

For each model: (a) the framework called in-process at growing batch sizes, (b) Triton with
dynamic batching, (c) Triton without it, (d) FastAPI + uvicorn around the same files (JSON, one
request one forward pass), (e) Ray Serve with `@serve.batch` when Ray is installed (the `bench`
extra). Closed-loop load from the same generator (maas/loadgen.py) at each concurrency; payloads
as in play: one drawing per mnist request, one player line against a 12-line repertoire per
npc_dialogue request.
"""

from __future__ import annotations

import copy
import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from maas.bench_models import Models
from maas.errors import MaasError
from maas.loadgen import run_closed_loop
from maas.paths import PROJECT_ROOT

PLAYER_LINES = ["hey there", "how much for a bed tonight?", "any news?", "wheres the smithy"]


@dataclass(frozen=True)
class Payloads:
    image: np.ndarray  # [28,28] float32, prepared like the game does
    lines: list[str]  # one NPC's repertoire (12 lines)


def payloads() -> Payloads:
    from maas_client.drawing import load_drawing_file, prepare
    from maas_client.npc_file import load_npc

    drawing = sorted((PROJECT_ROOT / "tests" / "typed_digits").glob("7_*.txt"))[0]
    npc = load_npc(PROJECT_ROOT / "examples" / "npcs" / "innkeeper.yaml")
    return Payloads(prepare(load_drawing_file(drawing)).astype(np.float32), npc.texts)


# --- (a) in-process ----------------------------------------------------------------------------
def in_process(repository: Path, data: Payloads, seconds: float) -> dict[str, list[dict]]:
    """Throughput and per-call latency of the framework alone, per batch size."""
    models = Models(repository, pad_to_multiple_of=16)  # tokenized as npc_tokenizer does
    tf = models.tf

    def npc_call(turns: int) -> Callable[[], None]:
        queries = [PLAYER_LINES[i % len(PLAYER_LINES)] for i in range(turns)]
        rows_q = [q for q in queries for _ in data.lines]
        rows_c = data.lines * turns
        return lambda: models.scores(rows_q, rows_c)

    def mnist_call(batch: int) -> Callable[[], None]:
        images = tf.constant(np.repeat(data.image[None], batch, axis=0))
        return lambda: models.mnist(IMAGE=images)

    return {
        "mnist": [_time_calls(mnist_call(b), b, seconds) for b in (1, 2, 4, 8, 16, 32, 64)],
        "npc_dialogue": [
            _time_calls(npc_call(t), t * len(data.lines), seconds, turns=t) for t in (1, 2, 4, 5)
        ],
    }


def _time_calls(call: Callable[[], None], items: int, seconds: float, **extra: int) -> dict:
    call()  # warm-up: first calls compile and allocate
    latencies = []
    stop = time.perf_counter() + seconds
    while time.perf_counter() < stop or len(latencies) < 3:
        began = time.perf_counter()
        call()
        latencies.append(time.perf_counter() - began)
    total = sum(latencies)
    return {
        "batch": items,
        **extra,
        "throughput": round(items * len(latencies) / total, 1),
        "p50_ms": round(float(np.percentile(latencies, 50)) * 1e3, 2),
    }


# --- (b), (c) Triton ---------------------------------------------------------------------------
def triton_callers(url: str, data: Payloads) -> dict[str, Callable[[list], Callable[[], None]]]:
    import tritonclient.http as httpclient

    def mnist(opened: list) -> Callable[[], None]:
        client = httpclient.InferenceServerClient(url)
        opened.append(client)
        tensor = httpclient.InferInput("IMAGE", [1, 28, 28], "FP32")
        tensor.set_data_from_numpy(data.image[None], binary_data=True)
        out = [httpclient.InferRequestedOutput("PROBABILITIES", binary_data=True)]
        return lambda: _check(client.infer("mnist", [tensor], outputs=out), "PROBABILITIES", 10)

    def npc(opened: list) -> Callable[[], None]:
        client = httpclient.InferenceServerClient(url)
        opened.append(client)
        count = len(data.lines)
        turn = {"n": 0}
        candidates = np.array([[t.encode()] for t in data.lines], dtype=object)
        out = [httpclient.InferRequestedOutput("SCORE", binary_data=True)]

        def call() -> None:
            said = PLAYER_LINES[turn["n"] % len(PLAYER_LINES)].encode()
            turn["n"] += 1
            tensors = []
            for name, value in (
                ("QUERY", np.array([[said]] * count, dtype=object)),
                ("CANDIDATE", candidates),
            ):
                tensor = httpclient.InferInput(name, [count, 1], "BYTES")
                tensor.set_data_from_numpy(value, binary_data=True)
                tensors.append(tensor)
            _check(client.infer("npc_dialogue", tensors, outputs=out), "SCORE", count)

        return call

    return {"mnist": mnist, "npc_dialogue": npc}


def _check(result: Any, name: str, size: int) -> None:
    if result.as_numpy(name).size != size:
        raise MaasError(f"{name} has {result.as_numpy(name).size} values, expected {size}")


BATCHED_MODEL = {"mnist": "mnist", "npc_dialogue": "npc_bert"}  # whose batcher is switched


def set_dynamic_batching(url: str, workload: str, original: dict | None) -> dict:
    """Reload the model without dynamic batching (original None) or back as it was."""
    import tritonclient.http as httpclient

    model = BATCHED_MODEL[workload]
    client = httpclient.InferenceServerClient(url)
    try:
        current = client.get_model_config(model)
        config = copy.deepcopy(original) if original is not None else copy.deepcopy(current)
        if original is None:
            config.pop("dynamic_batching", None)
        client.load_model(model, config=json.dumps(config))
        return current
    finally:
        client.close()


# --- (d) FastAPI -------------------------------------------------------------------------------
def fastapi_callers(port: int, data: Payloads) -> dict[str, Callable[[list], Callable[[], None]]]:
    def caller(path: str, body: dict, key: str, size: int):
        encoded = json.dumps(body).encode()

        def make(opened: list) -> Callable[[], None]:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            opened.append(connection)

            def call() -> None:
                connection.request("POST", path, encoded, {"Content-Type": "application/json"})
                response = connection.getresponse()
                answer = json.loads(response.read())
                if response.status != 200 or len(answer[key]) != size:
                    raise MaasError(f"{path}: {response.status}")

            return call

        return make

    return {
        "mnist": caller("/mnist", {"image": data.image.tolist()}, "probabilities", 10),
        "npc_dialogue": caller(
            "/npc", {"query": PLAYER_LINES[1], "candidates": data.lines}, "scores", len(data.lines)
        ),
    }


def start_fastapi(repository: Path, port: int, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "uvicorn", "maas.bench_fastapi:app", "--port", str(port)]
    return _start_service("the FastAPI baseline", command, repository, port, log)


def ray_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def start_ray(repository: Path, port: int, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "maas.bench_ray", "--repository", str(repository),
               "--port", str(port)]  # fmt: skip
    return _start_service("the Ray Serve baseline", command, repository, port, log)


def _start_service(
    what: str, command: list[str], repository: Path, port: int, log: Path
) -> subprocess.Popen:
    """Start a baseline and wait until it answers a real request (not only a health check)."""
    env = {**os.environ, "MAAS_BENCH_REPOSITORY": str(repository)}
    process = subprocess.Popen(
        command, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=PROJECT_ROOT
    )
    body = json.dumps({"query": "hi", "candidates": ["hello"]}).encode()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise MaasError(f"{what} exited; see {log}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            connection.request("POST", "/npc", body, {"Content-Type": "application/json"})
            if connection.getresponse().status == 200:
                return process
        except OSError:
            pass
        time.sleep(0.5)
    stop_service(process)
    raise MaasError(f"{what} did not answer in 180 s; see {log}")


def stop_service(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- the run -----------------------------------------------------------------------------------
def load(
    make: Callable[[list], Callable[[], None]], concurrency: int, seconds: float, items: int
) -> dict:
    opened: list = []
    try:
        result = run_closed_loop(
            lambda: make(opened),
            concurrency=concurrency,
            duration_s=seconds,
            warmup_s=min(1.0, seconds),
            items_per_request=items,
        )
    finally:
        for connection in opened:
            connection.close()
    return result.summary()


def with_ratios(rows: list[dict], limit: dict[str, dict]) -> list[dict]:
    """Throughput over the in-process best, p50 over the in-process batch-1 call."""
    for row in rows:
        best = max(r["throughput"] for r in limit[row["model"]]["rows"])
        single = limit[row["model"]]["rows"][0]["p50_ms"]
        row["throughput_vs_inprocess"] = round(row["throughput"] / best, 3)
        row["p50_vs_inprocess_batch1"] = round(row["p50_ms"] / single, 2) if single else None
    return rows


def plot(report: dict, target: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for axis, model in zip(axes, ("mnist", "npc_dialogue")):
        rows = [r for r in report["served"] if r["model"] == model]
        for server in dict.fromkeys(r["server"] for r in rows):
            mine = [r for r in rows if r["server"] == server]
            axis.plot([r["concurrency"] for r in mine], [r["throughput"] for r in mine], "o-",
                      label=server)  # fmt: skip
        best = max(r["throughput"] for r in report["in_process"][model]["rows"])
        axis.axhline(best, color="grey", linestyle="--", label="in-process best")
        axis.set_xscale("log", base=2)
        axis.set_title(model)
        axis.set_xlabel("concurrent clients")
        axis.set_ylabel("images/s" if model == "mnist" else "pairs/s")
        axis.legend(fontsize=8)
    figure.suptitle(report["machine"])
    figure.tight_layout()
    figure.savefig(target, dpi=110)
    plt.close(figure)
    return target
