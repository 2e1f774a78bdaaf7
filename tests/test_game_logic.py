"""Game rules, content validation and saves, without a server or a screen."""

from __future__ import annotations

import re

import pytest
import yaml

from maas_game.state import Game, SaveError
from maas_game.world import DEFAULT_CONTENT, ContentError, load_world, parse_world

NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@pytest.fixture
def world():
    return load_world()


def test_content_has_the_characters_and_locks_the_game_needs(world):
    assert len(world.npcs) >= 3
    for npc in world.npcs.values():
        assert len(npc.lines) >= 10 and npc.voice and npc.fallback
    spoken = " ".join(line.text.lower() for npc in world.npcs.values() for line in npc.lines)
    for lock in world.locks.values():  # every answer is told by someone: both models are needed
        assert re.search(rf"\b({lock.digit}|{NUMBER_WORDS[lock.digit]})\b", spoken), lock


def test_the_adventure_can_be_won_only_through_its_locks(world):
    game = Game(world)
    assert not game.go("down").ok  # the crypt gate is sealed
    assert game.go("north").ok and game.room.id == "inn"
    sealed = game.lock_to_open()
    assert sealed.id == "cellar_door"
    assert not game.try_lock("cellar_door", 1).ok and not game.is_open("cellar_door")
    assert game.try_lock("cellar_door", 7).ok and game.go("down").ok
    assert game.talk("old").ok and game.talking_to == "tom"
    for step in ("up", "south"):
        assert game.go(step).ok
    assert game.try_lock("crypt_gate", 3).ok and game.go("down").ok
    assert not game.go("north").ok
    assert game.try_lock("vault_door", 5).ok and game.go("north").ok
    assert game.progress.won and game.progress.moves == 6


def test_talking_needs_someone_here(world):
    game = Game(world)
    assert not game.talk().ok  # nobody in the square
    game.go("north")
    assert game.talk().ok and game.talking_to == "bess"
    assert not game.talk("garrick").ok
    assert not game.go("sideways").ok
    assert game.lock_to_open("D").id == "cellar_door"  # short and any-case directions
    assert not game.go("d").ok and game.go("S").ok and game.room.id == "square"


def test_save_and_load_round_trip(world, tmp_path):
    game = Game(world)
    game.go("north")
    game.try_lock("cellar_door", 7)
    game.talk()
    game.remember("You: hello")
    path = tmp_path / "saves" / "game.json"
    game.save(path)
    loaded = Game.load(world, path)
    assert loaded.progress == game.progress
    assert not list(path.parent.glob(".save-*"))  # no temporary file left behind


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not a saved game"),
        ('{"format": 99, "room": "inn"}', "not a saved game of this version"),
        ('{"format": 1, "title": "Other", "room": "inn"}', "belongs to 'Other'"),
        ('{"format": 1, "title": "The Lantern Vault", "room": "moon"}', "does not match"),
        ('{"format": 1, "title": "The Lantern Vault"}', "is damaged"),
    ],
)
def test_bad_saves_are_clear_errors(world, tmp_path, content, message):
    path = tmp_path / "save.json"
    path.write_text(content)
    with pytest.raises(SaveError, match=re.escape(message)):
        Game.load(world, path)
    with pytest.raises(SaveError, match="no saved game"):
        Game.load(world, tmp_path / "missing.json")


def content_with(change):
    data = yaml.safe_load(DEFAULT_CONTENT.read_text())
    change(data)
    return data


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(start="moon"), "start 'moon' is not a room"),
        (lambda d: d["rooms"]["square"]["exits"].update(west="moon"), "unknown room 'moon'"),
        (lambda d: d["locks"]["cellar_door"].update(digit=12), "'digit' must be a whole number"),
        (lambda d: d["rooms"]["inn"]["npcs"].append("ghost"), "unknown npc 'ghost'"),
        (lambda d: d["npcs"]["bess"].update(lines=[]), "npcs.bess"),
        (lambda d: d["rooms"]["inn"]["exits"]["down"].update(lock="nope"), "unknown lock 'nope'"),
        (lambda d: d.pop("title"), "'title' must be a non-empty string"),
        (lambda d: d["rooms"]["inn"].update(exits=["south"]), "'exits' must map a direction"),
        (lambda d: d["rooms"]["crypt"]["exits"].pop("north"), "no path of exits leads"),
        (lambda d: d["rooms"]["inn"].update(exit={"up": "square"}), "unknown keys ['exit']"),
        (lambda d: d.update(intro=["x"]), "'intro' must be text"),
    ],
)
def test_content_errors_name_the_place(change, message):
    with pytest.raises(ContentError, match=re.escape(message)):
        parse_world(content_with(change), "game.yaml")


def test_every_content_error_is_reported_at_once():
    def three_mistakes(data):
        data["rooms"]["square"]["exits"].update(west="moon")
        data["locks"]["cellar_door"].update(digit=12)
        data["rooms"]["inn"]["npcs"].append("ghost")

    with pytest.raises(ContentError) as raised:
        parse_world(content_with(three_mistakes), "game.yaml")
    said = str(raised.value).splitlines()
    assert said[0] == "3 problems:" and len(said) == 4
    for part in ("unknown room 'moon'", "'digit' must be a whole number", "unknown npc 'ghost'"):
        assert sum(part in line for line in said) == 1, part


def test_content_file_errors(tmp_path):
    bad = tmp_path / "game.yaml"
    bad.write_text("rooms: [\n")
    with pytest.raises(ContentError, match="not valid YAML"):
        load_world(bad)
    with pytest.raises(ContentError, match="no such file"):
        load_world(tmp_path / "none.yaml")


def test_go_without_a_direction_asks_where_and_names_the_exits(world):
    game = Game(world)
    before = (game.room.id, game.progress.moves)
    for said in ("", "   "):
        outcome = game.go(said)
        assert not outcome.ok and outcome.message.startswith("Go where? Exits: ")
        assert "''" not in outcome.message
    assert (game.room.id, game.progress.moves) == before


def test_a_second_play_on_the_same_save_is_refused_in_one_line(tmp_path):
    """Two games on one save file would overwrite each other's progress turn by turn."""
    import subprocess
    import sys

    from tests.cli_calls import maas

    save = tmp_path / "game.json"
    holder = subprocess.Popen(  # what the first `maas play` holds while it runs
        [sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a'); "
         "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)",
         str(tmp_path / ".game.json.lock")],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        result = maas("play", "--save", str(save), "--url", "127.0.0.1:1", timeout=60)
    finally:
        holder.kill()
        holder.wait()
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "another `maas play` is playing from" in " ".join(result.stderr.split())
    assert not save.exists()
