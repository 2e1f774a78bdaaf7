"""The served models as the game uses them: one place that calls Triton, times each call and
turns a missing server into an exception the screen can explain."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

import numpy as np

from maas_client.digits import DigitClient, DigitResult
from maas_client.errors import ServerUnavailableError
from maas_client.npc import NpcClient, Reply
from maas_client.npc_file import Npc
from maas_client.urls import normalize_url

MODELS = ("npc_dialogue", "mnist")
T = TypeVar("T")


class ServerKeeper(Protocol):
    """A server the game started itself and may restart when it dies (maas play passes its
    TritonServer; the game package never imports the server side)."""

    exited: threading.Event  # set once the server process has ended

    def restart(self) -> None: ...

    def close(self) -> int | None: ...  # for good: a restart under way gives up


class Builds(Protocol):
    """Models `maas play` is still building in the background (maas.background_builds)."""

    def describe(self) -> str | None: ...  # one status line; None once all are built

    def waiting_for(self, model: str) -> str | None: ...  # why `model` cannot answer yet

    def news(self) -> list[str]: ...  # lines to say once (the sharper NPC brain arrived)


class GameServices:
    """Both model clients live in one thread of their own: tritonclient's HTTP client runs on
    gevent and refuses to be used from any thread but the one that made it, while the game
    calls from worker threads."""

    def __init__(self, url: str | None = None, *, timeout_s: float = 5.0) -> None:
        self.url = normalize_url(url)
        self.timeout_s = timeout_s
        self.last_latency_ms: float | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="maas-models")
        self._npc: NpcClient | None = None
        self._digits: DigitClient | None = None

    def _clients(self) -> tuple[NpcClient, DigitClient]:
        if self._npc is None or self._digits is None:
            self._npc = NpcClient(self.url, timeout_s=self.timeout_s)
            self._digits = DigitClient(self.url, timeout_s=self.timeout_s)
        return self._npc, self._digits

    def _run(self, call: Callable[[NpcClient, DigitClient], T], *, timed: bool = True) -> T:
        return self._thread.submit(self._in_thread, call, timed).result()

    def _in_thread(self, call: Callable[[NpcClient, DigitClient], T], timed: bool) -> T:
        started = time.perf_counter()
        try:
            result = call(*self._clients())
        except ServerUnavailableError:
            self._reset()  # fresh connections once the server is back
            raise
        if timed:
            self.last_latency_ms = (time.perf_counter() - started) * 1000
        return result

    def _reset(self) -> None:
        for client in (self._npc, self._digits):
            if client is not None:
                client.close()
        self._npc = self._digits = None

    def readiness(self) -> dict[str, bool]:
        """Each model's readiness; ServerUnavailableError when nothing answers."""
        return self._run(
            lambda npc, _: {model: npc.model_ready(model) for model in MODELS}, timed=False
        )

    def reply(self, npc: Npc, said: str) -> Reply:
        return self._run(lambda client, _: client.reply(npc, said))

    def recognize(self, pixels: np.ndarray) -> DigitResult:
        return self._run(lambda _, digits: digits.classify(pixels))

    def close(self) -> None:
        self._thread.shutdown(wait=False, cancel_futures=True)
        self._reset()
