"""A closed-loop load generator: N workers, each sends a request as soon as its last returns.

Used by `maas tune-batching` (and later `maas bench`) so every figure comes from the same
process design. Each worker owns its client (tritonclient.http is not thread-safe). The
generator's own CPU use is measured, because on a 2-core machine it competes with the server.
"""

from __future__ import annotations

import resource
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Call = Callable[[], None]


@dataclass(frozen=True, kw_only=True)
class LoadResult:
    concurrency: int
    duration_s: float
    requests: int
    errors: int
    latencies_s: np.ndarray
    client_cpu_s: float
    items_per_request: int = 1

    @property
    def throughput(self) -> float:
        """Items (images, pairs) per second."""
        return self.requests * self.items_per_request / self.duration_s

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies_s, q) * 1e3) if len(self.latencies_s) else 0.0

    @property
    def client_cpu_share(self) -> float:
        """The generator's CPU time over wall time: 1.0 is one full core."""
        return self.client_cpu_s / self.duration_s

    def summary(self) -> dict[str, float | int]:
        return {
            "concurrency": self.concurrency,
            "requests": self.requests,
            "errors": self.errors,
            "throughput": round(self.throughput, 1),
            "p50_ms": round(self.percentile_ms(50), 2),
            "p95_ms": round(self.percentile_ms(95), 2),
            "p99_ms": round(self.percentile_ms(99), 2),
            "client_cpu_cores": round(self.client_cpu_share, 2),
        }


def run_closed_loop(
    make_call: Callable[[], Call],
    *,
    concurrency: int,
    duration_s: float,
    warmup_s: float = 1.0,
    items_per_request: int = 1,
) -> LoadResult:
    """Run `concurrency` workers for warmup + duration; only the timed window is reported."""
    calls = [make_call() for _ in range(concurrency)]
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    start_barrier = threading.Barrier(concurrency + 1)
    state = {"measure_from": 0.0, "stop_at": 0.0}

    def worker(index: int) -> None:
        call = calls[index]
        start_barrier.wait()
        while True:
            began = time.perf_counter()
            if began >= state["stop_at"]:
                return
            try:
                call()
            except Exception:  # counted: a load test reports errors, it does not stop on them
                if began >= state["measure_from"]:
                    errors[index] += 1
                continue
            if began >= state["measure_from"]:
                latencies[index].append(time.perf_counter() - began)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    now = time.perf_counter()
    state["measure_from"] = now + warmup_s
    state["stop_at"] = now + warmup_s + duration_s
    start_barrier.wait()
    time.sleep(warmup_s)
    cpu_before = _cpu_seconds()
    for thread in threads:
        thread.join()
    cpu_used = _cpu_seconds() - cpu_before
    flat = np.array([x for per in latencies for x in per])
    return LoadResult(
        concurrency=concurrency,
        duration_s=duration_s,
        requests=len(flat),
        errors=sum(errors),
        latencies_s=flat,
        client_cpu_s=cpu_used,
        items_per_request=items_per_request,
    )


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
