"""Watching Triton's Python backend stubs, because Triton 2.51 does not bring a dead one back.

Measured (2026-11-30, nvidia-pytriton 0.7.0): after SIGKILL of npc_bert's stub under load,
every request to it answered 500 "Stub process 'npc_bert_0_0' is not healthy" for as long as
we watched (40 s), while the model and the server still reported READY. A stub that vanished
while its model is still READY is therefore a fault the supervisor repairs (it restarts
Triton). Only without model control: there nothing reloads or unloads a model, so a stub that
ends has died (with model control a reload also ends stubs, and is not a fault).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from maas.server.process_group import group_members

STUB_NAME = "triton_python_backend_stub"
CHECK_INTERVAL_S = 1.0


def stubs_of(pgid: int) -> dict[int, str]:
    """pid -> model name of every live backend stub in Triton's process group."""
    found = {}
    for pid, state in group_members(pgid).items():
        if state == "Z":
            continue
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0].endswith(STUB_NAME.encode()) and len(argv) > 1:
            model_py = Path(argv[1].decode(errors="replace"))  # <repo>/<model>/<version>/model.py
            found[pid] = model_py.parent.parent.name
    return found


class StubWatch(threading.Thread):
    """Calls `on_lost(model)` once when a stub disappears while `still_ready(model)` is true."""

    def __init__(
        self,
        pgid: int,
        still_ready: Callable[[str], bool],
        on_lost: Callable[[str], None],
        interval_s: float = CHECK_INTERVAL_S,
    ) -> None:
        super().__init__(daemon=True, name=f"stub-watch-{pgid}")
        self.pgid, self.still_ready, self.on_lost = pgid, still_ready, on_lost
        self.interval_s = interval_s
        self.stopped = threading.Event()
        # Taken now, not when the thread first runs: on a busy machine a stub could die between
        # start() and the thread's first turn, and a stub never seen is never missed.
        self.known = stubs_of(pgid)

    def run(self) -> None:
        known = self.known
        while not self.stopped.wait(self.interval_s):
            current = stubs_of(self.pgid)
            for pid in set(known) - set(current):
                model = known[pid]
                if not self.stopped.is_set() and self.still_ready(model):
                    self.stopped.set()
                    self.on_lost(model)
                    return
            known = current
