"""Who is in a process group, read from /proc: Triton and its backend stubs share one (the
supervisor starts Triton in a new session), so the group is the server's whole footprint."""

from __future__ import annotations

from pathlib import Path


def group_members(pgid: int) -> dict[int, str]:
    """pid -> state letter ('R', 'S', 'Z', ...) of every process in the group."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:
                found[int(entry.name)] = fields[0]
        except (OSError, IndexError, ValueError):
            continue
    return found
