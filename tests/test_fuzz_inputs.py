"""Fuzzing what users feed us (issue 15, item 6): drawing files, NPC files, adventure content,
save files and --url values. Every loader either returns a valid object or raises its module's
own error with a message; a KeyError, TypeError, RecursionError, a yaml or numpy error, or a
warning printed on the way, is a bug. A few runs go through the real `maas` command."""

from __future__ import annotations

import io
import json
import pickle
import re
import socket
import warnings
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from hypothesis.provisional import domains
from rich.markup import render

from maas_client.drawing import (
    MAX_FILE_BYTES,
    MAX_SIDE,
    DrawingError,
    load_drawing_file,
    prepare,
)
from maas_client.errors import InvalidUrlError
from maas_client.npc_file import MAX_LINES, Npc, NpcFileError, load_npcs, parse_npc
from maas_client.urls import normalize_url
from maas_game.state import Game, Progress, SaveError
from maas_game.world import DEFAULT_CONTENT, ContentError, World, load_world, parse_world
from tests.cli_calls import maas

T = TypeVar("T")
FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
FEW = settings(FUZZ, max_examples=25)
WORLD = load_world()
CONTENT = yaml.safe_load(DEFAULT_CONTENT.read_text())


def outcome(call: Callable[[], T], error: type[Exception], *, one_line: bool = True) -> T | None:
    """The call's result, or None when it raised `error` with a message fit to show. Any other
    exception fails the test, and so does any warning (it would be printed under the message)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            return call()
        except error as caught:
            message = str(caught)
            assert message.strip(), f"{type(caught).__name__} without a message"
            if one_line:
                assert "\n" not in message, message
            return None


# --- hostile values -------------------------------------------------------------------------


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


def alias_bomb(levels: int = 6, width: int = 9) -> list:
    """What YAML's billion laughs builds: shared lists, 9**6 leaves if anyone expands them."""
    value: list = ["lol"]
    for _ in range(levels):
        value = [value] * width
    return value


def self_containing() -> list:
    value: list = []
    value.append(value)  # what `&a [*a]` loads as
    return value


def huge_int() -> int:
    return 16**5000  # YAML reads 0xFFF... this big; str() and repr() refuse it


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.builds(huge_int),
    st.floats(),
    st.text(max_size=12),
    st.dates(),
    st.datetimes(),
    st.binary(max_size=4),
)
HOSTILE = st.one_of(
    st.recursive(
        SCALARS,
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(
                st.one_of(st.text(max_size=6), st.integers(), st.none()), inner, max_size=4
            )
        ),
        max_leaves=10,
    ),
    st.integers(1, 3000).map(nested),
    st.builds(alias_bomb),
    st.builds(self_containing),
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=10,
)
YAML_SCALARS = [
    "2024-13-01",
    "2024-02-30",
    "!!timestamp 2024-02-30",
    "!!int abc",
    "!!float abc",
    "!!binary '@@@'",
    "!!python/object/apply:os.system ['true']",
    "!!set {a, b}",
    "0x" + "f" * 5000,
    "1" * 5000,
    "1:2:3:4:5:6:7",
    "*nowhere",
    "&a [*a]",
    ".nan",
    "-.inf",
    "~",
    "no",
    "[" * 3000 + "]" * 3000,
    "{a: 1, a: 2}",
    "'unterminated",
    "\t tab",
    "!!str",
    "? [a, b]\n  : c",
]
YAML_TEMPLATES = [
    "{v}",
    "name: {v}\nlines: [hi]\n",
    "name: Bob\nlines: [{v}]\n",
    "name: Bob\nlines:\n  - text: {v}\n    id: {v}\n    player: {v}\n",
    "name: Bob\nvoice: {v}\nfallback: {v}\nlines: [hi, there]\n",
    "npcs: {v}\n",
    "npcs:\n  - {v}\n",
    "{v}: {v}\n",
]
YAML_TEXT = st.builds(
    lambda template, value: template.format(v=value),
    st.sampled_from(YAML_TEMPLATES),
    st.sampled_from(YAML_SCALARS) | st.text(max_size=20),
)


def bomb_yaml(field: str) -> str:
    anchors = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, 7):
        refs = ", ".join([f"*a{level - 1}"] * 9)
        anchors.append(f"a{level}: &a{level} [{refs}]")
    return "\n".join(anchors) + f"\n{field}: *a6\n"


def write(path: Path, data: bytes | str) -> Path:
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    path.write_bytes(data)
    return path


# --- drawing files --------------------------------------------------------------------------


def check_drawing(array: np.ndarray | None) -> None:
    if array is None:
        return
    assert array.dtype == np.float32 and array.ndim == 2
    assert 0 < array.shape[0] <= MAX_SIDE and 0 < array.shape[1] <= MAX_SIDE
    assert np.isfinite(array).all() and array.min() >= 0 and 0 < array.max() <= 1
    image = outcome(lambda: prepare(array), DrawingError)
    assert image is not None and image.shape == (28, 28) and image.dtype == np.float32


DRAWING_TEXT = st.lists(
    st.text(alphabet=st.sampled_from(list(".#  \t\r@é\uff03\u200b\x7f\x85\u2028")), max_size=10),
    max_size=12,
).map("\n".join)
ENCODINGS = st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252", "utf-32"])


@FUZZ
@given(
    content=st.one_of(
        st.binary(max_size=300),
        st.builds(lambda t, enc: t.encode(enc, "replace"), st.text(max_size=60), ENCODINGS),
        st.builds(lambda t, enc: t.encode(enc, "replace"), DRAWING_TEXT, ENCODINGS),
        st.text(max_size=60),  # written with surrogatepass: lone surrogates are not UTF-8
    ),
    suffix=st.sampled_from([".txt", "", ".npy", ".NPY", ".png"]),
)
def test_any_bytes_as_a_drawing_file(tmp_path, content, suffix):
    path = write(tmp_path / f"drawing{suffix}", content)
    check_drawing(outcome(lambda: load_drawing_file(path), DrawingError))


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # format 3.0 for non-Latin-1 field names: refused, too
        np.save(buffer, array)
    return buffer.getvalue()


ANY_DTYPE = st.one_of(
    hnp.scalar_dtypes(),
    hnp.byte_string_dtypes(max_len=3),
    hnp.unicode_string_dtypes(max_len=3),
    hnp.array_dtypes(max_size=2),
)
SHAPES = st.one_of(
    hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5),
    st.tuples(st.integers(1, MAX_SIDE + 3), st.integers(1, MAX_SIDE + 3)),
)


@FUZZ
@given(array=hnp.arrays(ANY_DTYPE, SHAPES))
def test_npy_of_any_dtype_and_shape(tmp_path, array):
    path = write(tmp_path / "drawing.npy", npy_bytes(array))
    check_drawing(outcome(lambda: load_drawing_file(path), DrawingError))
    check_drawing(outcome(lambda: prepare(array), DrawingError))


@FUZZ
@given(data=st.data())
def test_damaged_npy_files(tmp_path, data):
    raw = bytearray(npy_bytes(np.eye(5, dtype=data.draw(st.sampled_from(["<f4", ">f8", "u1"])))))
    action = data.draw(st.sampled_from(["truncate", "flip", "header"]))
    if action == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw)))]
    elif action == "flip":
        for _ in range(data.draw(st.integers(1, 8))):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    else:  # a header of our own: garbage descr, huge or negative shapes, broken Python syntax
        descr = data.draw(st.sampled_from(["'<f8'", "'|O'", "'zz'", "[('a', '<f4')]", "'<c16'"]))
        shape = data.draw(
            st.sampled_from(["(3, 3)", "(10**12, 10**12)", "(-1, 5)", "()", "(3,", "'x'"])
            | st.tuples(st.integers(-3, 10**15), st.integers(-3, 10**15)).map(str)
        )
        fortran = data.draw(st.sampled_from(["False", "True", "1", "None"]))
        header = f"{{'descr': {descr}, 'fortran_order': {fortran}, 'shape': {shape}, }}"
        body = header.encode("latin-1").ljust(118) + b"\n"
        raw = bytearray(b"\x93NUMPY\x01\x00" + len(body).to_bytes(2, "little") + body)
        raw += data.draw(st.binary(max_size=200))
    path = write(tmp_path / "drawing.npy", bytes(raw))
    check_drawing(outcome(lambda: load_drawing_file(path), DrawingError))


@FUZZ
@given(value=HOSTILE)
def test_prepare_takes_anything(value):
    check_drawing(outcome(lambda: prepare(value), DrawingError))


class Trap:
    """Unpickling this touches a file: the proof that a loader ran pickled code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def test_npy_files_are_never_unpickled(tmp_path, monkeypatch):
    marker = tmp_path / "pwned"
    as_object_array = io.BytesIO()
    np.save(as_object_array, np.array([[Trap(marker)]], dtype=object), allow_pickle=True)
    for name, raw in [
        ("object.npy", as_object_array.getvalue()),
        ("pickle.npy", pickle.dumps(Trap(marker))),
    ]:
        with pytest.raises(DrawingError, match="not"):
            load_drawing_file(write(tmp_path / name, raw))
    assert not marker.exists()

    calls = []
    real_load = np.load
    monkeypatch.setattr(np, "load", lambda *a, **kw: calls.append(kw) or real_load(*a, **kw))
    load_drawing_file(write(tmp_path / "ok.npy", npy_bytes(np.eye(4))))
    assert calls == [{"allow_pickle": False}]


def test_empty_huge_and_unreadable_drawing_files(tmp_path):
    cases = {
        write(tmp_path / "empty.txt", b""): "the drawing is empty",
        write(tmp_path / "empty.npy", b""): "the file is empty",
        write(tmp_path / "huge.txt", b"#" * (MAX_FILE_BYTES + 1)): "over 1 MiB",
        write(tmp_path / "huge.npy", b"\x93NUMPY" + bytes(MAX_FILE_BYTES)): "over 1 MiB",
        write(tmp_path / "v3.npy", b"\x93NUMPY\x03\x00" + bytes(20)): "array: unsupported format",
        tmp_path / "missing.txt": "cannot read",
        tmp_path: "cannot read",  # a directory
    }
    for path, message in cases.items():
        with pytest.raises(DrawingError, match=message):
            load_drawing_file(path)


# --- URLs -----------------------------------------------------------------------------------

NORMAL_FORM = re.compile(r"(\[[0-9a-f:.]+(%[\w.-]+)?\]|[\w.-]+):([0-9]+)")


def check_url(result: str | None) -> None:
    if result is None:
        return
    match = NORMAL_FORM.fullmatch(result)
    assert match, result
    assert 1 <= int(match.group(3)) <= 65535
    assert normalize_url(result) == result  # what we return is accepted as it is


HOSTS = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
    st.ip_addresses(v=6).map(str),  # unbracketed: ambiguous with a port
    domains(),
    st.sampled_from(["localhost", "gpu-box", "[::1", "::1]", "[x]", "[v1.x]", "a b", "ünï.côde"]),
    st.text(max_size=10),
)
PORTS = st.one_of(
    st.just(""),
    st.integers(-5, 70000).map(lambda p: f":{p}"),
    st.sampled_from([":", "::", ":+80", ": 80", ":٨٠", ":8000:1", ":0x50"]),
    st.text(max_size=4).map(lambda t: f":{t}"),
)
SCHEMES = st.sampled_from(["", "http://", "HTTP://", "grpc://", "https://", "ftp://", "://", "//"])
TAILS = st.sampled_from(["", "/", "/v2", "?x=1", "#top", "/ ", " ", "\n", "\x00"])
USERS = st.sampled_from(["", "user@", "user:pw@", "@"])


@settings(FUZZ, max_examples=150)
@given(
    url=st.one_of(
        st.builds(lambda *parts: "".join(parts), SCHEMES, USERS, HOSTS, PORTS, TAILS),
        st.text(max_size=30),
    )
)
def test_any_url(url):
    check_url(outcome(lambda: normalize_url(url), InvalidUrlError))


@FUZZ
@given(
    host=st.one_of(st.ip_addresses(v=4).map(str), domains(), st.just("localhost")),
    port=st.integers(1, 65535),
    scheme=st.sampled_from(["", "http://"]),
)
def test_good_urls_are_kept(host, port, scheme):
    assert normalize_url(f"{scheme}{host}:{port}") == f"{host.lower()}:{port}"
    assert normalize_url(f"{scheme}[::1]:{port}") == f"[::1]:{port}"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://[::1", "is not HOST:PORT"),  # ValueError from urlsplit before
        ("[x]:80", "is not HOST:PORT"),
        ("http://ex\uff03ample:80", "is not HOST:PORT"),  # NFKC turns it into '#'
        ("host:0", "invalid port"),  # was quietly host:8000
        ("ho st:80", "spaces or unprintable characters"),  # was accepted as 'ho st:80'
        ("ho\tst:80", "spaces or unprintable characters"),  # urlsplit dropped the tab: host:80
        ("user@host:80", "is not HOST:PORT"),  # the user was dropped
        ("http://[::1]junk:80", "is not HOST:PORT"),  # the junk was dropped
        ("host:80#x", "is not HOST:PORT"),
    ],
)
def test_urls_that_used_to_slip_through(url, message):
    with pytest.raises(InvalidUrlError, match=re.escape(message)):
        normalize_url(url)


# --- NPC files ------------------------------------------------------------------------------


def check_npcs(npcs: list[Npc] | None) -> None:
    if npcs is None:
        return
    assert isinstance(npcs, list) and npcs
    for npc in npcs:
        assert isinstance(npc.name, str) and npc.name and npc.name == npc.name.strip()
        assert isinstance(npc.voice, str) and isinstance(npc.fallback, str) and npc.fallback
        assert 1 <= len(npc.lines) <= MAX_LINES
        assert len({line.id for line in npc.lines}) == len(npc.lines)
        for line in npc.lines:
            assert isinstance(line.text, str) and line.text.strip() and isinstance(line.id, str)
            assert all(isinstance(p, str) for p in line.player)


def npc_data(value: st.SearchStrategy) -> st.SearchStrategy:
    """NPC-shaped mappings with hostile values where strings and lists are expected."""
    line = st.one_of(
        st.text(max_size=8),
        value,
        st.fixed_dictionaries(
            {"text": st.text(max_size=8) | value},
            optional={"id": st.text(max_size=3) | value, "player": st.lists(value, max_size=2)},
        ),
    )
    npc = st.fixed_dictionaries(
        {"name": st.text(max_size=8) | value},
        optional={
            "lines": st.lists(line, max_size=4) | value | st.just(["x"] * (MAX_LINES + 1)),
            "voice": value,
            "fallback": value,
            "extra": value,
        },
    )
    return st.one_of(npc, st.fixed_dictionaries({"npcs": st.lists(npc, max_size=3) | value}), value)


@FUZZ
@given(data=npc_data(JSON_VALUES))
def test_npc_json_of_any_shape(tmp_path, data):
    path = write(tmp_path / "npc.json", json.dumps(data))
    check_npcs(outcome(lambda: load_npcs(path), NpcFileError))


@FUZZ
@given(data=npc_data(HOSTILE))
def test_npc_mappings_of_any_shape(data):
    check_npcs(outcome(lambda: [parse_npc(data, "npc.yaml")], NpcFileError, one_line=False))


@FUZZ
@given(
    content=st.one_of(YAML_TEXT, st.text(max_size=60), st.binary(max_size=60)),
    suffix=st.sampled_from([".yaml", ".yml", ".json", ".YAML", ".txt"]),
)
def test_any_text_as_an_npc_file(tmp_path, content, suffix):
    path = write(tmp_path / f"npc{suffix}", content)
    check_npcs(outcome(lambda: load_npcs(path), NpcFileError, one_line=False))


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        ("name: 2024-13-01\nlines: [hi]\n", ".yaml", "month must be in 1..12"),
        ("name: Bob\nlines: [!!int abc]\n", ".yaml", "not valid YAML"),
        ("[" * 3000 + "]" * 3000, ".yaml", "nested too deeply"),
        ("[" * 100_000 + "]" * 100_000, ".json", "nested too deeply"),
        ('{"name": ' + "1" * 5000 + "}", ".json", "not valid JSON"),
        ("name: Bob\nlines: [{id: 0x" + "f" * 5000 + ", text: hi}]\n", ".yaml", "'id' must be"),
        (bomb_yaml("lines") + "name: Bob\n", ".yaml", "a line is a string or a mapping"),
        ("&a [*a]", ".yaml", "expected a mapping"),
        ("", ".json", "not valid JSON"),
        ("", ".yaml", "expected a mapping"),
    ],
)
def test_npc_files_that_used_to_crash(tmp_path, content, suffix, message):
    path = write(tmp_path / f"npc{suffix}", content)
    with pytest.raises(NpcFileError, match=re.escape(message)):
        load_npcs(path)


# --- adventure content ----------------------------------------------------------------------


def check_world(world: World | None) -> None:
    if world is None:
        return
    for text in (world.title, world.start, world.goal, world.win_text):
        assert isinstance(text, str) and text
    assert world.start in world.rooms and world.goal in world.rooms
    assert all(isinstance(key, str) for key in (*world.rooms, *world.npcs, *world.locks))
    for room_id, room in world.rooms.items():
        assert room.id == room_id and isinstance(room.name, str)
        for exit_ in room.exits:
            assert exit_.to in world.rooms and (exit_.lock is None or exit_.lock in world.locks)
        assert all(npc in world.npcs for npc in room.npcs)
    for lock in world.locks.values():
        assert type(lock.digit) is int and 0 <= lock.digit <= 9
    check_npcs(list(world.npcs.values()))
    game = Game(world)
    game.describe()
    for exit_ in game.room.exits:
        game.go(exit_.direction)
        game.talk()


def containers(node: Any, seen: set[int] | None = None, depth: int = 0) -> list[dict | list]:
    """The dicts and lists inside `node` (each once, not below what we put in ourselves), to
    pick one to damage."""
    seen = set() if seen is None else seen
    if not isinstance(node, dict | list) or id(node) in seen or depth > 8:
        return []
    seen.add(id(node))
    found: list[dict | list] = [node]
    for child in node.values() if isinstance(node, dict) else node:
        found.extend(containers(child, seen, depth + 1))
    return found


@settings(FUZZ, max_examples=100)
@given(data=st.data())
def test_content_with_one_thing_damaged(data):
    content = json.loads(json.dumps(CONTENT))  # a fresh deep copy
    for _ in range(data.draw(st.integers(1, 3))):
        node = data.draw(st.sampled_from(containers(content)))
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        action = data.draw(st.sampled_from(["replace", "delete", "add"] if keys else ["add"]))
        if action == "add" and isinstance(node, dict):
            node[data.draw(st.one_of(st.text(max_size=6), st.integers(), st.none()))] = data.draw(
                HOSTILE
            )
        elif action == "add":
            node.append(data.draw(HOSTILE))
        elif action == "delete":
            del node[data.draw(st.sampled_from(keys))]
        else:
            node[data.draw(st.sampled_from(keys))] = data.draw(HOSTILE)
    check_world(outcome(lambda: parse_world(content, "game.yaml"), ContentError, one_line=False))


@FEW
@given(content=st.one_of(YAML_TEXT, st.text(max_size=60), st.binary(max_size=60)))
def test_any_text_as_a_content_file(tmp_path, content):
    path = write(tmp_path / "game.yaml", content)
    check_world(outcome(lambda: load_world(path), ContentError, one_line=False))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("title: 2024-13-01", "month must be in 1..12"),
        ("rooms: {1: {name: a, description: b}, a: {name: a, description: b}}", "room id 1"),
        ("rooms: {a: {1: x, b: y, name: a, description: b}}", "unknown keys ['b', 1]"),
        ("locks: {x: {name: a, description: b, digit: 0x" + "f" * 5000 + "}}", "a huge number"),
        ("locks: {x: {name: a, description: b, digit: *a6}}", "'digit' must be a whole number"),
        ("rooms: " + "[" * 3000 + "]" * 3000, "nested too deeply"),
    ],
)
def test_content_files_that_used_to_crash(tmp_path, change, message):
    lines = [f"{key}: {json.dumps(CONTENT[key])}" for key in CONTENT]  # JSON is YAML
    key = change.split(":")[0]
    text = "\n".join(change if line.startswith(f"{key}:") else line for line in lines)
    path = write(tmp_path / "game.yaml", bomb_yaml("bomb") + text)
    with pytest.raises(ContentError, match=re.escape(message)):
        load_world(path)


# --- save files -----------------------------------------------------------------------------


def check_game(game: Game | None) -> None:
    if game is None:
        return
    progress = game.progress
    assert isinstance(progress.room, str) and progress.room in WORLD.rooms
    assert all(lock in WORLD.locks for lock in progress.opened)
    assert type(progress.moves) is int and progress.moves >= 0 and type(progress.won) is bool
    assert progress.talking_to is None or progress.talking_to in WORLD.rooms[progress.room].npcs
    for line in progress.log:
        render(line)  # the story log shows it as Rich markup: MarkupError would stop the game
    game.describe()


def good_save() -> dict[str, Any]:
    return {"format": 1, "title": WORLD.title, **asdict(Progress(room=WORLD.start))}


DELETE = object()
MARKUP = st.text(alphabet="[]/bi@=x( ", max_size=12)  # much of it broken Rich markup
NAMES = st.sampled_from([*WORLD.rooms, *WORLD.locks, *WORLD.npcs, "moon", ""])
WRONG = {  # for each field of a save: right values, wrong types, unknown names, negative numbers
    "format": st.sampled_from([1, 1.0, True, 0, 2, "1", None]),
    "title": st.sampled_from([WORLD.title, "Other", "[/b]", None, ["x"]]),
    "room": NAMES | JSON_VALUES,
    "opened": st.lists(NAMES | JSON_VALUES, max_size=3) | JSON_VALUES,
    "talking_to": NAMES | JSON_VALUES,
    "moves": st.integers(-(2**70), 2**70) | st.floats() | JSON_VALUES,
    "won": st.sampled_from([True, False, "false", 0, 1]) | JSON_VALUES,
    "log": st.lists(MARKUP | JSON_VALUES, max_size=4) | JSON_VALUES,
    "extra": JSON_VALUES,
}


@settings(FUZZ, max_examples=100)
@given(
    changes=st.fixed_dictionaries(
        {}, optional={key: value | st.just(DELETE) for key, value in WRONG.items()}
    )
)
def test_saves_with_wrong_types_and_unknown_names(tmp_path, changes):
    data = good_save()
    for key, value in changes.items():
        if value is DELETE:
            data.pop(key, None)
        else:
            data[key] = value
    path = write(tmp_path / "save.json", json.dumps(data))
    check_game(outcome(lambda: Game.load(WORLD, path), SaveError))


@FEW
@given(
    content=st.one_of(
        st.binary(max_size=80),
        JSON_VALUES.map(json.dumps),
        st.sampled_from(
            [
                "",
                "[" * 100_000 + "]" * 100_000,
                '{"format": 1, "title": "The Lantern Vault", "room": "square", "moves": Infinity}',
                '{"format": 1, "title": "The Lantern Vault", "room": "square", "moves": NaN}',
                '{"format": 1, "title": ' + "9" * 5000 + "}",
                '\ufeff{"format": 1}',
            ]
        ),
    )
)
def test_any_bytes_as_a_save_file(tmp_path, content):
    path = write(tmp_path / "save.json", content)
    check_game(outcome(lambda: Game.load(WORLD, path), SaveError))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"moves": float("inf")}, "'moves' must be a whole number"),  # OverflowError before
        ({"moves": -3}, "'moves' must be a whole number"),
        ({"won": "false"}, "'won' must be true or false"),  # was won, as bool("false")
        ({"log": "abc"}, "'log' must be a list of strings"),  # was ['a', 'b', 'c']
        ({"opened": {"cellar_door": 1}}, "'opened' must be a list of strings"),
        ({"room": ["inn"]}, "'room' must be a room id"),
    ],
)
def test_saves_that_used_to_load_wrong_or_crash(tmp_path, change, message):
    path = write(tmp_path / "save.json", json.dumps({**good_save(), **change}))
    with pytest.raises(SaveError, match=re.escape(message)):
        Game.load(WORLD, path)


def test_a_log_line_of_broken_markup_is_shown_as_written(tmp_path):
    path = write(tmp_path / "save.json", json.dumps({**good_save(), "log": ["[/b] hi", "[b]ok"]}))
    game = Game.load(WORLD, path)
    assert game.progress.log == [r"\[/b] hi", "[b]ok"]
    assert render(game.progress.log[0]).plain == "[/b] hi"


# --- through the real command ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def stderr_lines(result) -> list[str]:
    assert "Traceback" not in result.stderr, result.stderr
    return [line for line in result.stderr.splitlines() if line.strip()]


def test_digits_command_with_garbage_files_and_a_bad_url(tmp_path):
    garbage = write(tmp_path / "garbage.npy", b"\x93NUMPY\x01\x00\x20\x00{'descr': '<f8', ")
    latin = write(tmp_path / "latin.txt", "ééé\n#.#\n".encode("latin-1"))
    result = maas("digits", str(garbage), str(latin), "--url", f"127.0.0.1:{free_port()}")
    lines = stderr_lines(result)
    assert result.returncode == 1 and len(lines) == 3, result.stderr
    assert "garbage.npy" in lines[0] and "not a valid .npy array" in lines[0]
    assert "latin.txt" in lines[1] and "not UTF-8" in lines[1]
    assert "2 of 2 file(s) could not be read" in lines[2]

    good = write(tmp_path / "seven.txt", "####\n...#\n..#.\n.#..\n")
    result = maas("digits", str(good), "--url", "http://[::1")  # a ValueError traceback before
    assert result.returncode == 1 and stderr_lines(result) == [
        "error: 'http://[::1' is not HOST:PORT (e.g. 127.0.0.1:8000)"
    ]


def test_chat_command_with_a_garbage_npc_file(tmp_path):
    npc = write(tmp_path / "npc.yaml", "name: 2024-13-01\nlines: [hi]\n")  # ValueError before
    result = maas("chat", str(npc), "--url", f"127.0.0.1:{free_port()}")
    lines = stderr_lines(result)
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert "not valid YAML" in lines[0] and "month must be in 1..12" in lines[0]
