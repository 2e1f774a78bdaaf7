"""A soak run's figures: failures, p99 per time window, and the server's resident memory.

The load test's players log every request (time, name, ms, failed) to a file; the windows and
their exact p99 are computed from it afterwards. Memory is the summed RSS of tritonserver and
its backend stubs (its process group), when the server runs on this machine.
"""

from __future__ import annotations

import csv
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

P99_DRIFT_LIMIT = 1.2  # last window's p99 within 20% of the second window's
MEMORY_GROWTH_LIMIT = 0.10  # after warm-up (the first window)
_DURATION = re.compile(r"(\d+)\s*([hms])")


def parse_duration_s(text: str) -> float:
    """Locust's run-time spelling (30s, 10m, 1h30m; a bare number is seconds) in seconds."""
    text = text.strip().lower()
    if text.isdigit():
        return float(text)
    parts = _DURATION.findall(text)
    if not parts or "".join(f"{n}{u}" for n, u in parts) != text.replace(" ", ""):
        raise ValueError(f"{text!r} is not a duration like 30s, 10m or 1h30m")
    return float(sum(int(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts))


def window_s(duration_s: float) -> float:
    """Minutes for a real soak; sixths of the run for a short (CI) one."""
    return 60.0 if duration_s >= 180 else max(duration_s / 6, 1.0)


@dataclass
class Window:
    start_s: float
    requests: int
    failures: int
    p99_ms: float | None


def windows(request_log: Path, started: float, length_s: float) -> list[Window]:
    """Per-window request counts, failures and exact p99 from the players' request log."""
    rows: dict[int, list[tuple[float, bool]]] = {}
    with request_log.open(newline="") as handle:
        for stamp, _name, ms, failed in csv.reader(handle):
            index = int((float(stamp) - started) // length_s)
            rows.setdefault(max(index, 0), []).append((float(ms), failed == "1"))
    found = []
    for index in range(max(rows, default=-1) + 1):
        entries = rows.get(index, [])
        times = [ms for ms, failed in entries if not failed]
        found.append(
            Window(
                start_s=index * length_s,
                requests=len(entries),
                failures=sum(failed for _, failed in entries),
                p99_ms=float(np.percentile(times, 99)) if times else None,
            )
        )
    return found


def server_group(port: int) -> int | None:
    """The process group of the tritonserver listening on `port` here, if any."""
    import psutil

    try:
        connections = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:
        return None
    for connection in connections:
        address = connection.laddr
        if address and address.port == port and connection.status == "LISTEN" and connection.pid:
            try:
                return os.getpgid(connection.pid)
            except ProcessLookupError:
                return None
    return None


def group_rss_mb(pgid: int) -> float:
    import psutil

    from maas.server.process_group import group_members

    total = 0
    for pid in group_members(pgid):
        try:
            total += psutil.Process(pid).memory_info().rss
        except psutil.Error:
            continue
    return total / 2**20


@dataclass
class MemorySampler:
    """Samples the server group's RSS every `every_s` in a thread while the load runs."""

    pgid: int
    every_s: float = 2.0
    samples: list[tuple[float, float]] = field(default_factory=list)  # (monotonic, MB)
    _stop: threading.Event = field(default_factory=threading.Event)

    def __enter__(self) -> MemorySampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.monotonic(), group_rss_mb(self.pgid)))
            self._stop.wait(self.every_s)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def growth(self, started: float, warm_up_s: float) -> tuple[float, float] | None:
        """(MB at the end of warm-up, MB at the end)."""
        after = [mb for t, mb in self.samples if t - started >= warm_up_s]
        return (after[0], after[-1]) if len(after) >= 2 else None


@dataclass
class SoakVerdict:
    target: str
    value: str
    met: bool | None  # None: not measurable here


def judge(found: list[Window], memory: tuple[float, float] | None) -> list[SoakVerdict]:
    failures = sum(w.failures for w in found)
    verdicts = [SoakVerdict("0 failed requests", str(failures), failures == 0)]
    complete = found[:-1] if len(found) > 2 else found  # the last window may be cut short
    if len(complete) >= 3 and complete[1].p99_ms and complete[-1].p99_ms:
        ratio = complete[-1].p99_ms / complete[1].p99_ms
        verdicts.append(
            SoakVerdict(
                f"last window p99 <= {P99_DRIFT_LIMIT:.1f}x the second's",
                f"{complete[-1].p99_ms:.0f} / {complete[1].p99_ms:.0f} ms = {ratio:.2f}x",
                ratio <= P99_DRIFT_LIMIT,
            )
        )
    else:
        verdicts.append(SoakVerdict("p99 drift", "too few windows", None))
    if memory is None:
        verdicts.append(SoakVerdict("memory growth", "server not on this machine", None))
    else:
        before, after = memory
        growth = (after - before) / before if before else 0.0
        verdicts.append(
            SoakVerdict(
                f"server RSS growth after warm-up < {MEMORY_GROWTH_LIMIT:.0%}",
                f"{before:.0f} -> {after:.0f} MB ({growth:+.1%})",
                growth < MEMORY_GROWTH_LIMIT,
            )
        )
    return verdicts
