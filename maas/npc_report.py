"""`maas npc report`: what players said that the NPCs did not answer well, per NPC, most
frequent first, so a writer knows which line (or example) to add next.

Three lists, each pointing at a fix:
- fallbacks: nothing scored above the threshold. Grouped by the line that came nearest, because
  that is the line a writer would extend with an example (or the gap a new line must fill).
- flagged: players said /wrong after a confident reply: a line that answers the wrong thing.
- near misses: understood, but the second line scored within `margin` of the first: two lines
  the model confuses, whichever won.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from rich import box
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from maas_client.playtest_log import LogContents

NEAR_MISS_MARGIN = 0.05


def _normal(said: str) -> str:
    return " ".join(re.sub(r"[^\w\s']", " ", said.lower()).split())


@dataclass
class Finding:
    """One group of turns: what the players said (distinct, most frequent first) and why."""

    key: str  # a line id, or "A / B" for a confused pair
    count: int = 0
    said: Counter = field(default_factory=Counter)  # by normalised text: "Hi!" is "hi"
    first: dict[str, str] = field(default_factory=dict)  # what a player first typed for it
    scores: list[float] = field(default_factory=list)

    def add(self, said: str, score: float) -> None:
        self.count += 1
        key = _normal(said) or said
        self.said[key] += 1
        self.first.setdefault(key, said)
        self.scores.append(score)

    def distinct(self) -> list[tuple[str, int]]:
        return [(self.first[key], n) for key, n in self.said.most_common()]

    def as_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "turns": self.count,
            "said": [{"text": t, "times": n} for t, n in self.distinct()],
            "best_score": round(max(self.scores), 4),
        }


@dataclass
class NpcFindings:
    npc: str
    turns: int = 0
    understood: int = 0
    versions: Counter = field(default_factory=Counter)
    fallbacks: dict[str, Finding] = field(default_factory=dict)
    flagged: dict[str, Finding] = field(default_factory=dict)
    near_misses: dict[str, Finding] = field(default_factory=dict)

    @staticmethod
    def _group(groups: dict[str, Finding], key: str, said: str, score: float) -> None:
        groups.setdefault(key, Finding(key)).add(said, score)

    def ranked(self, groups: dict[str, Finding]) -> list[Finding]:
        return sorted(groups.values(), key=lambda f: (-f.count, f.key))

    def as_dict(self) -> dict[str, Any]:
        return {
            "npc": self.npc,
            "turns": self.turns,
            "understood": self.understood,
            "model_versions": dict(self.versions),
            **{
                name: [f.as_dict() for f in self.ranked(getattr(self, name))]
                for name in ("fallbacks", "flagged", "near_misses")
            },
        }


def analyse(contents: LogContents, margin: float = NEAR_MISS_MARGIN) -> list[NpcFindings]:
    """Per NPC, busiest first."""
    by_npc: dict[str, NpcFindings] = defaultdict(lambda: NpcFindings(""))
    for turn in contents.turns:
        found = by_npc[turn["npc"]]
        found.npc = turn["npc"]
        found.turns += 1
        found.versions[f"{turn.get('model') or '?'} v{turn.get('model_version') or '?'}"] += 1
        best, second = turn.get("best") or {}, turn.get("second") or {}
        best_id, score = str(best.get("id", "?")), float(best.get("score", 0.0))
        if turn["turn"] in contents.flagged:
            found._group(found.flagged, best_id, turn["said"], score)
        if not turn["understood"]:
            found._group(found.fallbacks, best_id, turn["said"], score)
            continue
        found.understood += 1
        if second and score - float(second.get("score", -1.0)) < margin:
            pair = " / ".join(sorted((best_id, str(second.get("id", "?")))))
            found._group(found.near_misses, pair, turn["said"], score)
    return sorted(by_npc.values(), key=lambda f: (-f.turns, f.npc))


def _said(finding: Finding, top: int) -> Text:
    shown = [f"{text!r}" + (f" x{n}" if n > 1 else "") for text, n in finding.distinct()[:top]]
    more = len(finding.said) - top
    return Text("; ".join(shown) + (f"; +{more} more" if more > 0 else ""))


def _table(title: str, hint: str, findings: list[Finding], head: str, top: int) -> Table:
    table = Table(
        title=f"{title} [dim]({hint})[/]", title_justify="left", box=box.SIMPLE_HEAD,
        expand=True, pad_edge=False,
    )  # fmt: skip
    table.add_column("turns", justify="right", width=5, no_wrap=True)
    table.add_column(head, ratio=1, overflow="fold")
    table.add_column("best", justify="right", width=5, no_wrap=True)
    table.add_column("what players said", ratio=3, overflow="fold")
    for finding in findings[:top]:
        table.add_row(
            str(finding.count), Text(finding.key), f"{max(finding.scores):.2f}", _said(finding, 3)
        )
    if len(findings) > top:
        table.add_row("", Text(f"+{len(findings) - top} more", style="dim"), "", "")
    return table


def render(findings: list[NpcFindings], console: Console, *, top: int = 8) -> None:
    for found in findings:
        share = found.understood / found.turns if found.turns else 0.0
        versions = ", ".join(f"{v} ({n})" for v, n in found.versions.most_common())
        parts: list[Any] = [
            Text.assemble(
                (found.npc, "bold"),
                f": {found.turns} turns, {share:.0%} understood, "
                f"{sum(f.count for f in found.flagged.values())} flagged wrong",
            ),
            Text(f"served by {versions}", style="dim"),
        ]
        sections = (
            ("Fallbacks", "no line reached the threshold; nearest line", found.fallbacks,
             "nearest line"),
            ("Flagged /wrong", "a confident reply the player marked wrong", found.flagged,
             "line given"),
            ("Near misses", "the two best lines within the margin", found.near_misses,
             "lines confused"),
        )  # fmt: skip
        for title, hint, groups, head in sections:
            if groups:
                parts.append(_table(title, hint, found.ranked(groups), head, top))
        console.print(Group(*parts))
        console.print()
