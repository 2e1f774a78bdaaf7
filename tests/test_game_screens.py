"""The game's screens at the sizes players have (80x24, 100x30, 120x40), against a real Triton
with quick-built models: every line in the log wraps at the panel's width and shows whole, old
lines re-flow when the terminal is resized, and the status line, help and rune lock fit 80x24."""

from __future__ import annotations

import pytest
from rich.text import Text
from textual.containers import VerticalScroll
from textual.geometry import Region
from textual.widget import Widget
from textual.widgets import Button, Markdown, RichLog

from maas_game.app import GameApp, HelpScreen, LockScreen
from maas_game.canvas import RuneCanvas
from maas_game.services import GameServices
from maas_game.state import Game
from maas_game.world import load_world
from tests.test_game_play import command, settle, typed_digit

SIZES = [(80, 24), (100, 30), (120, 40)]
LONG_LINE = (
    "good evening, I have walked a long way through the rain and I would like to know how to "
    "get down into the cellar"
)


def words(text: str) -> str:
    """Whitespace normalized, so a sentence wrapped at spaces compares equal to its source."""
    return " ".join(text.split())


def said(markup: str) -> str:
    """A logged line as the player reads it: markup gone, whitespace normalized."""
    return words(Text.from_markup(markup).plain)


def shown(widget: Widget) -> list[str]:
    """The widget's content area as it is drawn on screen (border, padding and scrollbars cut
    away), one string per row."""
    region, content = widget.region, widget.scrollable_content_region
    left, top = content.x - region.x, content.y - region.y
    strips = widget.render_lines(Region(0, 0, region.width, region.height))
    return [strip.crop(left, left + content.width).text for strip in strips][
        top : top + content.height
    ]


def every_log_line(log: RichLog) -> list[str]:
    """All the log's lines, scrolled into view or not, cut where the panel cuts them: RichLog
    keeps each rendered line and draws the part that fits its content width."""
    width, scroll_x = log.scrollable_content_region.width, log.scroll_offset.x
    return [strip.crop(scroll_x, scroll_x + width).text for strip in log.lines]


def assert_whole(app: GameApp, entries: list[str], visible: list[str]) -> None:
    """Each entry of the log appears whole in the panel; the `visible` ones also on screen."""
    log = app.query_one("#log", RichLog)
    width = log.scrollable_content_region.width
    assert width > 20, f"the log panel is {width} columns wide"
    panel = words(" ".join(every_log_line(log)))
    for entry in entries:
        assert said(entry) in panel, f"cut at {width} columns: {said(entry)!r}"
    assert all(strip.cell_length <= width for strip in log.lines), "a line wider than the panel"
    screen = words(" ".join(shown(log)))
    for entry in visible:
        assert said(entry) in screen, f"not whole on screen: {said(entry)!r}\n{screen}"


async def play_some(pilot, app: GameApp) -> None:
    """Long lines of every kind: the intro and a room (written in on_mount, before the log has a
    size), a room looked at again, a long line said and the reply from npc_dialogue."""
    await settle(pilot)
    assert app.ready == {"npc_dialogue": True, "mnist": True}
    await command(pilot, "/n")
    await command(pilot, "/look")
    await command(pilot, LONG_LINE)
    log = app.game.progress.log
    assert log[-1].startswith("[b]Bess Tanner:[/b] "), log[-3:]
    assert LONG_LINE in log[-2]


def new_app(quick_server, tmp_path, game: Game | None = None) -> GameApp:
    services = GameServices(quick_server.config.http_url)
    return GameApp(load_world(), services, tmp_path / "save.json", game)


@pytest.mark.asyncio
@pytest.mark.parametrize("size", SIZES, ids=lambda size: "x".join(map(str, size)))
async def test_long_lines_wrap_whole_in_the_log(quick_server, tmp_path, size):
    app = new_app(quick_server, tmp_path)
    async with app.run_test(size=size) as pilot:
        await play_some(pilot, app)
        log = app.game.progress.log
        assert len(said(log[0])) > 200 and len(said(log[-3])) > 150  # the intro, the inn
        assert_whole(app, log, visible=log[-3:])
        room = words(" ".join(shown(app.query_one("#room"))))
        assert said(app.game.describe()) in room
    app.services.close()


@pytest.mark.asyncio
async def test_a_resize_reflows_the_lines_already_written(quick_server, tmp_path):
    app = new_app(quick_server, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await play_some(pilot, app)
        log = app.game.progress.log
        panel = app.query_one("#log", RichLog)
        wide = panel.scrollable_content_region.width
        assert_whole(app, log, visible=log[-3:])

        await pilot.resize_terminal(80, 24)
        await settle(pilot)
        narrow = panel.scrollable_content_region.width
        assert narrow < wide
        assert_whole(app, log, visible=log[-3:])

        await pilot.resize_terminal(120, 40)
        await settle(pilot)
        assert panel.scrollable_content_region.width == wide
        assert_whole(app, log, visible=log[-3:])
        # back at the wide width, the old lines use it again rather than keeping the narrow flow
        assert max(len(line.rstrip()) for line in every_log_line(panel)) > narrow


@pytest.mark.asyncio
async def test_a_saved_log_wraps_when_the_game_continues(quick_server, tmp_path):
    world = load_world()
    game = Game(world)
    long = " ".join(f"word{n}" for n in range(60))
    for text in (world.intro, f"[b]Bess Tanner:[/b] {long}", world.win_text):
        game.remember(text)
    app = new_app(quick_server, tmp_path, game)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        log = app.game.progress.log
        assert "saved game continues" in log[-1]
        assert_whole(app, log, visible=log[-2:])


@pytest.mark.asyncio
async def test_status_help_and_lock_fit_80x24(quick_server, tmp_path):
    app = new_app(quick_server, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await play_some(pilot, app)
        status = app.query_one("#status")
        text = str(status.render())
        assert "npc_dialogue ready" in text and "last call" in text
        assert words(text) in words(" ".join(shown(status)))
        # the room panel gives way on a small screen, so the story keeps most of the width
        assert app.query_one("#room-panel").region.width < 38
        assert app.query_one("#log", RichLog).scrollable_content_region.width >= 40

        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        close = app.screen.query_one("#close", Button)
        assert app.screen.region.contains_region(close.region), "the close button is off screen"
        # the help is longer than 24 rows: it scrolls, and its last line can be brought into view
        help_text = app.screen.query_one("#help-text", VerticalScroll)
        assert help_text.max_scroll_y > 0
        help_text.scroll_end(animate=False, immediate=True)
        await pilot.pause()
        end = app.screen.query_one(Markdown).region.bottom
        assert (
            help_text.scrollable_content_region.y
            < end
            <= help_text.scrollable_content_region.bottom
        )
        await pilot.press("escape")
        await settle(pilot)

        await command(pilot, "/draw")
        assert isinstance(app.screen, LockScreen)
        canvas = app.screen.query_one(RuneCanvas)
        assert canvas.region.size == (28, 14)
        box = app.screen.query_one("#lock").region
        assert app.screen.region.contains_region(box)
        for widget in (canvas, *app.screen.query(Button), app.screen.query_one("#guesses")):
            assert box.contains_region(widget.region), f"{widget} is clipped"
        canvas.load(typed_digit(3))  # the cellar asks for 7: the lock stays, with its guesses
        await pilot.press("enter")
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert "The lock reads" in str(app.screen.query_one("#guesses").render())
        for widget in (*app.screen.query(Button), app.screen.query_one("#guesses")):
            assert box.contains_region(widget.region), f"{widget} is clipped with guesses shown"
    app.services.close()


@pytest.mark.asyncio
async def test_quit_command_saves_and_leaves(quick_server, tmp_path):
    """/quit, listed in the help, leaves as Ctrl+Q does (it once did nothing: the coroutine
    was called and never awaited), with the progress saved."""
    app = new_app(quick_server, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await settle(pilot)
        await command(pilot, "/n")
        await command(pilot, "/quit")
        await pilot.pause(0.5)
        assert app._exit, "/quit did not leave the game"
    saved = Game.load(load_world(), tmp_path / "save.json")
    assert saved.progress.room == app.game.progress.room != load_world().start
    app.services.close()
