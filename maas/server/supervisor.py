"""A supervised tritonserver process: start, wait until every model is ready, stop cleanly.

Triton runs in its own process group so that one signal reaches it and the Python backend
stubs it spawns; it also dies with us (PR_SET_PDEATHSIG), so no stub outlives a crashed parent.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import json
import os
import re
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from maas.errors import ModelLoadError, PortInUseError, ServerStartError
from maas.paths import cache_root, latest_version_dir
from maas.recipes import recipe_for
from maas.server.backend_dir import assemble_backend_dir
from maas.server.config import ServerConfig
from maas.server.stub_watch import StubWatch
from maas.server.triton_paths import find_triton
from maas_client.admin_key import find_or_create_key, grpc_headers, headers

POLL_INTERVAL_S = 0.25
HEAL_GRACE_S = 2.0
LOG_TAIL_LINES = 200
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True, kw_only=True)
class ModelState:
    name: str
    version: str
    state: str
    reason: str


_STUB_CANNOT_START = "triton_python_backend_stub: error while loading shared libraries"
_LOAD_FAILURE = re.compile(
    r"failed to load (?:model )?'(?P<name>[^']+)'(?: version \d+)?: (?P<reason>.+?)\"?$"
)


def clean_reason(reason: str) -> str:
    """Triton's reason without the Python stack ("At: ...") the stub appends to exceptions."""
    reason = reason.split("\\n\\nAt:")[0].split("\n\nAt:")[0].strip()
    return reason.removeprefix("Internal: TritonModelException: ")


_LIBC = ctypes.CDLL("libc.so.6", use_errno=True)  # loaded here: the forked child only calls it
# Forks tritonserver; lives as long as this process (PR_SET_PDEATHSIG follows the forking thread).
_SPAWNER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="triton-spawner")


def _die_with_parent() -> None:
    # SIGKILL, not SIGTERM: a Triton with a hung model never finishes its graceful exit, and
    # nobody is left to wait for one. Its stubs follow it (tests/test_processes.py).
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as error:
            raise PortInUseError(
                f"cannot listen on {host}:{port} ({error.strerror}); is another server running? "
                "Check it with `maas status`, or pick other ports with --http-port/--grpc-port/"
                "--metrics-port."
            ) from None


def _unbuilt_hint(repository: Path, name: str) -> str:
    model_dir = repository / name
    if model_dir.is_dir() and latest_version_dir(model_dir) is None:
        if name in DERIVABLE and latest_version_dir(repository / "npc_bert") is not None:
            return (
                " (no version folder yet: `maas build npc --derive` makes it from the npc_bert "
                "you have, in seconds)"
            )
        return f" (no version folder yet: build it with `maas build {recipe_for(name)}`)"
    return ""


DERIVABLE = ("npc_encoder", "npc_turn")  # a repository built before npc_turn existed


class TritonServer:
    """One tritonserver child process; use as a context manager or call start()/stop()."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self._process: subprocess.Popen[bytes] | None = None
        self._log_tail: collections.deque[str] = collections.deque(maxlen=LOG_TAIL_LINES)
        self._log_thread: threading.Thread | None = None
        self.exited = threading.Event()  # set once this run of tritonserver exited, reaped
        self._closed = threading.Event()  # close(): no further (re)start, a waiting start ends
        self._stopping = threading.Lock()  # close() and a failed start may stop at once
        self._restarting = threading.Lock()
        self._watch: StubWatch | None = None
        self.heals: list[str] = []  # what the stub watch repaired, for the owner to show
        self._log_file: IO[str] | None = None
        self.log_path = config.log_file or self._default_log_path()
        self.startup_s: float | None = None
        self.key_file: Path | None = None  # where the admin key came from (None: given or env)

    def _default_log_path(self) -> Path:
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        return cache_root() / "logs" / f"triton-{self.config.http_port}-{stamp}.log"

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def admin_headers(self) -> dict[str, str]:
        """What a client sends to reach the admin APIs of this server."""
        return headers(self.config.admin_key)

    @property
    def admin_grpc_headers(self) -> dict[str, str]:
        return grpc_headers(self.config.admin_key)

    def start(self) -> None:
        if self._closed.is_set():
            raise ServerStartError("the server was closed; it is not started again")
        if self.config.admin_key is None:
            key, self.key_file = find_or_create_key()
            self.config = replace(self.config, admin_key=key)
        cfg = self.config
        if not cfg.repository.is_dir():
            raise ServerStartError(f"model repository {cfg.repository} is not a directory")
        for port in (cfg.http_port, cfg.grpc_port, cfg.metrics_port):
            check_port_free(cfg.host, port)
        install = find_triton()
        backend_dir = assemble_backend_dir(install)
        # The key reaches Triton on its command line only: model code in the stubs inherits
        # this environment, and has no business with the key a container passed us in it.
        env = {k: v for k, v in os.environ.items() if k != "MAAS_ADMIN_KEY"}
        # The Python backend stub finds packages through the first python3 on PATH.
        env["PATH"] = f"{Path(sys.prefix) / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        # The wheel's own libraries, and the directory holding this Python's libpython, which
        # the stub links against (pyenv and other self-built Pythons keep it off the loader path).
        libpython_dir = sysconfig.get_config_var("LIBDIR") or ""
        env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p
            for p in (str(install.library_dir), libpython_dir, env.get("LD_LIBRARY_PATH", ""))
            if p
        )
        try:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            # A restart appends: the log of the run that died stays readable.
            self._log_file = self.log_path.open("a" if self._process else "w", encoding="utf-8")
        except OSError as error:
            raise ServerStartError(f"cannot write the log file {self.log_path}: {error}") from None
        started = time.monotonic()
        try:
            # PR_SET_PDEATHSIG fires when the *thread* that forked exits: fork from a thread
            # that lives as long as this process, not from the caller's (maybe a worker's).
            self._process = _SPAWNER.submit(
                subprocess.Popen,
                [str(install.binary), *cfg.arguments(backend_dir)],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            ).result()
        except OSError as error:
            self._log_file.close()
            raise ServerStartError(f"cannot start {install.binary}: {error}") from None
        self.exited = threading.Event()  # one per run: an old reaper cannot mark the new one
        threading.Thread(target=self._reap, args=(self._process, self.exited), daemon=True).start()
        self._log_thread = threading.Thread(target=self._pump_log, daemon=True)
        self._log_thread.start()
        try:
            self._wait_until_ready(started + cfg.startup_timeout_s)
        except BaseException:
            self.stop()
            raise
        self.startup_s = time.monotonic() - started
        # see stub_watch: only without (re)loads does a vanished stub mean a death
        if not cfg.model_control and cfg.poll_s is None:
            self._watch = StubWatch(self._process.pid, self._still_ready, self._stub_lost)
            self._watch.start()

    def _still_ready(self, model: str) -> bool:
        try:
            return any(m.name == model and m.state == "READY" for m in self.model_states())
        except (OSError, ValueError):
            return False

    def _stub_lost(self, model: str) -> None:
        """A stub died and Triton will not bring it back: restart Triton (the watch thread)."""
        if self._closed.is_set():
            return
        started = time.monotonic()
        message = f"the backend stub of '{model}' died; Triton was restarted"
        self._append_log(f"maas: {message}")
        try:
            self.restart(grace_s=HEAL_GRACE_S)  # broken already: no 30 s wait for in-flight work
        except Exception as error:  # reported to the owner; the server stays down
            self.heals.append(f"{message}, but it did not come back: {error}")
            return
        self.heals.append(f"{message} in {time.monotonic() - started:.1f} s")

    def _append_log(self, line: str) -> None:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            self._log_file.write(line + "\n")
            self._log_file.flush()

    @property
    def restarting(self) -> bool:
        return self._restarting.locked()

    def _reap(self, process: subprocess.Popen[bytes], exited: threading.Event) -> None:
        """Wait for tritonserver however it ends (SIGKILL, OOM killer, crash): reaping it leaves
        no zombie (the stubs watch their parent, and a zombie still looks alive to them), and
        its process group, where the stubs live, is killed with it at once."""
        process.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        exited.set()

    def _pump_log(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for raw in self._process.stdout:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self._log_tail.append(line)
            if self._log_file is not None:
                self._log_file.write(line + "\n")
                self._log_file.flush()
            if self.config.verbose:
                print(line, file=sys.stderr, flush=True)

    def _wait_until_ready(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if self._closed.is_set():
                raise ServerStartError("the server was closed while it was starting")
            fatal = next((ln for ln in list(self._log_tail) if _STUB_CANNOT_START in ln), None)
            if fatal:  # Triton would wait for the stub for minutes; the cause is already known
                raise ServerStartError(
                    "the Python backend stub cannot start: "
                    f"{fatal.split(': ', 1)[-1]} (the stub needs the shared libpython of the "
                    f"Python running maas; see {self.log_path})"
                )
            if self._process is None or self._process.poll() is not None:
                raise ServerStartError(
                    f"tritonserver exited with code {self.returncode} before it was ready. "
                    f"Last log lines ({self.log_path}):\n{self.log_tail(15)}"
                )
            if self._get("/v2/health/live") == 200:
                # Triton opens its endpoints only after the initial loads are done.
                try:
                    failed = self.failed_models()
                except (OSError, ValueError):  # endpoint not answering yet, or a partial reply
                    time.sleep(POLL_INTERVAL_S)
                    continue
                if failed and self.config.require_all_models:
                    raise ModelLoadError(self._describe_failures(failed))
                if failed:
                    return
                if self._get("/v2/health/ready") == 200:
                    return
            time.sleep(POLL_INTERVAL_S)
        raise ServerStartError(
            f"Triton was not ready after {self.config.startup_timeout_s:.0f} s; see {self.log_path}"
        )

    def failed_models(self) -> list[ModelState]:
        """Models not READY, including those Triton left out of its index (no version folder)."""
        states = self.model_states()
        failed = [m for m in states if m.state != "READY"]
        indexed = {m.name for m in states}
        for config in sorted(self.config.repository.glob("*/config.pbtxt")):
            if config.parent.name not in indexed:
                failed.append(
                    ModelState(name=config.parent.name, version="", state="UNAVAILABLE", reason="")
                )
        if not failed:
            return []
        log_reasons = self._reasons_from_log()  # read only when there is something to explain
        fallback = "not loaded; see Triton's log"
        return [replace(m, reason=m.reason or log_reasons.get(m.name, fallback)) for m in failed]

    def _reasons_from_log(self) -> dict[str, str]:
        reasons = {}
        for line in self._log_file_lines():
            match = _LOAD_FAILURE.search(line)
            if match:
                reasons[match["name"]] = match["reason"]
        return reasons

    def _log_file_lines(self) -> list[str]:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return []

    def _describe_failures(self, failed: list[ModelState]) -> str:
        lines = [f"{len(failed)} model(s) failed to load, so the server was stopped:"]
        for model in failed:
            reason = clean_reason(model.reason or model.state)
            version = f" version {model.version}" if model.version else ""
            hint = _unbuilt_hint(self.config.repository, model.name)
            lines.append(f"  - {model.name}{version}: {reason}{hint}")
        lines.append(f"Triton's log: {self.log_path}")
        return "\n".join(lines)

    def stop(self) -> int | None:
        """SIGINT, wait for Triton's own graceful exit, then kill whatever is left in the group."""
        with self._stopping:
            return self._stop_process()

    def _stop_process(self, grace_s: float | None = None) -> int | None:
        if self._watch is not None:
            self._watch.stopped.set()  # not joined: the watch itself may be the caller
        process = self._process
        if process is None:
            return None
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGINT)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=self.config.exit_timeout_s + 5 if grace_s is None else grace_s)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # stubs or a hung server
        process.wait()
        if self._log_thread is not None:
            self._log_thread.join(timeout=5)
        if process.stdout is not None:
            process.stdout.close()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return process.returncode

    def close(self) -> int | None:
        """Stop for good: a start or restart under way in another thread gives up."""
        self._closed.set()
        return self.stop()

    def restart(self, grace_s: float | None = None) -> None:
        """Stop whatever is left and start again on the same ports and key (maas play does this
        when the server it started dies; the stub watch when a stub dies). A restart asked for
        while one runs waits for that one instead of starting a second."""
        if not self._restarting.acquire(blocking=False):
            with self._restarting:
                return
        try:
            with self._stopping:
                self._stop_process(grace_s)
            self.start()
        finally:
            self._restarting.release()

    def __enter__(self) -> TritonServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- queries -----------------------------------------------------------------------------

    @property
    def returncode(self) -> int | None:
        return self._process.poll() if self._process else None

    def is_running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(list(self._log_tail)[-lines:])  # list(): copied atomically

    def model_states(self) -> list[ModelState]:
        index = self._post_json("/v2/repository/index", {})
        return [
            ModelState(
                name=entry["name"],
                version=str(entry.get("version", "")),
                state=entry.get("state", "UNKNOWN"),
                reason=entry.get("reason", ""),
            )
            for entry in index
        ]

    def load_model(self, name: str, timeout_s: float = 600) -> None:
        """(Re)load `name` through the admin API (explicit model control): its newest version
        serves once this returns; a version that fails leaves the previous one serving."""
        request = urllib.request.Request(
            self._url(f"/v2/repository/models/{name}/load"), data=b"{}", method="POST",
            headers=self.admin_headers,
        )  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=timeout_s):
                return
        except urllib.error.HTTPError as error:
            try:
                reason = json.loads(error.read() or b"{}").get("error", "")
            except ValueError:
                reason = ""
            reason = clean_reason(reason or f"HTTP {error.code}")
        except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
            reason = f"no answer from {self.config.http_url}: {error}"
        raise ModelLoadError(f"{name} did not load: {reason}")

    def _url(self, path: str) -> str:
        return f"http://{self.config.http_url}{path}"

    def _get(self, path: str) -> int | None:
        try:
            with urllib.request.urlopen(self._url(path), timeout=2) as response:
                return response.status
        except urllib.error.HTTPError as error:
            return error.code
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None  # not listening yet

    def _post_json(self, path: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(
            self._url(path),
            data=json.dumps(body).encode(),
            method="POST",
            headers=self.admin_headers,
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read() or b"[]")
