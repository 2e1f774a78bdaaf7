"""The terminal game: rooms to explore, characters who answer through `npc_dialogue`, and rune
locks opened by digits drawn on a canvas and read by `mnist`. Every model call runs in a worker
thread, so the screen never freezes; a missing server is said in plain words and retried."""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import ClassVar

from rich.markup import escape
from rich.text import Text
from textual import events, on, work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.reactive import reactive
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Header, Input, Markdown, RichLog, Static

from maas_client.digits import MODEL as DIGIT_MODEL
from maas_client.errors import MaasClientError, ServerUnavailableError
from maas_client.npc import MODEL as NPC_MODEL
from maas_client.npc import Reply
from maas_client.playtest_log import PlaytestLog
from maas_game.canvas import RuneCanvas
from maas_game.services import Builds, GameServices, ServerKeeper
from maas_game.state import SHORT_DIRECTIONS, Game, Outcome, SaveError
from maas_game.world import Lock, World

HEALTH_CHECK_S = 2.0
MAX_SERVER_RESTARTS = 3  # per game: a server that keeps dying is reported, not restarted forever
LOG_ENTRIES = 400  # as many as a save keeps (Game.remember)
HELP = """\
# How to play

Explore, talk, and open the rune locks. The numbers are in what people say.

| command | what it does |
|---|---|
| *any text* | say it to the person you are talking to |
| `/go north` (or `/n`, `/s`, `/e`, `/w`, `/up`, `/down`) | walk through an exit |
| `/talk bess` | turn to someone in the room |
| `/draw` (or `/draw down`) | draw a rune on a sealed lock here |
| `/look` | describe the room again |
| `/save`, `/load` | save or load your progress (also Ctrl+S, Ctrl+O) |
| `/why` | show which line the model chose and its score (Ctrl+T) |
| `/wrong` | tell the writers the last reply was wrong (kept in the playtest log) |
| `/quit` | leave (progress is saved) |

**Drawing a rune:** click and drag with the mouse, or move with the arrows and press space to
ink; `c` clears, `u` undoes, `b` changes the brush. Enter asks the lock, Escape steps back.
The lock shows its top three guesses.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,f1,q", "dismiss", "Close help"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(id="help"):
            with VerticalScroll(id="help-text"):
                yield Markdown(HELP)
            yield Button("Back to the game", id="close")

    @on(Button.Pressed, "#close")
    def close_help(self) -> None:
        self.dismiss()


class LockScreen(ModalScreen[bool]):
    """Draw, ask the lock (mnist), see its top three guesses; dismissed with True once open."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "recognize", "Ask the lock"),
        Binding("escape", "leave", "Step back"),
    ]

    def __init__(self, lock: Lock, game: Game, services: GameServices) -> None:
        super().__init__()
        self.lock, self.game, self.services = lock, game, services

    def compose(self) -> ComposeResult:
        with Vertical(id="lock"):
            yield Static(
                f"[b]{escape(self.lock.name.capitalize())}[/b]: {escape(self.lock.description)}"
            )
            with Horizontal():
                yield RuneCanvas(id="canvas")
                with Vertical(id="lock-side"):
                    yield Static("Draw a digit, then press Enter.", id="guesses")
                    yield Button("Ask the lock", id="recognize", variant="primary")
                    yield Button("Clear", id="clear")
                    yield Button("Step back", id="leave")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(RuneCanvas).focus()

    @on(Button.Pressed, "#recognize")
    def action_recognize(self) -> None:
        canvas = self.query_one(RuneCanvas)
        if canvas.is_empty:
            self.query_one("#guesses", Static).update("The plate is blank: draw a digit first.")
            return
        self.query_one("#guesses", Static).update("The rune plate hums...")
        self.recognize(canvas.pixels.copy())

    @on(Button.Pressed, "#clear")
    def clear_canvas(self) -> None:
        self.query_one(RuneCanvas).action_clear()

    @on(Button.Pressed, "#leave")
    def action_leave(self) -> None:
        self.dismiss(False)

    @work(thread=True, exclusive=True, group="lock")
    def recognize(self, pixels) -> None:
        builds = getattr(self.app, "builds", None)
        why = builds.waiting_for(DIGIT_MODEL) if builds is not None else None
        if why:
            self.app.call_from_thread(
                self._show, f"The rune plate is still asleep: {why}. Your drawing is kept.", None
            )
            return
        try:
            result = self.services.recognize(pixels)
        except ServerUnavailableError:
            self.app.call_from_thread(
                self._show,
                "The rune plate is dark: the model server does not answer. Your drawing is "
                "kept; press Enter again when it is back.",
                None,
            )
            return
        except Exception as error:  # a model error, or a bug: a plain line, never a traceback
            self.app.call_from_thread(
                self._show, f"The plate sputters: {error or type(error).__name__}", None
            )
            return
        self.app.call_from_thread(self._recognized, result)

    def _recognized(self, result) -> None:
        guesses = "\n".join(
            f"{digit}  {'█' * round(p * 20):<20} {p:6.1%}" for digit, p in result.top(3)
        )
        self._show(f"The lock reads:\n{guesses}", self.game.try_lock(self.lock.id, result.digit))

    def _show(self, text: str, outcome: Outcome | None) -> None:
        message = text if outcome is None else f"{text}\n\n{outcome.message}"
        self.query_one("#guesses", Static).update(Text(message))
        if outcome is not None:
            if isinstance(self.app, GameApp):
                self.app.say(escape(outcome.message))
            if outcome.ok:
                self.set_timer(1.0, self._close_opened)

    def _close_opened(self) -> None:
        self.dismiss(True)  # not awaited: a screen cannot await its own dismissal


class StoryLog(RichLog):
    """The story so far, wrapped at the panel's width. RichLog renders each line once, when it is
    written, and never narrower than its `min_width`; this log keeps what it was told and writes
    it all again when its width changes, so old lines re-flow when the terminal is resized."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, wrap=True, markup=True, min_width=1)
        self._entries: deque[str] = deque(maxlen=LOG_ENTRIES)
        self._flowed_at = 0  # the content width the lines are wrapped at; 0 before the first size

    def add(self, text: str) -> None:
        """Write a line of Rich markup (lines written before the log has a size wait for it)."""
        self._entries.append(text)
        self.write(text)

    def on_resize(self, event: events.Resize) -> None:
        # Runs before RichLog's own handler, which writes the waiting lines at the first size.
        width = self.scrollable_content_region.width
        if not width or width == self._flowed_at:
            return
        if self._flowed_at:
            self.clear()
            for text in self._entries:
                self.write(text)
        self._flowed_at = width


class GameApp(App[None]):
    CSS_PATH = "game.tcss"
    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-narrow"), (100, "-wide")]
    VERTICAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-short"), (30, "-tall")]
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f1", "help", "Help"),
        Binding("ctrl+s", "save", "Save"),
        Binding("ctrl+o", "load", "Load"),
        Binding("ctrl+t", "why", "Model view"),
        Binding("ctrl+d", "draw", "Draw rune", priority=True),  # the input would take it
        Binding("ctrl+q", "quit", "Quit"),
    ]
    show_why: reactive[bool] = reactive(False)

    def __init__(
        self,
        world: World,
        services: GameServices,
        save_path: Path,
        game: Game | None = None,
        keeper: ServerKeeper | None = None,
        builds: Builds | None = None,
        playtest: PlaytestLog | None = None,
    ) -> None:
        super().__init__()
        self.playtest = playtest  # each turn, for `maas npc report`; None: --no-log
        self.world, self.services, self.save_path = world, services, save_path
        self.keeper = keeper  # the server `maas play` started itself, restarted if it dies
        self.builds = builds  # models `maas play` is still building in the background
        self.restarts = 0
        self._restarting = False
        self.game = game or Game(world)
        self.title = world.title
        self.ready: dict[str, bool] | None = None
        self.pending: tuple[str, str] | None = None  # a line to say again when the server is back
        self._checking = False

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="main"):
            with VerticalScroll(id="room-panel"):
                yield Static(id="room")
            yield StoryLog(id="log")
        yield Input(placeholder="Say something, or /help", id="command")
        yield Static(id="status")
        yield Footer()

    def on_mount(self) -> None:
        log = self.query_one(StoryLog)
        if self.game.progress.log:
            for line in self.game.progress.log:
                log.add(line)
            self.say("[i]Your saved game continues.[/i]")
        else:
            self.say(f"[b]{escape(self.world.title)}[/b]\n{escape(self.world.intro)}")
            self.say(escape(self.game.describe()))
        self.refresh_room()
        self.query_one(Input).focus()
        self.check_server()
        self.set_interval(HEALTH_CHECK_S, self.check_server)

    # --- what the player sees -------------------------------------------------------------
    def say(self, text: str) -> None:
        self.game.remember(text)
        self.query_one(StoryLog).add(text)

    def refresh_room(self) -> None:
        talking = self.game.talking_to
        who = f"\n\nTalking to: [b]{escape(self.world.npcs[talking].name)}[/b]" if talking else ""
        self.query_one("#room", Static).update(escape(self.game.describe()) + who)
        self.query_one(Input).placeholder = (
            f"Say something to {self.world.npcs[talking].name}, or /help"
            if talking
            else "Type /talk, /go DIRECTION, /draw or /help"
        )

    def update_status(self, error: str | None = None) -> None:
        if self._restarting:
            text = (
                f"[yellow]Server {self.services.url}: the local server stopped; restarting it "
                f"(attempt {self.restarts}/{MAX_SERVER_RESTARTS})[/yellow]"
            )
        elif error:
            text = f"[red]Server {self.services.url}: {error}[/red] - retrying every 2 s"
        elif self.ready is None:
            text = f"Server {self.services.url}: checking..."
        else:
            models = "  ".join(
                f"{name} {'[green]ready[/green]' if ok else '[red]not ready[/red]'}"
                for name, ok in self.ready.items()
            )
            latency = self.services.last_latency_ms
            last = f"  last call {latency:.0f} ms" if latency is not None else ""
            text = f"Server {self.services.url}  {models}{last}"
        building = self.builds.describe() if self.builds is not None else None
        if building:
            text += f"\n[yellow]{escape(building)}[/yellow]"
        self.query_one("#status", Static).update(text)

    # --- the server --------------------------------------------------------------------------
    def check_server(self) -> None:
        if not self._checking:  # a hung server must not pile checks up behind each other
            self._checking = True
            self._check_server()

    @work(thread=True, group="health")
    def _check_server(self) -> None:
        try:
            ready = self.services.readiness()
        except MaasClientError as error:
            self.call_from_thread(self._server_down, str(error).split(":")[0] or "no answer")
            return
        except Exception as error:  # the last resort: a plain line, never a traceback
            self.call_from_thread(self._server_down, type(error).__name__)
            return
        finally:
            self._checking = False
        self.call_from_thread(self._server_up, ready)

    def _server_down(self, reason: str) -> None:
        was_up = self.ready is not None
        self.ready = None
        self.update_status("not answering")
        if was_up:
            self.say(
                f"[yellow]The spirits fall silent: the model server stopped answering "
                f"({escape(reason)}). Your progress is safe; the game retries on its own.[/yellow]"
            )
        self._restart_if_ours_died()

    def _restart_if_ours_died(self) -> None:
        keeper = self.keeper
        if keeper is None or self._restarting or not keeper.exited.is_set():
            return
        if self.restarts >= MAX_SERVER_RESTARTS:
            if self.restarts == MAX_SERVER_RESTARTS:
                self.restarts += 1  # say it once
                self.say(
                    f"[red]The local server died {MAX_SERVER_RESTARTS} times; not restarting it "
                    "again. Your progress is saved; see its log, or start `maas serve`.[/red]"
                )
            return
        self.restarts += 1
        self._restarting = True
        self.update_status()
        self.say(
            f"[yellow]The local model server died; restarting it (attempt {self.restarts}/"
            f"{MAX_SERVER_RESTARTS}).[/yellow]"
        )
        self._restart_server(keeper)

    @work(thread=True, group="restart")
    def _restart_server(self, keeper: ServerKeeper) -> None:
        try:
            keeper.restart()
        except Exception as error:  # start errors are MaasErrors; any failure is said plainly
            self.call_from_thread(self._restart_done, str(error) or type(error).__name__)
            return
        self.call_from_thread(self._restart_done, None)

    def _restart_done(self, error: str | None) -> None:
        self._restarting = False
        if error:
            self.say(f"[red]The restart failed: {escape(error)}[/red]")
            self.update_status("not answering")
        else:
            self.say("[green]The local model server is running again.[/green]")
        self.check_server()

    def _server_up(self, ready: dict[str, bool]) -> None:
        self.ready = ready
        for line in self.builds.news() if self.builds is not None else []:
            self.say(f"[green]{escape(line)}[/green]")
        self.update_status()
        if self.pending is not None and all(ready.values()):
            npc_id, text = self.pending
            self.pending = None
            self.say("[green]The server is back.[/green]")
            self.talk_to_npc(npc_id, text)

    # --- commands -----------------------------------------------------------------------------
    @on(Input.Submitted, "#command")
    def submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        event.input.value = ""
        if not text:
            return
        if text.startswith("/"):
            self.command(text[1:])
        elif self.game.talking_to is None:
            here = self.game.talk()
            if not here.ok:
                self.say(f"[dim]{escape(here.message)}[/dim]")
                return
            self.refresh_room()
            self.player_says(text)
        else:
            self.player_says(text)

    def command(self, text: str) -> None:
        verb, _, rest = text.partition(" ")
        verb, rest = verb.lower(), rest.strip()
        if verb in SHORT_DIRECTIONS or verb in SHORT_DIRECTIONS.values():
            verb, rest = "go", SHORT_DIRECTIONS.get(verb, verb)
        actions = {
            "go": lambda: self.move(rest),
            "talk": lambda: self.turn_to(rest or None),
            "draw": lambda: self.action_draw(rest or None),
            "look": lambda: self.say(escape(self.game.describe())),
            "save": self.action_save,
            "load": self.action_load,
            "why": self.action_why,
            "wrong": lambda: self.flag_wrong(rest),
            "help": self.action_help,
            "quit": lambda: self.call_later(self.action_quit),  # a coroutine: scheduled
        }
        action = actions.get(verb)
        if action is None:
            self.say(f"[dim]Unknown command /{escape(verb)}. Try /help.[/dim]")
            return
        action()

    def move(self, direction: str) -> None:
        already_won = self.game.progress.won
        outcome = self.game.go(direction)
        self.pending = None  # a line meant for someone in the room just left
        self.say(escape(outcome.message))
        self.refresh_room()
        if self.game.progress.won and not already_won:
            self.say(f"[b green]{escape(self.world.win_text)}[/b green]")
        self.autosave()

    def turn_to(self, who: str | None) -> None:
        self.say(escape(self.game.talk(who).message))
        self.refresh_room()

    def player_says(self, text: str) -> None:
        npc_id = self.game.talking_to
        assert npc_id is not None
        self.say(f"[b cyan]You:[/b cyan] {escape(text)}")
        self.talk_to_npc(npc_id, text)

    @work(thread=True, exclusive=True, group="talk")
    def talk_to_npc(self, npc_id: str, text: str) -> None:
        npc = self.world.npcs[npc_id]
        why = self.builds.waiting_for(NPC_MODEL) if self.builds is not None else None
        if why:
            self.call_from_thread(
                self.say,
                f"[yellow]{escape(npc.name)} only nods for now: {escape(why)}. Explore "
                "meanwhile; talking works once it is ready.[/yellow]",
            )
            return
        try:
            reply = self.services.reply(npc, text)
        except ServerUnavailableError:
            self.call_from_thread(setattr, self, "pending", (npc_id, text))
            self.call_from_thread(
                self.say,
                f"[yellow]{escape(npc.name)} can't hear you: the model server at "
                f"{escape(self.services.url)} does not answer. You'll get a reply when it is "
                "back.[/yellow]",
            )
            self.call_from_thread(self._server_down, "no answer")
            return
        except Exception as error:  # a model error, or a bug: a plain line, never a traceback
            reason = escape(str(error) or type(error).__name__)
            message = f"{escape(npc.name)} is lost for words: {reason}"
            self.call_from_thread(self.say, f"[red]{message}[/red]")
            return
        self.call_from_thread(self._replied, npc_id, text, reply)

    def _replied(self, npc_id: str, said: str, reply: Reply) -> None:
        npc = self.world.npcs[npc_id]
        if self.playtest is not None:
            try:
                self.playtest.turn(npc, said, reply, npc_id=npc_id)
            except MaasClientError as error:  # a full disk costs the log, never the game
                self.say(f"[yellow]{escape(str(error))}; playtest logging stops[/yellow]")
                self.playtest = None
        self.say(f"[b]{escape(npc.name)}:[/b] {escape(reply.text)}")
        if self.show_why:
            verdict = ">=" if reply.understood else "<"
            line = npc.lines[reply.index]
            via = ""
            if reply.matched and reply.matched != line.text:
                via = f", via example {escape(repr(reply.matched))}"
            self.say(
                f"[dim]model: best line {escape(repr(npc.lines[reply.index].id))}, "
                f"score {reply.score:.3f} "
                f"{verdict} threshold {reply.threshold:.2f}{via}[/dim]"
            )
        self.update_status()

    def flag_wrong(self, note: str) -> None:
        if self.playtest is None:
            self.say("[dim]No playtest log in this game (--no-log): nothing to flag.[/dim]")
            return
        try:
            self.playtest.flag_wrong(note)
        except MaasClientError as error:
            self.say(f"[dim]{escape(str(error))}.[/dim]")
            return
        self.say("[dim]Noted: the last reply is marked wrong for the writers.[/dim]")

    # --- bound actions -------------------------------------------------------------------------
    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_why(self) -> None:
        self.show_why = not self.show_why
        self.say(f"[dim]Model view {'on' if self.show_why else 'off'}.[/dim]")

    def action_draw(self, direction: str | None = None) -> None:
        found = self.game.lock_to_open(direction)
        if isinstance(found, Outcome):
            self.say(escape(found.message))
            return

        def closed(opened: bool | None) -> None:
            self.refresh_room()
            self.autosave()

        self.push_screen(LockScreen(found, self.game, self.services), closed)

    def action_save(self) -> None:
        try:
            self.game.save(self.save_path)
        except SaveError as error:
            self.say(f"[red]{escape(str(error))}[/red]")
            return
        self.say(f"[dim]Saved to {escape(str(self.save_path))}.[/dim]")

    def action_load(self) -> None:
        try:
            self.game = Game.load(self.world, self.save_path)
        except SaveError as error:
            self.say(f"[red]{escape(str(error))}[/red]")
            return
        self.pending = None
        self.say(f"[dim]Loaded {escape(str(self.save_path))}.[/dim]")
        self.say(escape(self.game.describe()))
        self.refresh_room()

    def autosave(self) -> None:
        try:
            self.game.save(self.save_path)
        except SaveError as error:
            self.say(f"[red]{escape(str(error))}[/red]")

    async def action_quit(self) -> None:
        self.autosave()
        if self._restarting and self.keeper is not None:
            self.keeper.close()  # the restart worker gives up instead of holding the exit
        self.exit()
