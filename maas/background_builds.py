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


@dataclass(frozen=True)
class BuildJob:
    """One `maas build` run in the background and what follows it."""

    recipe: str
    args: tuple[str, ...] = ()  # more of `maas build`'s options
    label: str = ""  # what the status line calls it (default: the recipe)
    owes_models: bool = True  # False: the models already serve; this build improves them
    nice: int = 0  # added CPU niceness: an improvement must not slow the game down
    stop_grace_s: float = 10.0  # SIGTERM to SIGKILL: time to save a checkpoint
    # after a successful build, instead of loading each model of the recipe: (the state, whose
    # step it may set) -> the line the game says once it is done; raises why it failed
    publish: Callable[[BuildState], str] | None = None
    repository: Path | None = None  # where it builds (default: the served repository)
    prepare: Callable[[], None] | None = None  # just before the build starts

    @property
    def name(self) -> str:
        return self.label or self.recipe


@dataclass
class BuildState:
    recipe: str
    job: BuildJob | None = None
    state: str = "waiting"  # waiting, building, loading, done, failed, stopped
    step: str = ""
    fraction: float | None = None
    log: Path | None = None
    load_error: str = ""  # built, but the server would not load it: why


class BackgroundBuilds:
    def __init__(
        self,
        repository: Path,
        recipes: list[str | BuildJob],
        log_dir: Path | None = None,
        *,
        quick: bool = False,  # the recipes' quick mode (tests)
        loader: Callable[[str], None] | None = None,  # loads one model; raises why not
    ) -> None:
        self.repository = repository
        self.quick = quick
        self.loader = loader
        jobs = [j if isinstance(j, BuildJob) else BuildJob(j) for j in recipes]
        self.states = {job.name: BuildState(job.recipe, job) for job in jobs}
        self._news: list[str] = []  # lines the game says once (an upgrade arrived)
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
            job = state.job or BuildJob(state.recipe)
            if self._stop.is_set():
                state.state = "stopped"
                continue
            if job.prepare is not None:
                try:
                    job.prepare()
                except Exception as error:  # said in the status line; the next job runs
                    state.state, state.step = "failed", f"could not start: {error}"
                    continue
            slug = state.recipe + ("-upgrade" if not job.owes_models else "")
            status_file = self.log_dir / f"build-{slug}-{os.getpid()}.status.json"
            state.log = self.log_dir / f"build-{slug}-{os.getpid()}.log"
            state.state = "building"
            target = job.repository or self.repository
            command = [sys.executable, "-m", "maas.cli", "build", state.recipe,
                       "--repository", str(target), *job.args]  # fmt: skip
            if self.quick:
                command.append("--quick")
            env = {**os.environ, STATUS_ENV: str(status_file), "COLUMNS": "100"}

            def start_child(nice: int = job.nice) -> None:
                _die_with_parent()
                if nice:
                    os.nice(nice)

            with state.log.open("w") as log:
                self._process = subprocess.Popen(
                    command, stdout=log, stderr=subprocess.STDOUT, env=env,
                    start_new_session=True, preexec_fn=start_child,
                )  # fmt: skip
                while self._process.poll() is None:
                    self._read_status(state, status_file)
                    self._stop.wait(1.0)
                    if self._stop.is_set():
                        self._kill(job.stop_grace_s)
            code = self._process.returncode
            with contextlib.suppress(OSError):
                status_file.unlink()
            state.state = "stopped" if self._stop.is_set() else ("done" if code == 0 else "failed")
            if state.state == "done" and job.publish is not None:
                self._publish(state, job.publish)
            elif state.state == "done" and self.loader is not None:
                self._load(state)

    def _publish(self, state: BuildState, publish: Callable[[BuildState], str]) -> None:
        state.state, state.fraction, state.step = "loading", None, "publishing"
        try:
            news = publish(state)
        except Exception as error:  # the reason, shown in the status line; the old serves
            state.state, state.load_error = "failed", str(error)
            return
        state.state, state.step = "done", ""
        if news:
            self._news.append(news)

    def news(self) -> list[str]:
        """What happened since the last call that the player should hear about, once."""
        taken, self._news = self._news, []
        return taken

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

    def _kill(self, grace_s: float = 10.0) -> None:
        process = self._process
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():  # the build thread stops its child, with the job's grace
            self._thread.join(timeout=max(s.job.stop_grace_s for s in self.states.values()) + 20)
        self._kill()

    @property
    def finished(self) -> bool:
        return all(s.state in ("done", "failed", "stopped") for s in self.states.values())

    def describe(self) -> str | None:
        """One line for the game's status bar; None once every build succeeded."""
        if all(s.state == "done" for s in self.states.values()):
            return None
        parts = []
        for name, state in self.states.items():
            if state.state == "building":
                step = state.step or "starting"
                parts.append(f"building {name}: {step}{_share(state.fraction)}")
            elif state.state == "loading":
                parts.append(f"{name} built, {state.step}")
            elif state.state == "failed" and state.load_error:
                parts.append(f"{name} built, but {state.load_error}")
            elif state.state == "failed" and state.log is None:
                parts.append(f"{name} {state.step}")
            elif state.state == "failed":
                parts.append(f"{name} build failed (log: {state.log})")
            elif state.state != "done":
                parts.append(f"{name} {state.state}")
        return "; ".join(parts)

    def waiting_for(self, model: str) -> str | None:
        """Why `model` cannot answer yet, if a build still owes it."""
        for state in self.states.values():
            if state.job is not None and not state.job.owes_models:
                continue  # an improvement: the models serve meanwhile
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
