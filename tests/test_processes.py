"""No process we start outlives us: a tritonserver killed like the OOM killer does takes its
backend stubs with it, and leaves no zombie behind."""

from __future__ import annotations

import contextlib
import os
import signal
import time

from maas.server import TritonServer
from maas.server.process_group import group_members
from tests.conftest import server_config


def survivors(group: int, within_s: float) -> dict[int, str]:
    """The members of a process group still running (zombies aside) once they have had
    `within_s` seconds to go."""
    deadline = time.monotonic() + within_s
    while True:
        alive = {p: s for p, s in group_members(group).items() if s != "Z"}
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.2)


def test_sigkill_of_tritonserver_takes_its_stubs_along(backend_repository, tmp_path):
    server = TritonServer(server_config(backend_repository, tmp_path))
    server.start()
    try:
        triton_pid = server._process.pid
        stubs = {pid for pid in group_members(triton_pid) if pid != triton_pid}
        assert len(stubs) >= 4  # one stub per model instance: torch x2, tf, onnx
        os.kill(triton_pid, signal.SIGKILL)
        alive = survivors(triton_pid, within_s=10)
        assert not alive, f"still running 10 s after SIGKILL: {alive}"
        assert server.exited.wait(5) and not server.is_running()
        assert triton_pid not in group_members(triton_pid)  # reaped, not a zombie
    finally:
        server.stop()


def test_a_dead_stub_is_noticed_and_triton_restarted(backend_repository, tmp_path):
    """Triton 2.51 leaves a killed stub's model READY and failing every request; the supervisor
    restarts Triton (without model control, where nothing else ends a stub)."""
    import dataclasses

    import numpy as np
    import tritonclient.http as httpclient

    from maas.server.stub_watch import stubs_of
    from tests.triton_calls import infer

    config = dataclasses.replace(server_config(backend_repository, tmp_path), model_control=False)
    server = TritonServer(config)
    server.start()
    try:
        old_pid = server._process.pid
        stub = next(p for p, m in stubs_of(old_pid).items() if m == "onnx_dynamic")
        os.kill(stub, signal.SIGKILL)
        deadline = time.monotonic() + 120
        while not server.heals and time.monotonic() < deadline:
            time.sleep(0.5)
        assert server.heals and "'onnx_dynamic' died; Triton was restarted in" in server.heals[0]
        assert server.is_running() and server._process.pid != old_pid
        client = httpclient.InferenceServerClient(config.http_url)
        try:
            out = infer(client, "onnx_dynamic", {"x": np.ones((1, 3), np.float32)})
            assert out["y"].shape == (1, 2)
        finally:
            client.close()
    finally:
        server.close()


PARENT = """
import dataclasses, sys, time, pathlib
import tritonclient.http as httpclient
from maas.server import TritonServer
from tests.conftest import server_config
from tests.test_npc_turn import SMITH, turn

repo = pathlib.Path(sys.argv[1])
config = dataclasses.replace(server_config(repo, repo.parent), model_control=False, poll_s=1)
server = TritonServer(config)
server.start()
url = server.config.http_url
assert turn(httpclient, url, ["hi"], [SMITH]).shape == (1, 3)
(repo / "npc_turn" / "1" / "edited.txt").write_text("x")  # an in-place edit: Triton reloads
time.sleep(3)
print(server._process.pid, flush=True)
try:  # Triton 2.51's reloaded npc_turn hangs on its npc_encoder call: a graceful exit waits
    turn(httpclient.InferenceServerClient(url, network_timeout=5), url, ["hi"], [SMITH])
except Exception:
    pass
time.sleep(600)  # killed here
"""


def test_a_hung_triton_dies_with_the_process_that_started_it(npc_repository, tmp_path):
    """A Triton whose npc_turn hung (an in-place edit under polling: a Triton 2.51 hang we
    avoid, not one we can fix) once outlived a parent killed by timeout(1), holding its ports,
    while PDEATHSIG asked it for a graceful exit. Here its exit timeout also ends it under
    SIGTERM; the SIGKILL it now gets does not depend on that."""
    import shutil
    import subprocess
    import sys

    repository = tmp_path / "repo"
    shutil.copytree(npc_repository, repository)
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT, str(repository)], stdout=subprocess.PIPE, text=True
    )
    triton_pid = 0
    try:
        triton_pid = int(parent.stdout.readline())
        time.sleep(6)  # the turn above is still waiting
        parent.kill()
        parent.wait()
        alive = survivors(triton_pid, within_s=15)
        assert not alive, f"still running 15 s after its parent died: {alive}"
    finally:
        parent.kill()
        if triton_pid:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(triton_pid, signal.SIGKILL)
