"""`maas bench`: the served models beside the alternatives, measured in one run on one machine.

For each model: (a) the framework called in-process at growing batch sizes, (b) Triton with
dynamic batching, (c) Triton without it, (d) FastAPI + uvicorn around the same files (JSON, one
request one forward pass), (e) Ray Serve with `@serve.batch` when Ray is installed (the `bench`
extra). Closed-loop load from the same generator (loadgen.py) at each concurrency; payloads
as in play: one drawing per mnist request, one player line against a 12-line repertoire per
npc_dialogue request.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from maas.bench.loadgen import run_closed_loop
from maas.bench.models import Models
from maas.bench.tuning import reload_with_batching
from maas.errors import MaasError
from maas.paths import PROJECT_ROOT
from maas_client.drawing import typed_digit_files

# What players say, in turn; client i starts at line i (mod 8), so that turns merged into one
# batch differ as they would in play (identical rows would be encoded once).
PLAYER_LINES = [
    "hey there", "how much for a bed tonight?", "any news?", "wheres the smithy",
    "got anything to eat", "who runs this place", "is the road north safe?", "thanks, bye",
]  # fmt: skip


@dataclass(frozen=True)
class Payloads:
    image: np.ndarray  # [28,28] float32, prepared like the game does
    lines: list[str]  # one NPC's repertoire (12 lines)


def payloads() -> Payloads:
    from maas_client.drawing import load_drawing_file, prepare
    from maas_client.npc_file import load_npc

    drawing = typed_digit_files(7)[0]
    npc = load_npc(PROJECT_ROOT / "examples" / "npcs" / "innkeeper.yaml")
    return Payloads(prepare(load_drawing_file(drawing)).astype(np.float32), npc.texts)


# The targets' in-process limit is batch sizes 1 to 64: up to 5 turns of 12 pairs. Beyond that,
# measured too because npc_bert merges up to 32 turns, whose NPC lines it encodes once.
ISSUE_MAX_BATCH = 64
NPC_TURNS_IN_ISSUE_RANGE = (1, 2, 4, 5)
NPC_TURNS_BEYOND = (8, 16, 32)


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
        "mnist": [time_calls(mnist_call(b), b, seconds) for b in (1, 2, 4, 8, 16, 32, 64)],
        "npc_dialogue": [
            time_calls(npc_call(t), t * len(data.lines), seconds, turns=t)
            for t in (*NPC_TURNS_IN_ISSUE_RANGE, *NPC_TURNS_BEYOND)
        ],
    }


def time_calls(call: Callable[[], None], items: int, seconds: float, **extra: int) -> dict:
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
def triton_callers(
    url: str, data: Payloads, *, tritonclient: bool = False
) -> dict[str, Callable[[list], Callable[[], None]]]:
    """Triton's HTTP protocol with binary tensors. By default over the same `http.client`
    connection that drives FastAPI and Ray (one load generator design for every server), with
    the body built and the answer parsed by tritonclient; `tritonclient=True` sends through
    tritonclient.http itself, whose gevent machinery costs the generator more CPU."""
    import tritonclient.http as httpclient

    def request(
        model: str, variants: list[list], output: str, size: int
    ) -> Callable[[list], Callable[[], None]]:
        """`variants`: the inputs of successive requests; client i starts at variant i."""
        outputs = [httpclient.InferRequestedOutput(output, binary_data=True)]
        if tritonclient:

            def through_library(opened: list) -> Callable[[], None]:
                turns = _from_own_start(variants, opened)
                client = httpclient.InferenceServerClient(url)
                opened.append(client)
                return lambda: _check(
                    client.infer(model, next(turns), outputs=outputs), output, size
                )

            return through_library
        bodies = [triton_body(tensors, outputs) for tensors in variants]

        def answered(response: http.client.HTTPResponse, answer: bytes) -> None:
            if response.status != 200:
                raise MaasError(f"{model}: HTTP {response.status}: {answer[:200]!r}")
            length = response.getheader("Inference-Header-Content-Length")
            result = httpclient.InferenceServerClient.parse_response_body(
                answer, header_length=int(length) if length else None
            )
            _check(result, output, size)

        host, port = url.rsplit(":", 1)
        return posting(host, int(port), f"/v2/models/{model}/infer", bodies, answered)

    def strings(name: str, texts: list[str]) -> Any:
        tensor = httpclient.InferInput(name, [len(texts), 1], "BYTES")
        tensor.set_data_from_numpy(np.array([[t.encode()] for t in texts], dtype=object))
        return tensor

    image = httpclient.InferInput("IMAGE", [1, 28, 28], "FP32")
    image.set_data_from_numpy(data.image[None], binary_data=True)
    count = len(data.lines)
    candidates = strings("CANDIDATE", data.lines)
    turn_inputs = [[strings("QUERY", [said] * count), candidates] for said in PLAYER_LINES]
    return {
        "mnist": request("mnist", [[image]], "PROBABILITIES", 10),
        "npc_dialogue": request("npc_dialogue", turn_inputs, "SCORE", count),
    }


def triton_body(tensors: list, outputs: list) -> tuple[bytes, dict[str, str]]:
    """An inference request as Triton's HTTP endpoint takes it (binary tensors), with headers."""
    import tritonclient.http as httpclient

    body, json_size = httpclient.InferenceServerClient.generate_request_body(tensors, outputs)
    headers = {"Content-Type": "application/octet-stream"}
    if json_size is not None:
        headers["Inference-Header-Content-Length"] = str(json_size)
    return body, headers


class SharedRequests:
    """Requests handed out once each across all clients (a lock, a counter), instead of each
    client cycling through the list: distinct work for every call of a run."""

    def __init__(self, requests: list[tuple[bytes, dict[str, str]]]) -> None:
        self.requests, self.next, self.lock, self.wrapped = requests, 0, threading.Lock(), 0

    def take(self) -> tuple[bytes, dict[str, str]]:
        with self.lock:
            index = self.next
            self.next += 1
        if index >= len(self.requests):
            self.wrapped += 1  # reported: the run used more requests than were prepared
        return self.requests[index % len(self.requests)]


def posting(
    host: str,
    port: int,
    path: str,
    requests: list[tuple[bytes, dict[str, str]]] | SharedRequests,
    answered: Callable[[http.client.HTTPResponse, bytes], None],
) -> Callable[[list], Callable[[], None]]:
    """The load generator's client for every server: one keep-alive http.client connection per
    client, POSTing `requests` (body, headers): each client cycles through a list from its own
    start, or all take from one SharedRequests; `answered` checks each reply."""

    def make(opened: list) -> Callable[[], None]:
        if isinstance(requests, SharedRequests):
            take = requests.take
        else:
            turns = _from_own_start(requests, opened)
            take = turns.__next__
        connection = http.client.HTTPConnection(host, port, timeout=120)
        opened.append(connection)

        def call() -> None:
            with _closed_on_error(connection):
                connection.request("POST", path, *take())
                response = connection.getresponse()
                answer = response.read()
            answered(response, answer)

        return call

    return make


def _from_own_start(items: list, opened: list) -> Iterator:
    """Cycle through `items` from this client's index: clients are made one after another,
    each adding its connection to `opened` (fresh for every load run) after this call."""
    return itertools.islice(itertools.cycle(items), len(opened), None)


@contextlib.contextmanager
def _closed_on_error(connection: http.client.HTTPConnection) -> Iterator[None]:
    """A request that failed half-way leaves http.client's connection unusable; closing it lets
    the next request reconnect instead of failing at once (and spinning the CPU)."""
    try:
        yield
    except BaseException:
        connection.close()
        raise


def _check(result: Any, name: str, size: int) -> None:
    if result.as_numpy(name).size != size:
        raise MaasError(f"{name} has {result.as_numpy(name).size} values, expected {size}")


BATCHED_MODEL = {"mnist": "mnist", "npc_dialogue": "npc_bert"}  # whose batcher is switched


def set_dynamic_batching(
    url: str, workload: str, original: dict | None, admin: dict[str, str]
) -> dict:
    """Reload the model without dynamic batching (original None) or back as it was."""
    import tritonclient.http as httpclient

    model = BATCHED_MODEL[workload]
    client = httpclient.InferenceServerClient(url)
    try:
        current = client.get_model_config(model)
        if original is None:
            reload_with_batching(client, model, current, None, admin)
        else:
            client.load_model(model, config=json.dumps(original), headers=admin)
        return current
    finally:
        client.close()


# --- (d) FastAPI -------------------------------------------------------------------------------
def fastapi_callers(port: int, data: Payloads) -> dict[str, Callable[[list], Callable[[], None]]]:
    """JSON over the same http.client connections as Triton's callers, same payload order."""

    def caller(
        path: str, bodies: list[dict], key: str, size: int
    ) -> Callable[[list], Callable[[], None]]:
        headers = {"Content-Type": "application/json"}
        encoded = [(json.dumps(body).encode(), headers) for body in bodies]

        def answered(response: http.client.HTTPResponse, answer: bytes) -> None:
            if response.status != 200 or len(json.loads(answer)[key]) != size:
                raise MaasError(f"{path}: {response.status}")

        return posting("127.0.0.1", port, path, encoded, answered)

    turns = [{"query": said, "candidates": data.lines} for said in PLAYER_LINES]
    return {
        "mnist": caller("/mnist", [{"image": data.image.tolist()}], "probabilities", 10),
        "npc_dialogue": caller("/npc", turns, "scores", len(data.lines)),
    }


def start_fastapi(repository: Path, port: int, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "uvicorn", "maas.bench.fastapi_app:app", "--port", str(port)]
    return _start_service("the FastAPI baseline", command, repository, port, log)


def ray_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def start_ray(repository: Path, port: int, log: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "maas.bench.ray_app", "--repository", str(repository),
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


def in_process_best(limit: dict[str, dict], model: str) -> float:
    """The best in-process throughput at the targets' batch sizes (1 to 64 items)."""
    return max(r["throughput"] for r in limit[model]["rows"] if r["batch"] <= ISSUE_MAX_BATCH)


def with_ratios(rows: list[dict], limit: dict[str, dict]) -> list[dict]:
    """Throughput over the in-process best (batch <= 64), p50 over the in-process batch 1."""
    for row in rows:
        best = in_process_best(limit, row["model"])
        single = limit[row["model"]]["rows"][0]["p50_ms"]
        row["throughput_vs_inprocess"] = round(row["throughput"] / best, 3)
        row["p50_vs_inprocess_batch1"] = round(row["p50_ms"] / single, 2) if single else None
    return rows


def _row(report: dict, model: str, server: str, clients: int) -> dict | None:
    return next(
        (r for r in report["served"]
         if (r["model"], r["server"], r["concurrency"]) == (model, server, clients)),
        None,
    )  # fmt: skip


def targets(report: dict, pairs_per_turn: int) -> list[dict]:
    """The serving targets, judged from this run's figures alone (ratios, never absolutes)."""
    found: list[dict] = []

    def judge(name: str, measured: float, goal: float, *, at_most: bool = False) -> None:
        met = measured <= goal if at_most else measured >= goal
        sign = "<=" if at_most else ">="
        found.append({"target": name, "measured": round(measured, 3),
                      "goal": f"{sign} {round(goal, 3)}", "met": met})  # fmt: skip

    best = {m: in_process_best(report["in_process"], m) for m in report["in_process"]}
    for clients in (8, 32):
        mine = _row(report, "npc_dialogue", "triton, dynamic batching", clients)
        if mine is None:
            continue
        judge(f"npc c={clients}: throughput / in-process best", mine["throughput"] / best[
            "npc_dialogue"], 0.9)  # fmt: skip
        for other in ("fastapi + uvicorn", "ray serve, @serve.batch"):
            theirs = _row(report, "npc_dialogue", other, clients)
            if theirs is not None:
                judge(f"npc c={clients}: throughput / {other}",
                      mine["throughput"] / theirs["throughput"], 1.0)  # fmt: skip
        bound_ms = clients * pairs_per_turn / best["npc_dialogue"] * 1e3
        judge(f"npc c={clients}: p99 / queueing bound ({bound_ms:.0f} ms)",
              mine["p99_ms"] / bound_ms, 1.2, at_most=True)  # fmt: skip
    mine = _row(report, "mnist", "triton, dynamic batching", 32)
    fastapi = _row(report, "mnist", "fastapi + uvicorn", 32)
    batch32 = next((r for r in report["in_process"]["mnist"]["rows"] if r["batch"] == 32), None)
    if mine is not None and fastapi is not None:
        judge("mnist c=32: throughput / FastAPI", mine["throughput"] / fastapi["throughput"], 3.0)
        judge("mnist c=32: p99 / FastAPI p99", mine["p99_ms"] / fastapi["p99_ms"], 1.0,
              at_most=True)  # fmt: skip
    if mine is not None and batch32 is not None:
        judge("mnist c=32: throughput / in-process batch 32",
              mine["throughput"] / batch32["throughput"], 0.4)  # fmt: skip
    return found


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
        best = in_process_best(report["in_process"], model)
        axis.axhline(best, color="grey", linestyle="--", label="in-process best, batch <= 64")
        beyond = max(r["throughput"] for r in report["in_process"][model]["rows"])
        if beyond > best * 1.05:
            axis.axhline(beyond, color="grey", linestyle=":", label="in-process, bigger batches")
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
