"""One `maas loadtest` run: Locust headless in a subprocess against a server, its CSV read back,
and with `soak` the per-window figures and the server's memory growth judged. Returns data;
the CLI prints it."""

from __future__ import annotations

import contextlib
import csv
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from maas.bench import soak as soak_lib
from maas.errors import MaasError
from maas.paths import PROJECT_ROOT

LOCUSTFILE = PROJECT_ROOT / "loadtest" / "locustfile.py"


@dataclass
class SoakResult:
    window_s: float
    windows: list[soak_lib.Window]
    verdicts: list[soak_lib.SoakVerdict]


@dataclass
class LocustRun:
    stats: list[dict[str, str]]  # Locust's stats CSV rows, the "Aggregated" one last
    prefix: Path  # <prefix>.html, <prefix>_*.csv
    log: Path
    returncode: int
    soak: SoakResult | None


def run_locust(
    address: str,
    *,
    users: int,
    spawn_rate: float,
    duration: str,
    think_time: bool,
    folder: Path,
    soak: bool = False,
    on_tick: Callable[[float], None] = lambda _: None,
) -> LocustRun:
    """Ctrl-C stops Locust early; it still writes its reports, which are read as usual."""
    duration_s = soak_lib.parse_duration_s(duration)  # ValueError names the mistake
    folder.mkdir(parents=True, exist_ok=True)
    prefix = folder / f"loadtest-{time.strftime('%Y%m%d-%H%M%S')}"
    command = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE),
        "--headless", "--host", f"http://{address}", "--users", str(users),
        "--spawn-rate", str(spawn_rate), "--run-time", duration, "--html", f"{prefix}.html",
        "--csv", str(prefix), "--only-summary", "--loglevel", "WARNING",
    ]  # fmt: skip
    env = {**os.environ, "MAAS_THINK_TIME": "1" if think_time else "0"}
    request_log = Path(f"{prefix}_requests.csv")
    if soak:
        env["MAAS_REQUEST_LOG"] = str(request_log)
    pgid = soak_lib.server_group(int(address.rsplit(":", 1)[1])) if soak else None
    sampler = soak_lib.MemorySampler(pgid) if pgid is not None else contextlib.nullcontext()
    log = Path(f"{prefix}.log")
    started, started_wall = time.monotonic(), time.time()
    with log.open("w") as out, sampler:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            while process.poll() is None:
                on_tick(time.monotonic() - started)
                time.sleep(0.5)
        except KeyboardInterrupt:  # stop early, still report what was measured
            process.send_signal(signal.SIGINT)
            process.wait(timeout=60)
    stats_path = Path(f"{prefix}_stats.csv")
    if not stats_path.exists():
        raise MaasError(
            f"Locust did not finish (exit code {process.returncode}); its output is in {log}"
        )
    with stats_path.open() as handle:
        stats = list(csv.DictReader(handle))
    judged = None
    if soak:
        if not request_log.exists():
            raise MaasError(f"the players wrote no request log ({request_log})")
        length = soak_lib.window_s(duration_s)
        found = soak_lib.windows(request_log, started_wall, length)
        memory = sampler.growth(started, length) if hasattr(sampler, "growth") else None
        judged = SoakResult(length, found, soak_lib.judge(found, memory))
    return LocustRun(stats, prefix, log, process.returncode, judged)
