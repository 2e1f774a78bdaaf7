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
WARMUP_ANSWERS = 3
WARMUP_LIMIT_S = 60.0


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
    """Run `concurrency` workers; only the timed window is reported.

    The window opens after `warmup_s` and once every worker has had WARMUP_ANSWERS successful
    answers (a model just loaded takes seconds over its first calls; TorchScript optimizes on
    its second), or after WARMUP_LIMIT_S at the latest, so that a failing server is measured
    (as errors) rather than waited for.
    """
    calls = [make_call() for _ in range(concurrency)]
    latencies: list[list[float]] = [[] for _ in range(concurrency)]
    errors = [0] * concurrency
    start_barrier = threading.Barrier(concurrency + 1)
    answered = threading.Semaphore(0)
    never = float("inf")
    state = {"measure_from": never, "stop_at": never, "give_up_at": never}

    def worker(index: int) -> None:
        call = calls[index]
        unanswered = WARMUP_ANSWERS
        start_barrier.wait()
        while True:
            began = time.perf_counter()
            # A window in which no call began would report nothing: on a busy machine one call
            # can outlast a short window, so it stays open until some call is measured.
            if began >= state["stop_at"] and (any(latencies) or began >= state["give_up_at"]):
                return
            try:
                call()
            except Exception:  # counted: a load test reports errors, it does not stop on them
                if began >= state["measure_from"]:
                    errors[index] += 1
                continue
            unanswered -= 1
            if unanswered == 0:
                answered.release()
            if began >= state["measure_from"]:
                latencies[index].append(time.perf_counter() - began)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    start_barrier.wait()
    time.sleep(warmup_s)
    deadline = time.perf_counter() + WARMUP_LIMIT_S
    for _ in range(concurrency):
        if not answered.acquire(timeout=max(0.0, deadline - time.perf_counter())):
            break
    now = time.perf_counter()
    state["give_up_at"] = now + duration_s + WARMUP_LIMIT_S
    state["stop_at"] = now + duration_s
    state["measure_from"] = now
    cpu_before = _cpu_seconds()
    for thread in threads:
        thread.join()
    cpu_used = _cpu_seconds() - cpu_before
    # Calls that began inside the window are counted whole: the window is as long as they took.
    elapsed = time.perf_counter() - now
    flat = np.array([x for per in latencies for x in per])
    return LoadResult(
        concurrency=concurrency,
        duration_s=max(duration_s, elapsed),
        requests=len(flat),
        errors=sum(errors),
        latencies_s=flat,
        client_cpu_s=cpu_used,
        items_per_request=items_per_request,
    )


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
