"""The playtest log: every turn a player had with an NPC, kept on this machine as JSON Lines
so that writers see what players said (`maas npc report`), never sent anywhere.

Append-only on purpose: a flag (`/wrong`) is its own record pointing at the turn it marks, so
a log cut short by a crash loses at most one line and several games may share a file. Bounded
the way logging's RotatingFileHandler is: past `max_bytes` the file becomes `NAME.1` (the one
before that is dropped), so a long-running game never fills the disk.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from maas_client.errors import MaasClientError
from maas_client.npc import Reply
from maas_client.npc_file import Npc

MAX_BYTES = 5 * 1024 * 1024  # a long evening of play is ~1 MB
SCHEMA = 1


class PlaytestLogError(MaasClientError):
    """A log that cannot be read or written, with which file and why."""


def _line_record(npc: Npc, reply: Reply, index: int | None) -> dict[str, Any] | None:
    if index is None:
        return None
    line = npc.lines[index]
    return {"id": line.id, "text": line.text, "score": round(float(reply.scores[index]), 4)}


class PlaytestLog:
    """One log file; thread-safe (the game writes from worker threads)."""

    def __init__(self, path: Path, *, source: str, max_bytes: int = MAX_BYTES) -> None:
        self.path = Path(path).expanduser()
        self.source = source  # "game" or "chat": who wrote the turn
        self.max_bytes = max_bytes
        self.last_turn: str | None = None  # the id /wrong flags
        self._lock = threading.Lock()

    def turn(self, npc: Npc, said: str, reply: Reply, *, npc_id: str = "") -> str:
        """Records one turn; returns its id (what a flag points at)."""
        ranked = sorted(range(len(reply.scores)), key=lambda i: reply.scores[i], reverse=True)
        second = ranked[1] if len(ranked) > 1 else None
        best = _line_record(npc, reply, reply.index)
        if best is not None and reply.matched and reply.matched != best["text"]:
            best["via_example"] = reply.matched
        turn_id = uuid.uuid4().hex[:12]
        self._append(
            {
                "kind": "turn",
                "turn": turn_id,
                "npc": npc.name,
                "npc_id": npc_id or npc.name,
                "said": said,
                "reply": reply.text,
                "understood": reply.understood,
                "threshold": round(float(reply.threshold), 4),
                "best": best,
                "second": _line_record(npc, reply, second),
                "model": reply.model,
                "model_version": reply.model_version,
            }
        )
        self.last_turn = turn_id
        return turn_id

    def flag_wrong(self, note: str = "") -> dict[str, Any]:
        """Marks the last turn as a confident wrong reply; PlaytestLogError when there is none."""
        if self.last_turn is None:
            raise PlaytestLogError("nothing to flag yet: say something to someone first")
        record = {"kind": "flag", "flag": "wrong", "turn": self.last_turn, "note": note}
        self._append(record)
        return record

    def _append(self, record: dict[str, Any]) -> None:
        record = {"schema": SCHEMA, "time": round(time.time(), 3), "source": self.source, **record}
        data = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                if self.path.exists() and self.path.stat().st_size + len(data) > self.max_bytes:
                    os.replace(self.path, self.path.with_name(self.path.name + ".1"))
                with self.path.open("ab") as out:
                    out.write(data)
            except OSError as error:
                message = f"cannot write the playtest log {self.path}: {error}"
                raise PlaytestLogError(message) from None


@dataclass
class LogContents:
    turns: list[dict[str, Any]]
    flagged: set[str]  # turn ids flagged wrong
    skipped: list[str]  # "FILE:LINE: why" for records that could not be read


_TURN_KEYS = {"turn": str, "npc": str, "said": str, "understood": bool}


def read_logs(paths: Iterable[Path]) -> LogContents:
    """Every turn and flag of the given logs (and their rotated `.1` files are separate
    arguments); unreadable records are skipped and named, unreadable files are an error."""
    contents = LogContents([], set(), [])
    for path in paths:
        for number, raw in _lines(Path(path)):
            where = f"{path}:{number}"
            try:
                record = json.loads(raw)
            except ValueError:
                contents.skipped.append(f"{where}: not JSON")
                continue
            if not isinstance(record, dict):
                contents.skipped.append(f"{where}: not an object")
            elif record.get("kind") == "flag" and isinstance(record.get("turn"), str):
                contents.flagged.add(record["turn"])
            elif record.get("kind") == "turn":
                wrong = [k for k, kind in _TURN_KEYS.items() if not isinstance(record.get(k), kind)]
                wrong += [k for k in ("best", "second") if not _line_ok(record.get(k))]
                if wrong:
                    contents.skipped.append(f"{where}: turn without a valid {', '.join(wrong)}")
                else:
                    contents.turns.append(record)
            else:
                contents.skipped.append(f"{where}: unknown kind {record.get('kind')!r}")
    return contents


def _line_ok(value: Any) -> bool:
    """A turn's best or second line: None, or an id and a numeric score."""
    if value is None:
        return True
    return (
        isinstance(value, dict)
        and isinstance(value.get("id"), str)
        and isinstance(value.get("score"), int | float)
        and not isinstance(value.get("score"), bool)
    )


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        with path.open(encoding="utf-8", errors="replace") as log:
            for number, raw in enumerate(log, 1):
                if raw.strip():
                    yield number, raw
    except FileNotFoundError:
        raise PlaytestLogError(f"{path}: no such playtest log") from None
    except IsADirectoryError:
        raise PlaytestLogError(f"{path}: a folder, not a playtest log (.jsonl)") from None
    except OSError as error:
        raise PlaytestLogError(f"cannot read {path}: {error}") from None
