"""The closed-loop generator behind `maas bench` and `maas tune-batching`: what its window
counts. Plain callables stand in for a server here; the served paths are measured in
test_bench.py against a real Triton."""

from __future__ import annotations

import time

from maas.bench import loadgen
from maas.bench.loadgen import run_closed_loop


def test_slow_first_answers_stay_out_of_the_window():
    def make():
        answered = {"n": 0}

        def call() -> None:  # a just-loaded model: two slow answers, then fast ones
            answered["n"] += 1
            time.sleep(0.3 if answered["n"] <= 2 else 0.002)

        return call

    result = run_closed_loop(make, concurrency=3, duration_s=0.4, warmup_s=0.0)
    assert result.requests > 30 and result.errors == 0
    assert result.latencies_s.max() < 0.25, "a warm-up answer was measured"


def test_a_failing_server_is_measured_as_errors_not_waited_for(monkeypatch):
    monkeypatch.setattr(loadgen, "WARMUP_LIMIT_S", 0.3)

    def make():
        def call() -> None:
            time.sleep(0.01)
            raise ConnectionRefusedError("nobody listens")

        return call

    began = time.perf_counter()
    result = run_closed_loop(make, concurrency=2, duration_s=0.3, warmup_s=0.1)
    assert time.perf_counter() - began < 5
    assert result.requests == 0 and result.errors > 10


def test_a_call_longer_than_the_window_is_still_measured():
    """A busy machine: every call outlasts the window. The window waits for one and reports
    its real length instead of zero throughput."""

    def make():
        def call() -> None:
            time.sleep(0.3)

        return call

    result = run_closed_loop(make, concurrency=1, duration_s=0.05, warmup_s=0.0)
    assert result.requests >= 1 and result.errors == 0
    assert 0 < result.throughput <= 1 / 0.3 + 0.5
    assert result.duration_s >= 0.3
