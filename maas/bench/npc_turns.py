"""`maas bench --npc-turns`: NPC talk as a game with many players makes it.

Realistic load: every turn is a player line not sent before in the run (drawn from the chat
corpus of the `chitchat-dataset` package, hundreds of thousands of distinct lines) to one of
the 50+ NPCs of the project's dialogue data, so merged batches rarely share an NPC or a line.
Both paths get the same turns in the same run: `npc_dialogue` (pairs; every NPC line encoded
per turn) and `npc_turn` (NPC lines cached; the player's line encoded). The old scenario, one
NPC and eight player lines, is kept as a labelled second row. The limit is the encoder called
in-process on player lines at the same batch sizes: one encoding per turn.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import random
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import numpy as np

from maas.bench import perf_analyzer as pa
from maas.bench.compare import SharedRequests, load, posting, time_calls
from maas.bench.models import Models, served_runtime, version_dir
from maas.errors import MaasError
from maas.paths import PROJECT_ROOT

MODELS = ("npc_dialogue", "npc_turn")
FASTAPI_ROW = "fastapi, cached"  # the FastAPI baseline's /npc_turn: the same design by hand
RAY_ROW = "ray serve, cached"  # Ray Serve's /npc_turn: the same design with @serve.batch
NPC_FILES = ("train_dialogue*.yaml", "heldout_dialogue.yaml")
BODIES_PER_RUN = 3000  # distinct turns prepared per (model, clients) run
MIN_NPCS, MIN_LINES = 50, 2000
OLD_SCENARIO_LINES = [
    "hey there", "how much for a bed tonight?", "any news?", "wheres the smithy",
    "got anything to eat", "who runs this place", "is the road north safe?", "thanks, bye",
]  # fmt: skip


def npc_pool() -> list[Any]:
    from maas_client.npc_file import load_npcs

    folder = PROJECT_ROOT / "build" / "data" / "npc"
    npcs = [n for pattern in NPC_FILES for p in sorted(folder.glob(pattern)) for n in load_npcs(p)]
    if len(npcs) < MIN_NPCS:
        raise MaasError(f"only {len(npcs)} NPCs in {folder}; the realistic load needs {MIN_NPCS}")
    return npcs


def player_lines(seed: int = 0) -> list[str]:
    """Distinct chat utterances of 2 to 16 words, shuffled."""
    try:
        from chitchat_dataset import ConversationDataset
    except ImportError:
        raise MaasError(
            "the realistic NPC load needs chitchat-dataset: pip install -e '.[bench]'"
        ) from None
    seen: dict[str, None] = {}
    for conversation in ConversationDataset():
        for message in conversation:
            text = " ".join(message.split())
            if 2 <= len(text.split()) <= 16:
                seen[text] = None
    lines = list(seen)
    random.Random(seed).shuffle(lines)
    return lines


def body(model: str, said: str, lines: list[str]) -> tuple[bytes, dict[str, str]]:
    import tritonclient.http as httpclient

    from maas.bench.compare import triton_body

    def strings(name: str, rows: list[list[str]]) -> Any:
        values = np.array([[t.encode() for t in row] for row in rows], dtype=object)
        tensor = httpclient.InferInput(name, list(values.shape), "BYTES")
        tensor.set_data_from_numpy(values)
        return tensor

    if model == "npc_turn":
        tensors = [strings("QUERY", [[said]]), strings("CANDIDATE", [lines])]
    else:
        tensors = [
            strings("QUERY", [[said]] * len(lines)),
            strings("CANDIDATE", [[x] for x in lines]),
        ]
    return triton_body(tensors, [httpclient.InferRequestedOutput("SCORE", binary_data=True)])


def turn_tensors(said: str, lines: list[str]) -> dict[str, np.ndarray]:
    """npc_turn's inputs for one turn, batch 1 (what body() sends, as arrays)."""
    return {
        "QUERY": np.array([[said.encode()]], dtype=object),
        "CANDIDATE": np.array([[t.encode() for t in lines]], dtype=object),
    }


def json_body(said: str, lines: list[str]) -> tuple[bytes, dict[str, str]]:
    """The FastAPI baseline's turn: {"query", "candidates"}."""
    import json

    data = json.dumps({"query": said, "candidates": lines}).encode()
    return data, {"Content-Type": "application/json"}


def closed_loop(
    url: str,
    model: str,
    made: list[tuple[bytes, dict[str, str]]],
    clients: int,
    seconds: float,
    path: str = "",
) -> dict:
    """The bench's generator and its http.client clients, every prepared turn sent once."""
    host, port = url.rsplit(":", 1)
    turns = SharedRequests(made)

    def answered(response: http.client.HTTPResponse, answer: bytes) -> None:
        if response.status != 200:
            raise MaasError(f"{model}: HTTP {response.status}: {answer[:200]!r}")

    path = path or f"/v2/models/{model}/infer"
    found = load(posting(host, int(port), path, turns, answered), clients, seconds, 1)
    return {
        "turns_per_s": found["throughput"],
        "p50_ms": found["p50_ms"],
        "p99_ms": found["p99_ms"],
        "errors": found["errors"],
        "turns": found["requests"],
        "repeated_lines": turns.wrapped,
    }


def warm_up(url: str, npcs: list[Any], path: str, make: Callable[..., tuple]) -> int:
    """One turn per NPC before anything is timed, as a game server sees its content once
    after it starts: every row then measures the steady state (NPC lines cached, the player's
    line encoded), whatever order the rows run in. Returns the lines sent."""
    host, port = url.rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=120)
    try:
        for npc in npcs:
            data, headers = make(npc.texts)
            connection.request("POST", path, data, headers)
            response = connection.getresponse()
            answer = response.read()
            if response.status != 200:
                raise MaasError(f"warm-up {path}: HTTP {response.status}: {answer[:200]!r}")
    finally:
        connection.close()
    return sum(len(npc.texts) for npc in npcs)


def in_process_limit(
    models: Models, lines: list[str], seconds: float, runtime: str = "torchscript"
) -> list[dict]:
    """The encoder on player lines, tokenized as npc_turn does (`models` pads to a multiple of
    16): texts per second at each batch size (one encoding per turn is the least a turn can
    cost). The limit the targets use is npc_encoder's TorchScript (naive in-process PyTorch);
    "onnxruntime" is npc_turn's CPU file."""
    if runtime == "onnxruntime" and models.onnx_encoder is None:
        return []
    source = itertools.cycle(lines)
    rows = []
    for batch in (1, 2, 4, 8, 16, 32):
        row = time_calls(
            lambda b=batch: models.embeddings([next(source) for _ in range(b)], runtime),
            batch,
            seconds,
        )
        rows.append({"batch": batch, "texts_per_s": row["throughput"], "p50_ms": row["p50_ms"]})
    if runtime == "torchscript":  # the measure: one shape, batch 32 of 16 tokens
        ids = models.torch.from_numpy(np.random.default_rng(0).integers(1000, 20000, (32, 16)))
        tensors = [ids, models.torch.ones_like(ids)]

        def fixed() -> None:
            with models.torch.inference_mode():
                models.encoder(*tensors)

        row = time_calls(fixed, 32, max(seconds, 1.0))
        rows.append({"batch": 32, "tokens": 16, "texts_per_s": row["throughput"],
                     "p50_ms": row["p50_ms"]})  # fmt: skip
    return rows


def run_npc_turns(
    repository: Path,
    url: str,
    *,
    levels: list[int],
    seconds: float,
    in_process_seconds: float,
    status: Callable[[str], Any],
    on_row: Callable[[dict], None] = lambda _: None,
    baselines: dict[str, Callable[[], AbstractContextManager[str]]] | None = None,
    referee: Callable[[list[tuple[str, list[str]]], int, float], dict] | None = None,
) -> dict:
    """Every row of the comparison, the in-process limit and the ratios the targets use;
    `baselines`: row label -> a context that runs a baseline with npc_turn's design and gives
    its address (each runs only for its own rows: an idle Ray still takes CPU); `referee`:
    perf_analyzer on npc_turn's realistic rows with the same turns (turns, clients, ours)."""
    baselines = baselines or {}
    npcs = npc_pool()
    with status("Reading the chat corpus for player lines"):
        pool = player_lines()
    if len(pool) < MIN_LINES:
        raise MaasError(f"only {len(pool)} distinct player lines; the load needs {MIN_LINES}")
    rng = random.Random(1)
    cursor = iter(pool)
    rows: list[dict] = []
    old_npc = next(n for n in npcs if len(n.lines) >= 12)
    with status("Warming the NPC line caches: one turn per NPC"):
        warmed = warm_up(url, npcs, "/v2/models/npc_turn/infer",
                         lambda texts: body("npc_turn", "hello", texts))  # fmt: skip
    for scenario in ("realistic", "one NPC, 8 lines"):
        for model in MODELS:
            for clients in levels:
                with status(f"{scenario}: {model}, {clients} clients"):
                    if scenario == "realistic":
                        turns = [(next(cursor), rng.choice(npcs).texts)
                                 for _ in range(BODIES_PER_RUN)]  # fmt: skip
                    else:
                        turns = [(said, old_npc.texts) for said in OLD_SCENARIO_LINES]
                    made = [body(model, said, lines) for said, lines in turns]
                    row = {"scenario": scenario, "model": model, "clients": clients,
                           **closed_loop(url, model, made, clients, seconds)}  # fmt: skip
                    if scenario != "realistic":
                        row["repeated_lines"] = None  # repeats are this scenario's point
                if referee is not None and model == "npc_turn" and scenario == "realistic":
                    with status(f"perf_analyzer: {model}, {clients} clients"):
                        row["perf_analyzer"] = referee(turns, clients, row["turns_per_s"])
                rows.append(row)
                on_row(row)
    for label, running in baselines.items():
        with contextlib.ExitStack() as stack:
            with status(f"Starting {label}"):
                address = stack.enter_context(running())
            with status(f"Warming {label}'s line cache: one turn per NPC"):
                warm_up(address, npcs, "/npc_turn", lambda texts: json_body("hello", texts))
            for clients in levels:
                with status(f"realistic: {label}, npc_turn's design, {clients} clients"):
                    made = [json_body(next(cursor), rng.choice(npcs).texts)
                            for _ in range(BODIES_PER_RUN)]  # fmt: skip
                    row = {"scenario": "realistic", "model": label, "clients": clients,
                           **closed_loop(address, label, made, clients, seconds,
                                         "/npc_turn")}  # fmt: skip
                rows.append(row)
                on_row(row)
    with status("In-process limit: npc_encoder (TorchScript) on player lines"):
        models = Models(repository, pad_to_multiple_of=16)  # tokenized as npc_turn does
        limit = in_process_limit(models, pool[-5000:], in_process_seconds)
    with status("In-process: npc_turn's onnxruntime encoder on player lines"):
        onnx = in_process_limit(models, pool[-5000:], in_process_seconds, "onnxruntime")
    return {
        "npcs": len(npcs),
        "player_lines_in_pool": len(pool),
        "npc_lines_warmed": warmed,
        "encoder_runtime": served_runtime(repository),
        "rows": rows,
        "in_process_encoder": limit,
        "in_process_onnxruntime": onnx,
        "ratios": ratios(rows, limit, max(levels)),
    }


def ratios(rows: list[dict], limit: list[dict], clients: int) -> dict[str, float | None]:
    def find(model: str, level: int) -> dict | None:
        return next((r for r in rows if r["scenario"] == "realistic" and r["model"] == model
                     and r["clients"] == level), None)  # fmt: skip

    turn, pairs, alone = (
        find("npc_turn", clients),
        find("npc_dialogue", clients),
        find("npc_turn", 1),
    )
    fastapi, ray = find(FASTAPI_ROW, clients), find(RAY_ROW, clients)
    best = max((r["texts_per_s"] for r in limit if r["batch"] <= clients), default=None)
    return {
        "clients": clients,
        "turn_over_dialogue": round(turn["turns_per_s"] / pairs["turns_per_s"], 2)
        if turn and pairs and pairs["turns_per_s"]
        else None,
        "turn_over_in_process_limit": round(turn["turns_per_s"] / best, 2)
        if turn and best
        else None,
        "single_player_p50_ms": alone["p50_ms"] if alone else None,
        "turn_over_fastapi_cached": round(turn["turns_per_s"] / fastapi["turns_per_s"], 2)
        if turn and fastapi and fastapi["turns_per_s"]
        else None,
        "turn_over_ray_cached": round(turn["turns_per_s"] / ray["turns_per_s"], 2)
        if turn and ray and ray["turns_per_s"]
        else None,
    }


def run_npc_turns_bench(
    repository: Path,
    *,
    levels: list[int],
    seconds: float,
    in_process_seconds: float,
    folder: Path,
    status: Callable[[str], Any],
    on_row: Callable[[dict], None] = lambda _: None,
    ray: bool = True,
    perf_analyzer: bool = True,
) -> tuple[dict, Path]:
    """A Triton on free ports over `repository`, the comparison, and its JSON file."""
    import json

    from maas.bench.session import machine_description
    from maas.server import ServerConfig, TritonServer

    for model in (*MODELS, "npc_encoder"):
        version_dir(repository, model)  # a clear "run maas build" before anything starts
    from maas.bench.compare import ray_available, start_fastapi, start_ray, stop_service
    from maas.server.config import free_ports

    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    config = ServerConfig.on_free_ports(repository)

    def baseline(start: Callable, log: str) -> Callable[[], AbstractContextManager[str]]:
        @contextlib.contextmanager
        def running() -> Iterator[str]:
            (port,) = free_ports(1)
            process = start(repository, port, folder / f"bench-npc-turns-{stamp}-{log}.log")
            try:
                yield f"127.0.0.1:{port}"
            finally:
                stop_service(process)

        return running

    baselines = {FASTAPI_ROW: baseline(start_fastapi, "fastapi")}
    if ray and ray_available():
        baselines[RAY_ROW] = baseline(start_ray, "ray")
    notes: list[str] = []
    with status("Installing perf_analyzer (once)"):
        missing = pa.install() if perf_analyzer else "perf_analyzer skipped (--no-perf-analyzer)"
    if missing:
        notes.append(missing)
    with status("Starting Triton"), TritonServer(config) as server:

        def referee(turns: list[tuple[str, list[str]]], clients: int, ours: float) -> dict:
            data = folder / f"perf-analyzer-{stamp}-npc-turn.json"
            pa.input_data([turn_tensors(said, lines) for said, lines in turns], data)
            found = pa.measure(config.http_url, "npc_turn", data, clients, seconds,
                               server.admin_headers)  # fmt: skip
            found["turns_per_s"] = found.pop("throughput")
            return {**found, "gap": pa.disagreement(ours, found["turns_per_s"])}

        report = run_npc_turns(
            repository,
            config.http_url,
            levels=levels,
            seconds=seconds,
            in_process_seconds=in_process_seconds,
            status=status,
            on_row=on_row,
            baselines=baselines,
            referee=None if missing else referee,
        )
    notes += pa.disagreement_notes(
        report["rows"], "turns_per_s", lambda r: f"{r['model']} at {r['clients']} clients"
    )
    report = {"machine": machine_description(), "seconds_per_point": seconds,
              "notes": notes, **report}  # fmt: skip
    path = folder / f"bench-npc-turns-{stamp}.json"
    path.write_text(json.dumps(report, indent=1) + "\n")
    return report, path
