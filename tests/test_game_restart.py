"""`maas play` restarts the server it started itself when that server dies, and the player's
progress and last line survive it."""

from __future__ import annotations

import os
import signal

import pytest

from maas.server import TritonServer
from maas_game.app import MAX_SERVER_RESTARTS, GameApp
from maas_game.services import GameServices
from maas_game.world import load_world
from tests.test_game_play import SIZE, command, settle


@pytest.mark.asyncio
async def test_a_killed_local_server_is_restarted_and_the_game_carries_on(
    quick_repository, tmp_path_factory
):
    from tests.conftest import server_config

    config = server_config(quick_repository[0], tmp_path_factory.mktemp("restart_logs"))
    world = load_world()
    services = GameServices(config.http_url, timeout_s=3)
    server = TritonServer(config)
    server.start()
    try:
        app = GameApp(world, services, tmp_path_factory.mktemp("save") / "save.json", keeper=server)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await command(pilot, "/n")
            before = len(app.game.progress.log)
            os.kill(server._process.pid, signal.SIGKILL)  # what the OOM killer does
            assert server.exited.wait(10)
            await command(pilot, "where is the smithy")
            for _ in range(120):  # health check (2 s), restart (a cold start), then the reply
                await settle(pilot, 0.5)
                if app.game.progress.log[-1].startswith("[b]Bess Tanner:[/b]"):
                    break
            log = "\n".join(app.game.progress.log[before:])
            assert "can't hear you" in log
            assert f"restarting it (attempt 1/{MAX_SERVER_RESTARTS})" in log
            assert "running again" in log
            assert app.game.progress.log[-1].startswith("[b]Bess Tanner:[/b]"), log
            assert app.game.room.id == "inn" and app.restarts == 1
            # Started from the game's worker thread, which has ended: the server must outlive
            # it (PR_SET_PDEATHSIG follows the forking thread, hence the spawner thread).
            await settle(pilot, 3.0)
            assert server.is_running() and not server.exited.is_set()
            assert app.ready == {"npc_dialogue": True, "mnist": True}
    finally:
        server.stop()
        services.close()
