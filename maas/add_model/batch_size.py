"""The default max_batch_size of an added model, from measurement rather than Triton's
auto-complete minimum (4), which refused a user's own 5-row example.

The rule (printed with its figures): run the model in-process at 1, 2, 4 ... rows and keep
doubling while a doubled batch still gives at least GAIN more rows per second and one call stays
within LATENCY_BUDGET_S; the largest such size is where the dynamic batcher still buys
throughput. Never below the rows the user validated with, so their example is served as given.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

SIZES = (1, 2, 4, 8, 16, 32, 64, 128)
GAIN = 1.10  # a doubled batch must bring 10% more rows/s to be worth the queueing
LATENCY_BUDGET_S = 0.1  # one merged call longer than this stalls every player in it
MEASURE_S = 0.15  # timing per size (best of the calls made in it, at least 2)


@dataclass(frozen=True)
class BatchChoice:
    size: int
    why: str


def rows_of(array: np.ndarray, count: int) -> np.ndarray:
    """`count` rows, the array's repeated as often as needed."""
    reps = -(-count // len(array))
    return np.concatenate([array] * reps)[:count]


def _seconds_per_call(run: Callable[[dict[str, np.ndarray]], object], inputs) -> float:
    run(inputs)  # warm-up: first calls allocate and (TorchScript) optimise
    best, spent, calls = float("inf"), 0.0, 0
    while calls < 2 or spent < MEASURE_S:
        start = time.perf_counter()
        run(inputs)
        took = time.perf_counter() - start
        best, spent, calls = min(best, took), spent + took, calls + 1
        if calls >= 20:
            break
    return best


def choose_max_batch_size(
    run: Callable[[dict[str, np.ndarray]], object],
    sample: dict[str, np.ndarray],
    floor: int,
) -> BatchChoice:
    """`run` calls the model on a batch; `sample` holds rows to repeat; `floor` rows must fit."""
    rates: dict[int, float] = {}
    stop = ""
    for size in SIZES:
        try:
            took = _seconds_per_call(run, {k: rows_of(v, size) for k, v in sample.items()})
        except Exception:  # a size the model cannot run ends the search
            stop = f"it failed at {size} rows"
            break
        if took > LATENCY_BUDGET_S and rates:
            budget = LATENCY_BUDGET_S * 1000
            stop = f"{size} rows take {took * 1000:.0f} ms a call (budget {budget:.0f})"
            break
        rates[size] = size / took
        previous = rates.get(size // 2)
        if previous is not None and rates[size] < GAIN * previous:
            stop = f"{size} rows gain {rates[size] / previous - 1:+.0%} rows/s"
            del rates[size]
            break
    if not rates:
        return BatchChoice(floor, f"not measured ({stop}); the {floor} rows it was checked with")
    picked = max(rates)
    figures = f"{rates[1]:,.0f} rows/s at 1, {rates[picked]:,.0f} at {picked}"
    why = f"measured in-process: {figures}; " + (stop or f"{picked} is the largest size tried")
    if floor > picked:
        why += f"; raised to the {floor} rows it was checked with"
    return BatchChoice(max(picked, floor), why)
