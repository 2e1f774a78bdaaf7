"""The game on screen (Textual's headless pilot) against a real Triton with quick-built models:
a whole play-through with digits drawn on the canvas, and the server going away mid-game."""

from __future__ import annotations

import numpy as np
import pytest

from maas.server import TritonServer
from maas_client.drawing import load_drawing_file, prepare, typed_digit_files
from maas_client.playtest_log import PlaytestLog, read_logs
from maas_game.app import GameApp, LockScreen
from maas_game.canvas import RuneCanvas
from maas_game.services import GameServices
from maas_game.state import Game
from maas_game.world import load_world

SIZE = (130, 48)


async def settle(pilot, seconds: float = 0.0) -> None:
    await _workers_done(pilot)
    await pilot.pause(seconds)
    await _workers_done(pilot)
    await pilot.pause()


async def _workers_done(pilot) -> None:
    """Wait for the app's workers; one replaced by a newer one of its exclusive group (the line
    said again once the server is back) ends cancelled, which is how it should end."""
    from textual.worker import WorkerCancelled

    for _ in range(10):
        try:
            await pilot.app.workers.wait_for_complete()
            return
        except WorkerCancelled:
            continue


async def command(pilot, text: str) -> None:
    pilot.app.query_one("#command").value = text
    await pilot.press("enter")
    await settle(pilot)


async def stroke(pilot, points: list[tuple[int, int]]) -> None:
    """Drag the mouse through canvas pixels (x, y); a pixel is two terminal columns wide."""
    canvas = pilot.app.screen.query_one(RuneCanvas)
    first, *rest = points
    await pilot.mouse_down(canvas, offset=(first[0] * 2, first[1]))
    for x, y in rest:
        await pilot.hover(canvas, offset=(x * 2, y))
    await pilot.mouse_up(canvas, offset=(rest[-1][0] * 2, rest[-1][1]))


def typed_digit(digit: int) -> np.ndarray:
    path = typed_digit_files(digit)[0]
    return prepare(load_drawing_file(path)) > 0.3


async def draw_rune(pilot, app: GameApp, lock_id: str, digit: int) -> None:
    """Open the lock here, put a typed digit on the canvas and ask the lock."""
    await command(pilot, "/draw")
    assert isinstance(app.screen, LockScreen) and app.screen.lock.id == lock_id
    app.screen.query_one(RuneCanvas).load(typed_digit(digit))
    await pilot.press("enter")
    await settle(pilot, 1.3)  # the screen closes itself a second after the lock opens
    assert app.game.is_open(lock_id), last_lines(app)


def last_lines(app: GameApp, count: int = 3) -> str:
    return "\n".join(app.game.progress.log[-count:])


@pytest.mark.asyncio
async def test_a_whole_play_through(quick_server, tmp_path):
    world = load_world()
    services = GameServices(quick_server.config.http_url)
    playtest = PlaytestLog(tmp_path / "playtest.jsonl", source="game")
    app = GameApp(world, services, tmp_path / "save.json", playtest=playtest)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        assert app.ready == {"npc_dialogue": True, "mnist": True}
        status = str(app.query_one("#status").render())
        assert quick_server.config.http_url in status and "ready" in status

        await command(pilot, "/go north")
        await command(pilot, "how do i get down into the cellar?")
        bess = world.npcs["bess"]
        reply = app.game.progress.log[-1]
        assert reply.startswith("[b]Bess Tanner:[/b] ")
        assert reply.split("[/b] ", 1)[1] in [*bess.texts, bess.fallback]
        await command(pilot, "/why")
        await command(pilot, "thank you")
        assert "score" in app.game.progress.log[-1] and "threshold" in app.game.progress.log[-1]
        assert "last call" in str(app.query_one("#status").render())
        await command(pilot, "/wrong")
        assert "marked wrong" in app.game.progress.log[-1]
        logged = read_logs([tmp_path / "playtest.jsonl"])
        said = [t["said"] for t in logged.turns]
        assert said == ["how do i get down into the cellar?", "thank you"]
        assert logged.flagged == {logged.turns[-1]["turn"]} and logged.turns[0]["npc_id"] == "bess"

        # The cellar rune, 7, drawn by hand: a mouse stroke for the bar, one for the stem, and
        # the keyboard to thicken the foot.
        await command(pilot, "/draw")
        assert isinstance(app.screen, LockScreen)
        await stroke(pilot, [(8, 6), (12, 6), (16, 6), (20, 6)])
        await stroke(pilot, [(20, 6), (18, 10), (16, 14), (14, 18), (13, 22)])
        canvas = app.screen.query_one(RuneCanvas)
        canvas.cursor = (12, 22)
        await pilot.press("space", "down", "space")
        assert canvas.pixels[23, 12] == 1.0 and canvas.pixels[6, 8] == 1.0
        await pilot.press("u")  # undo the last ink
        assert canvas.pixels[24, 13] == 0.0
        await pilot.press("enter")
        await settle(pilot, 1.3)
        assert "The lock reads" in app.game.progress.log[-1] or app.game.is_open("cellar_door")
        assert app.game.is_open("cellar_door"), last_lines(app)
        assert not isinstance(app.screen, LockScreen)

        await command(pilot, "/down")
        await command(pilot, "who are you")
        assert app.game.talking_to == "tom"
        for step in ("/up", "/s"):
            await command(pilot, step)
        await draw_rune(pilot, app, "crypt_gate", 3)
        await command(pilot, "/down")
        await draw_rune(pilot, app, "vault_door", 5)
        await command(pilot, "/n")
        assert app.game.progress.won and world.win_text in last_lines(app)

        await pilot.press("f1")
        assert type(app.screen).__name__ == "HelpScreen"
        await pilot.press("escape")
        await pilot.press("ctrl+s")
        await settle(pilot)
    saved = Game.load(world, tmp_path / "save.json")
    assert saved.progress.won and saved.progress.room == "vault"
    services.close()


@pytest.mark.asyncio
async def test_server_down_keeps_progress_and_carries_on(quick_repository, tmp_path_factory):
    from tests.conftest import server_config

    config = server_config(quick_repository[0], tmp_path_factory.mktemp("down_logs"))
    world = load_world()
    services = GameServices(config.http_url, timeout_s=3)
    server = TritonServer(config)
    server.start()
    try:
        app = GameApp(world, services, tmp_path_factory.mktemp("save") / "save.json")
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot)
            await command(pilot, "/n")
            await command(pilot, "hello")
            assert app.game.progress.log[-1].startswith("[b]Bess Tanner:[/b]")

            server.stop()
            await command(pilot, "where is the smithy")
            assert "can't hear you" in app.game.progress.log[-1]
            await settle(pilot, 2.5)
            assert app.ready is None and "retrying" in str(app.query_one("#status").render())
            assert app.game.room.id == "inn" and app.game.talking_to == "bess"
            await command(pilot, "/draw")  # the lock screen also says so, and keeps the drawing
            app.screen.query_one(RuneCanvas).load(typed_digit(7))
            await pilot.press("enter")
            await settle(pilot)
            assert "does not answer" in str(app.screen.query_one("#guesses").render())
            assert not app.screen.query_one(RuneCanvas).is_empty
            await pilot.press("escape")
            await settle(pilot)

            server = TritonServer(config)
            server.start()
            for _ in range(20):  # the health check (every 2 s) notices and says the line again
                await settle(pilot, 0.5)
                if app.game.progress.log[-1].startswith("[b]Bess Tanner:[/b]"):
                    break
            assert app.game.progress.log[-1].startswith("[b]Bess Tanner:[/b]"), last_lines(app, 5)
            assert "The server is back." in last_lines(app, 5)
            assert app.ready == {"npc_dialogue": True, "mnist": True}
    finally:
        server.stop()
        services.close()
