"""Running the real `maas` command as a user would (a subprocess), with a wide terminal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

MAAS = [sys.executable, "-m", "maas.cli"]


def maas(
    *args: str,
    timeout: float = 600,
    stdin: str | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [*MAAS, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        input=stdin,
        cwd=cwd,
    )
