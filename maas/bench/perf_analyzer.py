"""NVIDIA's perf_analyzer as a referee beside `maas bench`'s own generator: the same model,
concurrency and requests in the same run, so a figure that only our generator produces shows.

perf_analyzer 2.51.0 comes from the tritonclient 2.51.0 wheel through scripts/perf_analyzer.sh
(pinned, installed once into the cache). It reads Triton's statistics, which `maas serve` puts
behind the admin key, so the key goes in as a header. Each point is three measurement windows of
a third of the seconds our generator gets, and always ends (the stability check is loosened:
the windows are reported, not retried).
"""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import numpy as np

from maas.errors import MaasError
from maas.paths import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "scripts" / "perf_analyzer.sh"
DISAGREEMENT = 0.10  # more than this relative gap in throughput is reported


def input_data(requests: list[dict[str, np.ndarray]], path: Path) -> Path:
    """perf_analyzer's --input-data file: one step per request (each of batch 1), tensors
    without the batch dimension; strings as text."""

    def tensor(value: np.ndarray) -> dict:
        if len(value) != 1:
            raise MaasError(f"perf_analyzer steps are batch 1 here, not {len(value)}")
        item = value[0]
        flat = item.reshape(-1)
        content = (
            [v.decode() if isinstance(v, bytes) else str(v) for v in flat]
            if item.dtype == object
            else flat.tolist()
        )
        return {"content": content, "shape": list(item.shape)}

    steps = [{name: tensor(value) for name, value in request.items()} for request in requests]
    path.write_text(json.dumps({"data": steps}))
    return path


def measure(
    url: str,
    model: str,
    data: Path,
    clients: int,
    seconds: float,
    headers: dict[str, str],
) -> dict:
    """One point: inferences/s (requests x batch), p50 and p99 in ms, as perf_analyzer saw."""
    report = data.with_suffix(f".c{clients}.csv")
    window_ms = max(200, int(seconds * 1000 / 3))
    command = [
        str(SCRIPT), "-m", model, "-u", url, "-i", "http",
        "--concurrency-range", str(clients), "--measurement-interval", str(window_ms),
        "--max-trials", "3", "--stability-percentage", "999", "--input-data", str(data),
        "-f", str(report),
    ]  # fmt: skip
    for name, value in headers.items():
        command += ["-H", f"{name}:{value}"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120 + 6 * seconds)
    except subprocess.TimeoutExpired:
        raise MaasError(f"perf_analyzer on {model} at {clients} clients did not finish") from None
    if done.returncode != 0 or not report.exists():
        said = (done.stderr.strip() or done.stdout.strip()).splitlines()[-3:]
        raise MaasError(f"perf_analyzer on {model} failed: {' / '.join(said)}")
    with report.open() as file:
        row = next(csv.DictReader(file))
    return {
        "throughput": round(float(row["Inferences/Second"]), 1),
        "p50_ms": round(int(row["p50 latency"]) / 1000, 2),
        "p99_ms": round(int(row["p99 latency"]) / 1000, 2),
    }


def install() -> str | None:
    """None when perf_analyzer runs (installing it on first use), else why not."""
    try:
        done = subprocess.run(
            [str(SCRIPT), "--version"], capture_output=True, text=True, timeout=600
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"perf_analyzer could not start: {error}"
    if "Perf Analyzer Version" not in done.stdout + done.stderr:
        said = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:]
        return f"perf_analyzer is unavailable: {' '.join(said) or 'no version printed'}"
    return None


def disagreement(ours: float, theirs: float) -> float | None:
    """Relative gap of perf_analyzer's throughput to ours (None: ours is zero)."""
    return round(theirs / ours - 1, 3) if ours else None


def disagreement_notes(rows: list[dict], key: str, label: str) -> list[str]:
    """A line for each point where the two generators differ by more than DISAGREEMENT."""
    return [
        f"{label(row)}: perf_analyzer {row['perf_analyzer'][key]:g} against ours "
        f"{row[key]:g} ({row['perf_analyzer']['gap']:+.0%})"
        for row in rows
        if row.get("perf_analyzer") and abs(row["perf_analyzer"]["gap"] or 0) > DISAGREEMENT
    ]
