"""The game's content (rooms, characters, rune locks) loaded from a data file and validated, so
a writer can change the adventure without touching code and hears exactly what is wrong."""

from __future__ import annotations

import importlib.util
import reprlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maas_client.errors import MaasClientError
from maas_client.npc_file import Npc, NpcFileError, parse_npc, parse_yaml

DEFAULT_CONTENT = Path(__file__).parent / "content" / "lantern_vault.yaml"


class ContentError(MaasClientError):
    """A content file that cannot be played, with where and why."""


@dataclass(frozen=True)
class Exit:
    direction: str
    to: str
    lock: str | None = None


@dataclass(frozen=True)
class Room:
    id: str
    name: str
    description: str
    exits: tuple[Exit, ...]
    npcs: tuple[str, ...]


@dataclass(frozen=True)
class Lock:
    id: str
    name: str
    digit: int
    description: str


@dataclass(frozen=True)
class World:
    title: str
    intro: str
    start: str
    goal: str
    win_text: str
    rooms: dict[str, Room]
    npcs: dict[str, Npc]
    locks: dict[str, Lock]


def load_world(path: Path = DEFAULT_CONTENT) -> World:
    if importlib.util.find_spec("yaml") is None:
        raise ContentError("game content needs PyYAML (pip install pyyaml)")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ContentError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ContentError(f"{path}: cannot read it ({error})") from None
    try:
        data = parse_yaml(text, str(path))
    except NpcFileError as error:
        raise ContentError(str(error)) from None
    return parse_world(data, str(path))


def parse_world(data: Any, where: str) -> World:
    """The whole file is checked before anything is reported: a writer fixes every problem
    in one pass instead of one per run."""
    if not isinstance(data, dict):
        raise ContentError(f"{where}: expected a mapping with title, start, goal, rooms, ...")
    problems: list[str] = []
    broken: set[str] = set()  # entries already reported: not "unknown" where they are used

    def each(key: str, parse: Any, *, required: bool = True) -> dict:
        try:
            entries = _mapping(data, key, where, required=required)
        except ContentError as error:
            problems.append(str(error))
            return {}
        parsed = {}
        for entry_id, entry in entries.items():
            try:
                parsed[entry_id] = parse(entry_id, entry, f"{where}: {key}.{entry_id}")
            except ContentError as error:
                problems.append(str(error))
                broken.add(str(entry_id))
        return parsed

    text = {}
    for key in ("title", "start", "goal", "win_text"):
        try:
            text[key] = _string(data, key, where)
        except ContentError as error:
            problems.append(str(error))
    intro = data.get("intro", "")
    if not isinstance(intro, str):
        problems.append(f"{where}: 'intro' must be text")
    npcs = each("npcs", lambda _, entry, at: _npc(entry, at))
    locks = each("locks", _lock, required=False)
    rooms = each("rooms", _room)
    for key in ("start", "goal"):
        if key in text and text[key] not in rooms:
            problems.append(f"{where}: {key} {text[key]!r} is not a room ({sorted(rooms)})")
    for room in rooms.values():
        for exit_ in room.exits:
            if exit_.to not in rooms and exit_.to not in broken:
                problems.append(
                    f"{where}: rooms.{room.id}.exits.{exit_.direction} leads to unknown room "
                    f"{exit_.to!r}"
                )
            if exit_.lock is not None and exit_.lock not in locks and exit_.lock not in broken:
                problems.append(
                    f"{where}: rooms.{room.id}.exits.{exit_.direction} uses unknown lock "
                    f"{exit_.lock!r}"
                )
        missing = [n for n in room.npcs if n not in npcs and n not in broken]
        problems += [f"{where}: rooms.{room.id} has unknown npc {n!r}" for n in missing]
    if not problems:
        _check_reachable(rooms, text["start"], text["goal"], where)
    if problems:
        count = f"{len(problems)} problems:\n" if len(problems) > 1 else ""
        raise ContentError(count + "\n".join(problems))
    return World(
        text["title"],
        intro.strip(),
        text["start"],
        text["goal"],
        text["win_text"],
        rooms,
        npcs,
        locks,
    )


def _check_reachable(rooms: dict[str, Room], start: str, goal: str, where: str) -> None:
    """A goal no path of exits reaches (through any locks) is a game nobody can win."""
    seen, frontier = {start}, [start]
    while frontier:
        for exit_ in rooms[frontier.pop()].exits:
            if exit_.to not in seen:
                seen.add(exit_.to)
                frontier.append(exit_.to)
    if goal not in seen:
        raise ContentError(f"{where}: no path of exits leads from {start!r} to the goal {goal!r}")


def _string(data: dict, key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ContentError(f"{where}: '{key}' must be a non-empty string")
    return value.strip()


def _mapping(data: dict, key: str, where: str, *, required: bool = True) -> dict:
    value = data.get(key, None if required else {})
    if not isinstance(value, dict) or (required and not value):
        raise ContentError(f"{where}: '{key}' must be a mapping of id -> {key[:-1]}")
    for id_ in value:
        if not isinstance(id_, str):  # YAML reads `1:`, `no:`, `null:` as a number, bool, None
            raise ContentError(f"{where}: {key[:-1]} id {_shown(id_)} must be text (quote it)")
    return value


def _shown(value: Any) -> str:
    """A value for an error message, kept short (an alias can nest a list a million times)."""
    if isinstance(value, int) and value.bit_length() > 64:
        return "a huge number"  # repr() refuses ints over 4300 digits
    return reprlib.repr(value)


def _npc(entry: Any, where: str) -> Npc:
    try:
        return parse_npc(entry, where)
    except NpcFileError as error:
        raise ContentError(str(error)) from None


def _lock(lock_id: str, entry: Any, where: str) -> Lock:
    if not isinstance(entry, dict):
        raise ContentError(f"{where}: expected a mapping with name, digit, description")
    digit = entry.get("digit")
    if not isinstance(digit, int) or isinstance(digit, bool) or not 0 <= digit <= 9:
        raise ContentError(f"{where}: 'digit' must be a whole number 0 to 9, not {_shown(digit)}")
    return Lock(lock_id, _string(entry, "name", where), digit, _string(entry, "description", where))


def _room(room_id: str, entry: Any, where: str) -> Room:
    if not isinstance(entry, dict):
        raise ContentError(f"{where}: expected a mapping with name, description, exits")
    unknown = sorted(_shown(key) for key in set(entry) - {"name", "description", "exits", "npcs"})
    if unknown:
        raise ContentError(
            f"{where}: unknown keys [{', '.join(unknown)}] (name, description, exits, npcs)"
        )
    raw_exits = entry.get("exits") or {}
    if not isinstance(raw_exits, dict):
        raise ContentError(f"{where}: 'exits' must map a direction to a room id or {{to, lock}}")
    exits = []
    for direction, target in raw_exits.items():
        if not isinstance(direction, str):
            raise ContentError(
                f"{where}: exit direction {_shown(direction)} must be text (quote it)"
            )
        if isinstance(target, str):
            exits.append(Exit(str(direction), target))
        elif isinstance(target, dict) and isinstance(target.get("to"), str):
            lock = target.get("lock")
            if lock is not None and not isinstance(lock, str):
                raise ContentError(f"{where}: exits.{direction}.lock must be a lock id")
            exits.append(Exit(str(direction), target["to"], lock))
        else:
            raise ContentError(f"{where}: exits.{direction} must be a room id or {{to, lock}}")
    npcs = entry.get("npcs") or []
    if not isinstance(npcs, list) or not all(isinstance(n, str) for n in npcs):
        raise ContentError(f"{where}: 'npcs' must be a list of npc ids")
    return Room(
        room_id,
        _string(entry, "name", where),
        _string(entry, "description", where),
        tuple(exits),
        tuple(npcs),
    )
