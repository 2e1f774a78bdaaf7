"""Game rules and progress, with no server and no screen: what the tests drive directly and what
a save file holds."""

from __future__ import annotations

import contextlib
import json
import os
import reprlib
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.errors import MarkupError
from rich.markup import escape, render

from maas_client.errors import MaasClientError
from maas_game.world import Exit, Lock, Room, World

SAVE_FORMAT = 1
SHORT_DIRECTIONS = {"n": "north", "s": "south", "e": "east", "w": "west", "u": "up", "d": "down"}


def normalize_direction(text: str) -> str:
    """`/go N`, `/go north`, `/n` all mean the same exit."""
    wanted = text.strip().lower()
    return SHORT_DIRECTIONS.get(wanted, wanted)


class SaveError(MaasClientError):
    """A save file that cannot be written or read back."""


@dataclass
class Progress:
    room: str
    opened: list[str] = field(default_factory=list)
    talking_to: str | None = None
    moves: int = 0
    won: bool = False
    log: list[str] = field(default_factory=list)  # what the player has seen, to restore it


@dataclass(frozen=True)
class Outcome:
    ok: bool
    message: str


class Game:
    def __init__(self, world: World, progress: Progress | None = None) -> None:
        self.world = world
        self.progress = progress or Progress(room=world.start)

    @property
    def room(self) -> Room:
        return self.world.rooms[self.progress.room]

    @property
    def talking_to(self) -> str | None:
        return self.progress.talking_to

    def is_open(self, lock_id: str) -> bool:
        return lock_id in self.progress.opened

    def locked_exits(self) -> list[tuple[Exit, Lock]]:
        return [
            (e, self.world.locks[e.lock])
            for e in self.room.exits
            if e.lock is not None and not self.is_open(e.lock)
        ]

    def describe(self) -> str:
        room = self.room
        exits = []
        for e in room.exits:
            target = self.world.rooms[e.to].name
            sealed = e.lock is not None and not self.is_open(e.lock)
            lock = f", sealed by {self.world.locks[e.lock].name}" if sealed and e.lock else ""
            exits.append(f"{e.direction} ({target}{lock})")
        people = [self.world.npcs[n].name for n in room.npcs]
        lines = [f"{room.name}", room.description, f"Exits: {', '.join(exits) or 'none'}"]
        if people:
            lines.append(f"Here: {', '.join(people)}")
        return "\n".join(lines)

    def go(self, direction: str) -> Outcome:
        if not direction.strip():
            options = ", ".join(e.direction for e in self.room.exits)
            return Outcome(False, f"Go where? Exits: {options}.")
        wanted = normalize_direction(direction)
        for e in self.room.exits:
            if e.direction.lower() == wanted:
                if e.lock is not None and not self.is_open(e.lock):
                    lock = self.world.locks[e.lock]
                    return Outcome(False, f"{lock.name.capitalize()} is sealed. {lock.description}")
                self.progress.room = e.to
                self.progress.talking_to = None
                self.progress.moves += 1
                if e.to == self.world.goal:
                    self.progress.won = True
                return Outcome(True, self.describe())
        options = ", ".join(e.direction for e in self.room.exits)
        return Outcome(False, f"You can't go {direction!r} from here. Exits: {options}.")

    def talk(self, who: str | None = None) -> Outcome:
        """Start talking to someone here (by id or the start of their name)."""
        here = self.room.npcs
        if not here:
            return Outcome(
                False, "There is nobody here to talk to. (Commands start with /: /go north, /help)"
            )
        if who is None or not who.strip():
            if len(here) == 1:
                who = here[0]
            else:
                names = ", ".join(self.world.npcs[n].name for n in here)
                return Outcome(False, f"Talk to whom? {names}")
        wanted = who.strip().lower()
        for npc_id in here:
            npc = self.world.npcs[npc_id]
            if npc_id == wanted or npc.name.lower().startswith(wanted):
                self.progress.talking_to = npc_id
                return Outcome(True, f"You turn to {npc.name}.")
        return Outcome(False, f"Nobody called {who!r} is here.")

    def lock_to_open(self, direction: str | None = None) -> Lock | Outcome:
        locked = self.locked_exits()
        if direction:
            wanted = normalize_direction(direction)
            locked = [(e, lock) for e, lock in locked if e.direction.lower() == wanted]
        if not locked:
            return Outcome(False, "There is no sealed rune lock here.")
        if len(locked) > 1:
            ways = ", ".join(e.direction for e, _ in locked)
            return Outcome(False, f"Which lock? Say /draw and one of: {ways}")
        return locked[0][1]

    def try_lock(self, lock_id: str, digit: int) -> Outcome:
        lock = self.world.locks[lock_id]
        if digit != lock.digit:
            return Outcome(False, f"The rune {digit} fizzles on {lock.name}. Nothing happens.")
        if lock_id not in self.progress.opened:
            self.progress.opened.append(lock_id)
        return Outcome(True, f"The rune {digit} blazes on {lock.name}, and it swings open!")

    def remember(self, text: str, limit: int = 400) -> None:
        self.progress.log.append(text)
        del self.progress.log[:-limit]

    def save(self, path: Path) -> None:
        """Written to a temporary file and renamed, so a crash never leaves half a save."""
        data = {"format": SAVE_FORMAT, "title": self.world.title, **asdict(self.progress)}
        temporary = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=".save-")
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(data, out, indent=1)
            os.replace(temporary, path)
        except OSError as error:
            if temporary is not None:  # a full disk must not fill up further with drafts
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
            reason = error.strerror or str(error)
            raise SaveError(f"cannot save to {path}: {reason}; the game goes on") from None

    @classmethod
    def load(cls, world: World, path: Path) -> Game:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SaveError(f"no saved game at {path}") from None
        except (OSError, ValueError) as error:  # ValueError: bad UTF-8, JSON, 4300-digit numbers
            raise SaveError(f"{path} is not a saved game: {error}") from None
        except RecursionError:
            raise SaveError(f"{path} is not a saved game: nested too deeply") from None
        if not isinstance(data, dict) or data.get("format") != SAVE_FORMAT:
            raise SaveError(f"{path} is not a saved game of this version")
        if data.get("title") != world.title:
            shown = reprlib.repr(data.get("title"))
            raise SaveError(f"{path} belongs to {shown}, not {world.title!r}")
        damage = _damage(data)
        if damage:
            raise SaveError(f"{path} is damaged: {damage}")
        talking_to = data.get("talking_to")
        progress = Progress(
            room=data["room"],
            opened=list(data.get("opened", [])),
            talking_to=talking_to if isinstance(talking_to, str) else None,
            moves=data.get("moves", 0),
            won=data.get("won", False),
            log=[_markup_or_escaped(line) for line in data.get("log", [])],
        )
        unknown = [x for x in progress.opened if x not in world.locks]
        if progress.room not in world.rooms or unknown:
            raise SaveError(f"{path} does not match this adventure's rooms and locks")
        if progress.talking_to not in (None, *world.rooms[progress.room].npcs):
            progress.talking_to = None
        return cls(world, progress)


def _damage(data: dict[str, Any]) -> str | None:
    """What is wrong with the types of a save's progress, in words; None when nothing is."""
    if not isinstance(data.get("room"), str):
        return "'room' must be a room id"
    for key in ("opened", "log"):
        value = data.get(key, [])
        if not isinstance(value, list) or not all(isinstance(x, str) for x in value):
            return f"'{key}' must be a list of strings"
    moves = data.get("moves", 0)
    if not isinstance(moves, int) or isinstance(moves, bool) or moves < 0:
        return f"'moves' must be a whole number, 0 or more, not {reprlib.repr(moves)}"
    if not isinstance(data.get("won", False), bool):
        return "'won' must be true or false"
    return None


def _markup_or_escaped(line: str) -> str:
    """A log line as the story log shows it (Rich markup); a line edited into broken markup is
    shown as it is written rather than stopping the game when the log is drawn."""
    try:
        render(line)
    except MarkupError:
        return escape(line)
    return line
