"""A fresh machine: `maas play` opens the game at once while missing models are built in the
background. Here a real quick build of mnist runs while the game is on screen (80x24): talking
works at once, the rune plate says why it is asleep, and the lock opens once the build has
written the model and loaded it through explicit model control (no polling: Triton's log says
once, not every few seconds, that mnist has nothing to load)."""

from __future__ import annotations

import dataclasses
import json
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
from tests.cli_calls import maas
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
                listed = maas(
                    "status", "--url", server.config.http_url, "--repository", str(repository),
                    timeout=60,
                )  # fmt: skip
                assert listed.returncode == 1, listed.stdout  # not ready: mnist is missing
                assert "mnist: not built yet (`maas build mnist`)" in listed.stdout
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


def test_the_larger_brain_builds_in_the_background_and_swaps_in_live(quick_repository, tmp_path):
    """The upgrade's plumbing with a quick build standing in for mpnet (a 400 MB download):
    it builds outside the served repository, numbers its versions after the served ones, and
    is swapped in while the server keeps answering; the game hears about it once."""
    from maas import brain_upgrade
    from maas_client.npc import NpcClient
    from maas_client.npc_file import load_npc
    from tests.test_npc_build import INNKEEPER

    repository = tmp_path / "repo"
    shutil.copytree(quick_repository[0], repository, ignore=shutil.ignore_patterns("retired"))
    assert brain_upgrade.serving_base(repository) == "minilm"
    assert brain_upgrade.wanted(repository, npc_missing=False) is not brain_upgrade.gpu_visible()
    config = dataclasses.replace(server_config(repository, tmp_path), require_all_models=False)
    npc = load_npc(INNKEEPER)
    with TritonServer(config) as server, NpcClient(server.config.http_url) as client:
        job = brain_upgrade.upgrade_job(
            repository, server.config.http_url, server.admin_headers, args=()
        )
        assert not job.owes_models and job.nice == 19
        builds = BackgroundBuilds(repository, [job], tmp_path / "logs", quick=True).start()
        try:
            answered = 0
            deadline = time.monotonic() + 400
            while not builds.finished:
                assert time.monotonic() < deadline, builds.describe()
                assert builds.waiting_for("npc_dialogue") is None  # the old brain answers
                client.reply(npc, "got a room for the night?")
                answered += 1
                time.sleep(0.5)
            assert builds.describe() is None, builds.describe()
            (news,) = builds.news()
            assert "sharper" in news and builds.news() == []
        finally:
            builds.stop()
        assert client.reply(npc, "got a room for the night?").model_version == "2"
        ready = server.model_states()
        assert {(m.name, m.version) for m in ready if m.state == "READY"} >= {
            ("npc_turn", "2"), ("npc_encoder", "2"), ("npc_bert", "2"), ("npc_tokenizer", "2")
        }  # fmt: skip

        back = maas("npc", "rollback", "--repository", str(repository),
                    "--url", server.config.http_url, timeout=300)  # fmt: skip
        assert back.returncode == 0, back.stderr
        assert "npc_turn v1" in back.stdout and (repository / "npc_turn/retired/2").is_dir()
        assert client.reply(npc, "got a room for the night?").model_version == "1"
        again = maas("npc", "rollback", "--repository", str(repository), timeout=60)
        assert again.returncode == 1 and "nothing to go back to" in again.stderr
    assert answered > 10
    assert not brain_upgrade.shadow_for(repository).exists()
    assert json.loads((repository / "npc_turn/retired/2/encoder.json").read_text())["version"] == 2


def test_a_rolled_back_upgrade_is_not_trained_again(tmp_path, monkeypatch):
    """`maas npc rollback` (or a swap that failed) retires mpnet: the next start keeps MiniLM
    instead of spending 90 minutes on the brain the user turned away."""
    from maas import brain_upgrade

    monkeypatch.setattr(brain_upgrade, "gpu_visible", lambda: False)
    encoder = tmp_path / "npc_encoder"
    (encoder / "1").mkdir(parents=True)
    (encoder / "config.pbtxt").write_text('name: "npc_encoder"\n')
    (encoder / "1" / "model_card.json").write_text('{"settings": {"base": "minilm"}}')
    assert brain_upgrade.wanted(tmp_path, npc_missing=False)
    (encoder / "retired" / "2").mkdir(parents=True)
    (encoder / "retired" / "2" / "model_card.json").write_text('{"settings": {"base": "mpnet"}}')
    assert not brain_upgrade.wanted(tmp_path, npc_missing=False)
    monkeypatch.setattr(brain_upgrade, "gpu_visible", lambda: True)
    (encoder / "retired" / "2" / "model_card.json").unlink()
    assert not brain_upgrade.wanted(tmp_path, npc_missing=True)  # a GPU builds mpnet first
