"""The rune canvas on its own (no server): mouse and keyboard drawing in both layouts, and the
lock screen fitting an 80x24 terminal."""

from __future__ import annotations

import pytest
from textual.app import App, ComposeResult

from maas_game.app import GameApp, LockScreen
from maas_game.canvas import SIDE, RuneCanvas
from maas_game.services import GameServices
from maas_game.world import load_world


class CanvasApp(App[None]):
    def __init__(self, compact: bool) -> None:
        super().__init__()
        self.compact = compact

    def compose(self) -> ComposeResult:
        yield RuneCanvas(compact=self.compact)


@pytest.mark.asyncio
@pytest.mark.parametrize("compact", [False, True])
async def test_mouse_and_keyboard_drawing(compact):
    app = CanvasApp(compact)
    async with app.run_test(size=(100, 40)) as pilot:
        canvas = app.query_one(RuneCanvas)
        assert canvas.size.width == SIDE * (1 if compact else 2)
        assert canvas.size.height == (SIDE // 2 if compact else SIDE)
        row = 5 if compact else 10  # pixel row 10 either way
        await pilot.mouse_down(canvas, offset=(4 * canvas.cell_width, row))
        await pilot.hover(canvas, offset=(20 * canvas.cell_width, row))
        await pilot.mouse_up(canvas, offset=(20 * canvas.cell_width, row))
        inked = canvas.pixels[10]
        assert inked[4:22].all() and not inked[:4].any() and not inked[23:].any()
        assert not canvas.pixels[:10].any()  # nothing above the stroke

        await pilot.press("u")
        assert canvas.is_empty
        canvas.cursor = (0, 0)
        await pilot.press("b", "space", "right", "right", "right", "space")  # brush 3
        assert canvas.pixels[:3, :3].all() and canvas.pixels[:3, 3:6].all()
        await pilot.press("c")
        assert canvas.is_empty
        await pilot.press("u")
        assert not canvas.is_empty
        for _ in range(40):
            await pilot.press("down")
        assert canvas.cursor == (3, SIDE - 1)  # the cursor stops at the edge


@pytest.mark.asyncio
async def test_the_lock_screen_fits_an_80x24_terminal(tmp_path):
    services = GameServices("127.0.0.1:9", timeout_s=1)  # nothing there: drawing needs no server
    app = GameApp(load_world(), services, tmp_path / "save.json")
    async with app.run_test(size=(80, 24)) as pilot:
        app.query_one("#command").value = "/n"
        await pilot.press("enter")
        app.query_one("#command").value = "/draw"
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, LockScreen)
        canvas = app.screen.query_one(RuneCanvas)
        assert canvas.compact and canvas.region.bottom <= 24 and canvas.region.right <= 80
        assert app.screen.query_one("#recognize").region.bottom <= 24
    services.close()


@pytest.mark.asyncio
async def test_text_that_looks_like_markup_is_shown_as_typed(tmp_path):
    services = GameServices("127.0.0.1:9", timeout_s=1)
    app = GameApp(load_world(), services, tmp_path / "save.json")
    async with app.run_test(size=(100, 30)) as pilot:
        for text in ("/go n", "what is [/b] this [red]"):
            app.query_one("#command").value = text
            await pilot.press("enter")
            await app.workers.wait_for_complete()
            await pilot.pause()
        assert app.game.room.id == "inn"
        assert r"You:[/b cyan] what is \[/b] this \[red]" in "\n".join(app.game.progress.log)
        assert "can't hear you" in app.game.progress.log[-1]  # no server: said plainly
    services.close()
