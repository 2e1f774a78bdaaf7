"""One `maas bench` run from start to files: the in-process limit, Triton with and without
dynamic batching, the FastAPI and Ray Serve baselines; returns the report, the CLI prints it.

Progress goes through two callbacks so that the caller decides how it looks: `status(text)`
returns a context manager around each slow step, `on_row(row)` sees each measured point.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

from maas.bench import compare as b
from maas.bench import perf_analyzer as pa

Status = Callable[[str], AbstractContextManager]


@dataclass
class BenchRun:
    report: dict
    json_path: Path
    plot_path: Path
    notes: list[str]


def machine_description() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or "unknown CPU",
    )
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"


def run_bench(
    repository: Path,
    *,
    levels: list[int],
    seconds: float,
    in_process_seconds: float,
    folder: Path,
    tritonclient: bool = False,
    ray: bool = True,
    perf_analyzer: bool = True,
    status: Status = lambda _: contextlib.nullcontext(),
    on_row: Callable[[dict], None] = lambda _: None,
) -> BenchRun:
    from maas.server import ServerConfig, TritonServer
    from maas.server.config import free_ports

    folder.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    data = b.payloads()
    items = {"mnist": 1, "npc_dialogue": len(data.lines)}
    notes: list[str] = []
    with status("(a) in-process: the framework called directly"):
        limit = b.in_process(repository, data, in_process_seconds)
    report: dict = {
        "machine": machine_description(),
        "triton_client": "tritonclient.http" if tritonclient else "http.client",
        "in_process": {m: {"rows": r} for m, r in limit.items()},
    }
    served: list[dict] = []

    def measure(server: str, callers: dict) -> None:
        for model, make in callers.items():
            for level in levels:
                with status(f"{server}: {model}, {level} clients"):
                    row = {"model": model, "server": server,
                           **b.load(make, level, seconds, items[model])}  # fmt: skip
                served.append(row)
                on_row(row)

    # model control: the runs without batching reload models
    config = ServerConfig.on_free_ports(repository, model_control=True)
    with status("Installing perf_analyzer (once)"):
        missing = pa.install() if perf_analyzer else "perf_analyzer skipped (--no-perf-analyzer)"
    if missing:
        notes.append(missing)
    with status("Starting Triton"), TritonServer(config) as server:
        callers = b.triton_callers(config.http_url, data, tritonclient=tritonclient)
        measure("triton, dynamic batching", callers)
        image = folder / f"perf-analyzer-{stamp}-mnist.json"
        pa.input_data([{"IMAGE": data.image[None]}], image)
        for row in served if not missing else []:
            if row["model"] == "mnist" and row["server"] == "triton, dynamic batching":
                with status(f"perf_analyzer: mnist, {row['concurrency']} clients"):
                    found = pa.measure(config.http_url, "mnist", image, row["concurrency"],
                                       seconds, server.admin_headers)  # fmt: skip
                row["perf_analyzer"] = {**found,
                                        "gap": pa.disagreement(row["throughput"],
                                                               found["throughput"])}  # fmt: skip
        for model, make in callers.items():
            original = b.set_dynamic_batching(config.http_url, model, None, server.admin_headers)
            try:
                measure("triton, no batching", {model: make})
            finally:
                b.set_dynamic_batching(config.http_url, model, original, server.admin_headers)

    def measure_baseline(server: str, start, log: str, waiting: str) -> None:
        """FastAPI and Ray Serve share one JSON API, so one set of callers serves both."""
        (port,) = free_ports(1)
        with status(waiting):
            process = start(repository, port, folder / f"bench-{stamp}-{log}.log")
        try:
            measure(server, b.fastapi_callers(port, data))
        finally:
            b.stop_service(process)

    measure_baseline("fastapi + uvicorn", b.start_fastapi, "fastapi", "Starting FastAPI")
    if not ray:
        notes.append("Ray Serve skipped (--no-ray)")
    elif b.ray_available():
        measure_baseline(
            "ray serve, @serve.batch", b.start_ray, "ray", "Starting Ray Serve (takes a while)"
        )
    else:
        notes.append("Ray is not installed: Ray Serve skipped (pip install -e '.[bench]')")
    notes += pa.disagreement_notes(
        served, "throughput", lambda r: f"{r['model']} on {r['server']} at {r['concurrency']}"
    )
    report["served"] = b.with_ratios(served, report["in_process"])
    report["targets"] = b.targets(report, len(data.lines))
    path = folder / f"bench-{stamp}.json"
    path.write_text(json.dumps(report, indent=1) + "\n")
    picture = b.plot(report, folder / f"bench-{stamp}.png")
    return BenchRun(report, path, picture, notes)
