"""Faults, for real: a full disk when the game saves, and a broken new model version added while
the old one serves."""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from maas.server import TritonServer
from maas.server.config import free_ports
from maas_game.app import GameApp
from maas_game.services import GameServices
from maas_game.world import load_world
from tests.conftest import server_config
from tests.test_game_play import SIZE, command, settle
from tests.triton_calls import admin_headers, infer


@dataclass
class FullDisk:
    path: Path
    free: Callable[[], None]  # make room again


def _filled_tmpfs(disk: Path) -> bool:
    """A 64 KiB tmpfs filled to the last block (needs mount rights, as root here and in CI)."""
    if os.environ.get("MAAS_TEST_NO_MOUNT"):
        return False
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        return False
    with contextlib.suppress(OSError), (disk / "filler").open("wb") as filler:
        while True:  # until ENOSPC (closing it may raise it once more)
            filler.write(b"\0" * 4096)
            filler.flush()
    return True


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[FullDisk]:
    """Writes under `path` fail: ENOSPC on a filled tmpfs, or, where mounting is not allowed,
    EFBIG from a 64-byte file-size limit on this process (SIGXFSZ ignored) until `free()`."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if _filled_tmpfs(disk):
        try:
            yield FullDisk(disk, lambda: (disk / "filler").unlink())
        finally:
            subprocess.run(["umount", "-l", str(disk)], check=False)
        return
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64, limits[1]))
    try:
        yield FullDisk(disk, lambda: resource.setrlimit(resource.RLIMIT_FSIZE, limits))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)


@pytest.mark.asyncio
async def test_a_full_disk_at_save_time_is_said_and_the_game_goes_on(full_disk):
    (port,) = free_ports(1)  # no server: the game runs without one, as it must
    services = GameServices(f"127.0.0.1:{port}", timeout_s=1)
    save = full_disk.path / "save.json"
    app = GameApp(load_world(), services, save)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await command(pilot, "/n")  # a move autosaves
            said = "\n".join(app.game.progress.log[-3:])
            assert "cannot save to" in said
            assert "No space left on device" in said or "File too large" in said
            assert "the game goes on" in said and app.game.room.id == "inn"
            assert not list(full_disk.path.glob(".save-*"))  # no drafts filling the disk
            await command(pilot, "/s")
            assert app.game.room.id == "square"  # still playing
            full_disk.free()  # space again: the next move saves
            await command(pilot, "/n")
            assert save.exists() and '"room": "inn"' in save.read_text()
    finally:
        services.close()


def test_a_broken_new_version_leaves_the_old_one_serving(quick_repository, tmp_path):
    repository = tmp_path / "repo"
    shutil.copytree(quick_repository[0] / "mnist", repository / "mnist")
    server = TritonServer(server_config(repository, tmp_path))
    with server:
        client = httpclient.InferenceServerClient(server.config.http_url)
        try:
            image = np.zeros((1, 28, 28), np.float32)
            before = infer(client, "mnist", {"IMAGE": image})["PROBABILITIES"]
            broken = repository / "mnist" / "2" / "model.savedmodel"
            broken.mkdir(parents=True)
            (broken / "saved_model.pb").write_bytes(b"not a SavedModel")
            with pytest.raises(InferenceServerException) as refused:
                client.load_model("mnist", headers=admin_headers())
            assert "mnist" in refused.value.message()
            # Version 1 still answers, as the default and by number, with the same outputs.
            assert client.is_model_ready("mnist", "1")
            again = infer(client, "mnist", {"IMAGE": image})["PROBABILITIES"]
            np.testing.assert_allclose(again, before, atol=1e-6)
            states = {
                (m["name"], m.get("version")): m.get("state")
                for m in client.get_model_repository_index(headers=admin_headers())
            }
            assert states[("mnist", "1")] == "READY" and states[("mnist", "2")] != "READY"
        finally:
            client.close()
