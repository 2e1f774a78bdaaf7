"""NPC files: what a game writer gives each character to say, in YAML or JSON.

One NPC per file (`name`, optional `voice` and `fallback`, `lines`), or several under `npcs:`
(a list, or a mapping by id as in the game's adventure files).
A line is a string or a mapping with `text` (and optional `id`; `examples`: ways a player might
ask for it, which the line also scores as, so a writer fixes a miss without retraining; and
`player`: player lines used only by training and evaluation). Validated on load with errors
naming the place, because a writer edits these by hand.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maas_client.errors import MaasClientError

MAX_LINES = 64  # npc_dialogue's max_batch_size: one request scores the whole repertoire
MAX_TEXTS = 256  # lines and examples together: npc_turn's MAX_CANDIDATES, one request per turn
DEFAULT_FALLBACK = "Hm? I don't follow you."


class NpcFileError(MaasClientError):
    """An NPC file that cannot be used, with where and why."""


@dataclass(frozen=True)
class NpcLine:
    text: str
    id: str
    player: tuple[str, ...] = ()
    examples: tuple[str, ...] = ()

    @property
    def texts(self) -> tuple[str, ...]:
        """What the line scores as: its own text, then its examples."""
        return (self.text, *self.examples)


@dataclass(frozen=True)
class Npc:
    name: str
    lines: tuple[NpcLine, ...]
    voice: str = ""
    fallback: str = DEFAULT_FALLBACK
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def texts(self) -> list[str]:
        return [line.text for line in self.lines]

    @property
    def scored_texts(self) -> list[str]:
        """Every line's text and examples, line after line (what a turn sends)."""
        return [text for line in self.lines for text in line.texts]


def load_npcs(path: Path) -> list[Npc]:
    """Every NPC in a YAML or JSON file (one NPC, or a list under `npcs`)."""
    data = _read(path)
    if isinstance(data, dict) and "npcs" in data:
        entries = data["npcs"]
        if isinstance(entries, dict) and entries:  # an adventure file: characters by id
            return [parse_npc(entry, f"{path}: npcs.{key}") for key, entry in entries.items()]
        if not isinstance(entries, list) or not entries:
            raise NpcFileError(f"{path}: 'npcs' must be a non-empty list (or mapping)")
        return [parse_npc(entry, f"{path}: npcs[{i}]") for i, entry in enumerate(entries)]
    return [parse_npc(data, str(path))]


def load_npc(path: Path) -> Npc:
    """The single NPC of a file (the first, if it holds several)."""
    return load_npcs(path)[0]


def parse_npc(data: Any, where: str) -> Npc:
    if not isinstance(data, dict):
        raise NpcFileError(f"{where}: expected a mapping with 'name' and 'lines'")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        raise NpcFileError(f"{where}: 'name' must be a non-empty string")
    where = f"{where} ({' '.join(name.split())})"  # one line, whatever the name holds
    raw_lines = data.get("lines")
    if not isinstance(raw_lines, list) or not raw_lines:
        raise NpcFileError(f"{where}: 'lines' must be a non-empty list of what the NPC says")
    if len(raw_lines) > MAX_LINES:
        raise NpcFileError(f"{where}: {len(raw_lines)} lines; at most {MAX_LINES} per NPC")
    lines = tuple(_parse_line(item, f"{where}: lines[{i}]", i) for i, item in enumerate(raw_lines))
    texts = sum(len(line.texts) for line in lines)
    if texts > MAX_TEXTS:
        raise NpcFileError(
            f"{where}: {texts} lines and examples together; at most {MAX_TEXTS} per NPC"
        )
    seen: set[str] = set()
    for line in lines:
        if line.id in seen:
            raise NpcFileError(f"{where}: line id {line.id!r} is used twice")
        seen.add(line.id)
    voice, fallback = data.get("voice", ""), data.get("fallback", DEFAULT_FALLBACK)
    for key, value in (("voice", voice), ("fallback", fallback)):
        if not isinstance(value, str):
            raise NpcFileError(f"{where}: '{key}' must be a string")
    known = {"name", "voice", "fallback", "lines"}
    extra = {k: v for k, v in data.items() if k not in known}
    return Npc(name.strip(), lines, voice, fallback.strip() or DEFAULT_FALLBACK, extra)


def _parse_line(item: Any, where: str, index: int) -> NpcLine:
    if isinstance(item, str):
        item = {"text": item}
    if not isinstance(item, dict):
        raise NpcFileError(f"{where}: a line is a string or a mapping with 'text'")
    text = item.get("text")
    if not isinstance(text, str) or not text.strip():
        raise NpcFileError(f"{where}: 'text' must be a non-empty string")
    line_id = item.get("id", str(index))
    huge = isinstance(line_id, int) and line_id.bit_length() > 64  # str() refuses 4300 digits
    if not isinstance(line_id, str | int) or huge:
        raise NpcFileError(f"{where}: 'id' must be a string")
    player = item.get("player", [])
    if not isinstance(player, list) or not all(isinstance(p, str) for p in player):
        raise NpcFileError(f"{where}: 'player' must be a list of strings")
    examples = item.get("examples", [])
    if not isinstance(examples, list) or not all(
        isinstance(e, str) and e.strip() for e in examples
    ):
        raise NpcFileError(f"{where}: 'examples' must be a list of non-empty strings")
    return NpcLine(text.strip(), str(line_id), tuple(player), tuple(e.strip() for e in examples))


def _read(path: Path) -> Any:
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise NpcFileError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise NpcFileError(f"{path}: cannot read it ({error})") from None
    if path.suffix.lower() == ".json":
        try:
            return json.loads(raw)
        except json.JSONDecodeError as error:
            raise NpcFileError(
                f"{path}: not valid JSON (line {error.lineno}: {error.msg})"
            ) from None
        except ValueError as error:  # a number too long for Python to convert
            raise NpcFileError(f"{path}: not valid JSON: {error}") from None
        except RecursionError:
            raise NpcFileError(f"{path}: not valid JSON: nested too deeply") from None
    if path.suffix.lower() not in (".yaml", ".yml"):
        raise NpcFileError(f"{path}: expected a .yaml, .yml or .json file")
    if importlib.util.find_spec("yaml") is None:
        raise NpcFileError(f"{path}: YAML needs PyYAML (pip install pyyaml) or use JSON")
    return parse_yaml(raw, str(path))


def parse_yaml(text: str, where: str) -> Any:
    """YAML text as data (PyYAML must be installed); every way it can be wrong is one
    NpcFileError line naming `where`."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(error, "problem", None) or error
        raise NpcFileError(f"{where}: not valid YAML{at}: {problem}") from None
    except ValueError as error:  # a date like 2024-13-01, or `!!int x`: PyYAML lets these escape
        raise NpcFileError(
            f"{where}: not valid YAML: {error} (quote values that look like dates or numbers)"
        ) from None
    except RecursionError:
        raise NpcFileError(f"{where}: not valid YAML: nested too deeply") from None
