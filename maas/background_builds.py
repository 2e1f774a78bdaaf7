"""Models built while the game already runs: `./run.sh` on a fresh machine opens the game at
once instead of after twenty minutes of training logs.

Recipes run one after another (two cores: in parallel they only slow each other) as child
processes of `maas build`, each reporting where it stands through a small status file
(buildkit.report_status). The game's Triton runs with explicit model control: once a recipe
has written its versions, `loader` loads its models in the recipe's order (the models others
call first: npc_encoder before npc_turn). Polling would do it without the API, but it logs every
unbuilt model's failure every few seconds, and Triton 2.51 hangs a polled reload of npc_turn.
Stopping the game stops the builds.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from maas.buildkit import STATUS_ENV
from maas.paths import cache_root
from maas.recipes import models_of


@dataclass
class BuildState:
    recipe: str
    state: str = "waiting"  # waiting, building, loading, done, failed, stopped
    step: str = ""
    fraction: float | None = None
    log: Path | None = None
    load_error: str = ""  # built, but the server would not load it: why


class BackgroundBuilds:
    def __init__(
        self,
        repository: Path,
        recipes: list[str],
        log_dir: Path | None = None,
        *,
        quick: bool = False,  # the recipes' quick mode (tests)
        loader: Callable[[str], None] | None = None,  # loads one model; raises why not
    ) -> None:
        self.repository = repository
        self.quick = quick
        self.loader = loader
        self.states = {name: BuildState(name) for name in recipes}
        self.log_dir = log_dir or cache_root() / "logs"
        self._stop = threading.Event()
        self._process: subprocess.Popen | None = None
        self._thread = threading.Thread(target=self._run, name="background-builds", daemon=True)

    def start(self) -> BackgroundBuilds:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        from maas.server.supervisor import _die_with_parent  # forked from this thread: it waits

        for state in self.states.values():
            if self._stop.is_set():
                state.state = "stopped"
                continue
            status_file = self.log_dir / f"build-{state.recipe}-{os.getpid()}.status.json"
            state.log = self.log_dir / f"build-{state.recipe}-{os.getpid()}.log"
            state.state = "building"
            command = [sys.executable, "-m", "maas.cli", "build", state.recipe,
                       "--repository", str(self.repository)]  # fmt: skip
            if self.quick:
                command.append("--quick")
            env = {**os.environ, STATUS_ENV: str(status_file), "COLUMNS": "100"}
            with state.log.open("w") as log:
                self._process = subprocess.Popen(
                    command, stdout=log, stderr=subprocess.STDOUT, env=env,
                    start_new_session=True, preexec_fn=_die_with_parent,
                )  # fmt: skip
                while self._process.poll() is None:
                    self._read_status(state, status_file)
                    self._stop.wait(1.0)
                    if self._stop.is_set():
                        self._kill()
            code = self._process.returncode
            with contextlib.suppress(OSError):
                status_file.unlink()
            state.state = "stopped" if self._stop.is_set() else ("done" if code == 0 else "failed")
            if state.state == "done" and self.loader is not None:
                self._load(state)

    def _load(self, state: BuildState) -> None:
        state.state, state.fraction = "loading", None
        for model in models_of(state.recipe):
            if not (self.repository / model / "config.pbtxt").exists():
                continue  # a repository without it (the client picks what the server has)
            state.step = f"loading {model}"
            try:
                self.loader(model)  # type: ignore[misc]
            except Exception as error:  # the server's reason, shown in the status line
                state.state, state.load_error = "failed", str(error)
                return
        state.state, state.step = "done", ""

    def _read_status(self, state: BuildState, path: Path) -> None:
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(path.read_text())
            state.step, state.fraction = str(data.get("step", "")), data.get("fraction")

    def _kill(self) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def stop(self) -> None:
        self._stop.set()
        self._kill()
        if self._thread.is_alive():
            self._thread.join(timeout=30)

    @property
    def finished(self) -> bool:
        return all(s.state in ("done", "failed", "stopped") for s in self.states.values())

    def describe(self) -> str | None:
        """One line for the game's status bar; None once every build succeeded."""
        if all(s.state == "done" for s in self.states.values()):
            return None
        parts = []
        for state in self.states.values():
            if state.state == "building":
                step = state.step or "starting"
                parts.append(f"building {state.recipe}: {step}{_share(state.fraction)}")
            elif state.state == "loading":
                parts.append(f"{state.recipe} built, {state.step}")
            elif state.state == "failed" and state.load_error:
                parts.append(f"{state.recipe} built, but {state.load_error}")
            elif state.state == "failed":
                parts.append(f"{state.recipe} build failed (log: {state.log})")
            elif state.state != "done":
                parts.append(f"{state.recipe} {state.state}")
        return "; ".join(parts)

    def waiting_for(self, model: str) -> str | None:
        """Why `model` cannot answer yet, if a build still owes it."""
        for state in self.states.values():
            owed = state.state in ("waiting", "building", "loading")
            if model in models_of(state.recipe) and owed:
                if state.state == "waiting":
                    return f"{model} is queued for building (maas build {state.recipe})"
                step = state.step or "starting"
                return (
                    f"{model} is being built (maas build {state.recipe}: {step}"
                    f"{_share(state.fraction)})"
                )
        return None


def _share(fraction: float | None) -> str:
    """The whole build's progress, said as such: beside a step ("train epoch 2/3") a bare
    "64%" read as the step's."""
    return f" ({fraction:.0%} of the build)" if fraction is not None else ""
