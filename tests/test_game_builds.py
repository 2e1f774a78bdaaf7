"""A fresh machine: `maas play` opens the game at once while missing models are built in the
background. Here a real quick build of mnist runs while the game is on screen (80x24): talking
works at once, the rune plate says why it is asleep, and the lock opens once the build has
written the model and loaded it through explicit model control (no polling: Triton's log says
once, not every few seconds, that mnist has nothing to load)."""

from __future__ import annotations

import dataclasses
import shutil
import time

import pytest
from textual.widgets import Static

from maas.background_builds import BackgroundBuilds
from maas.server import TritonServer
from maas_game.app import GameApp, LockScreen
from maas_game.canvas import RuneCanvas
from maas_game.services import GameServices
from maas_game.world import load_world
from tests.conftest import server_config
from tests.test_game_play import command, settle, typed_digit


@pytest.mark.asyncio
async def test_the_game_opens_while_mnist_is_built_and_uses_it_once_it_arrives(
    quick_repository, tmp_path
):
    repository = tmp_path / "repo"
    shutil.copytree(quick_repository[0], repository, ignore=shutil.ignore_patterns("retired"))
    shutil.rmtree(repository / "mnist" / "1")
    for extra in (repository / "mnist").iterdir():
        if extra.is_dir():
            shutil.rmtree(extra)
    config = dataclasses.replace(server_config(repository, tmp_path), require_all_models=False)
    world = load_world()
    with TritonServer(config) as server:
        builds = BackgroundBuilds(
            repository, ["mnist"], tmp_path / "logs", quick=True, loader=server.load_model
        ).start()
        services = GameServices(server.config.http_url)
        app = GameApp(world, services, tmp_path / "save.json", builds=builds)
        try:
            async with app.run_test(size=(80, 24)) as pilot:
                await settle(pilot)
                assert app.ready == {"npc_dialogue": True, "mnist": False}
                status = " ".join(str(app.query_one("#status", Static).render()).split())
                assert "building mnist" in status or "mnist waiting" in status, status
                await command(pilot, "/go north")
                await command(pilot, "hello there")
                assert app.game.progress.log[-1].startswith("[b]Bess Tanner:[/b] ")

                await command(pilot, "/draw")
                assert isinstance(app.screen, LockScreen)
                app.screen.query_one(RuneCanvas).load(typed_digit(7))
                await pilot.press("enter")
                await settle(pilot)
                guesses = str(app.screen.query_one("#guesses", Static).render())
                assert "still asleep" in guesses and "mnist" in guesses, guesses
                assert not app.game.is_open("cellar_door")

                deadline = time.monotonic() + 300
                while not (builds.finished and app.ready and app.ready["mnist"]):
                    assert time.monotonic() < deadline, builds.describe()
                    await pilot.pause(1.0)
                assert builds.describe() is None, builds.describe()
                await pilot.press("enter")  # the same drawing, asked again
                await settle(pilot, 1.3)
                assert app.game.is_open("cellar_door"), app.game.progress.log[-3:]
        finally:
            builds.stop()
            services.close()
    assert (repository / "mnist" / "1" / "model.savedmodel").is_dir()
    failures = [line for line in server.log_path.read_text().splitlines() if "'mnist'" in line]
    assert len([line for line in failures if line.startswith("E")]) <= 1, failures


def test_build_progress_says_its_share_is_of_the_whole_build(tmp_path):
    from maas.background_builds import BackgroundBuilds

    builds = BackgroundBuilds(tmp_path, ["npc"])
    (state,) = builds.states.values()
    state.state, state.step, state.fraction = "building", "train epoch 2/3", 0.64
    assert builds.describe() == "building npc: train epoch 2/3 (64% of the build)"
    assert builds.waiting_for("npc_turn") == (
        "npc_turn is being built (maas build npc: train epoch 2/3 (64% of the build))"
    )
