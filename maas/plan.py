"""Capacity planning: bench figures and the players' request rates -> replicas.

A bench point is a closed loop: `clients` callers, each sending its next request as soon as the
last one answered, gives `throughput` at a `p99`. The plan takes, per model, the best throughput
whose p99 fits the latency budget and runs each replica at only part of it (the headroom absorbs
bursts and the minute an autoscaler needs to add a pod). Demand comes from the load test's own
player profile (maas_client.player_profile), so a plan can be checked by `maas loadtest`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from maas.errors import MaasError
from maas_client.player_profile import requests_per_player_s

# What the game calls for each kind of work, best first: a bench report gives some of them.
TALK_SOURCES = (
    ("npc_turn", "realistic"),  # `maas bench --npc-turns`: many NPCs, distinct player lines
    ("npc_dialogue", "realistic"),
    ("npc_dialogue", "one NPC"),  # `maas bench`: one NPC, 8 lines (de-duplication flatters it)
)
DRAW_SOURCES = (("mnist", "one drawing per request"),)


@dataclass(frozen=True)
class BenchPoint:
    """One measured load level, in the game's units (talk turns or drawings per second)."""

    model: str
    scenario: str
    clients: int
    per_s: float
    p99_ms: float
    errors: int
    source: Path
    machine: str


@dataclass(frozen=True)
class ModelPlan:
    work: str  # "talk" or "draw"
    point: BenchPoint
    demand_s: float
    usable_per_replica_s: float

    @property
    def load(self) -> float:
        """Replicas' worth of work, fractional: what this model adds to a shared deployment."""
        return self.demand_s / self.usable_per_replica_s

    @property
    def replicas_alone(self) -> int:
        """Replicas if this model had a deployment of its own."""
        return max(1, math.ceil(self.load - 1e-9))


@dataclass(frozen=True)
class Plan:
    players: int
    headroom: float
    p99_budget_ms: float
    rates: dict[str, float]
    models: list[ModelPlan]

    @property
    def shared_replicas(self) -> int:
        """One Triton serves every model (docker-compose.yml, deploy/k8s): their loads add up."""
        return max(1, math.ceil(sum(m.load for m in self.models) - 1e-9))

    @property
    def machines(self) -> list[str]:
        return sorted({m.point.machine for m in self.models})


def read_points(path: Path) -> list[BenchPoint]:
    """Every load level of a `maas bench` or `maas bench --npc-turns` JSON report."""
    try:
        report = json.loads(path.read_text())
    except FileNotFoundError:
        raise MaasError(f"bench report {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MaasError(f"bench report {path} is not readable JSON: {error}") from None
    if not isinstance(report, dict) or not {"machine", "served", "in_process"} <= report.keys():
        if isinstance(report, dict) and {"machine", "rows", "ratios"} <= report.keys():
            return _npc_turn_points(report, path)
        raise MaasError(
            f"{path} is not a `maas bench` report (expected the keys machine and served, or "
            "machine and rows from `maas bench --npc-turns`)"
        )
    return _bench_points(report, path)


def _bench_points(report: dict, path: Path) -> list[BenchPoint]:
    """`maas bench` counts items (pairs for npc_dialogue): a turn is one NPC's lines."""
    npc = report["in_process"].get("npc_dialogue", {}).get("rows") or [{}]
    lines_per_turn = npc[0].get("batch", 1) / npc[0].get("turns", 1)
    points = []
    for row in report["served"]:
        if row.get("server") != "triton, dynamic batching":
            continue
        per_item = lines_per_turn if row["model"] == "npc_dialogue" else 1
        scenario = "one NPC" if row["model"] == "npc_dialogue" else "one drawing per request"
        points.append(
            BenchPoint(
                row["model"], scenario, row["concurrency"], row["throughput"] / per_item,
                row["p99_ms"], row["errors"], path, report["machine"],
            )
        )  # fmt: skip
    return points


def _npc_turn_points(report: dict, path: Path) -> list[BenchPoint]:
    return [
        BenchPoint(
            row["model"], row["scenario"], row["clients"], row["turns_per_s"], row["p99_ms"],
            row["errors"], path, report["machine"],
        )
        for row in report["rows"]
        if row["model"] in ("npc_turn", "npc_dialogue") and row.get("turns_per_s")
    ]  # fmt: skip


def best_point(points: list[BenchPoint], sources: tuple, p99_budget_ms: float) -> BenchPoint:
    """The first model the reports measured, at its best throughput within the budget."""
    for model, scenario in sources:
        measured = [p for p in points if p.model == model and p.scenario.startswith(scenario)]
        if not measured:
            continue
        fitting = [p for p in measured if p.errors == 0 and p.p99_ms <= p99_budget_ms]
        if not fitting:
            fastest = min(measured, key=lambda p: p.p99_ms)
            raise MaasError(
                f"no {model} load level in the bench keeps p99 within {p99_budget_ms:g} ms "
                f"(best: {fastest.p99_ms:g} ms at {fastest.clients} "
                f"client{'s' if fastest.clients != 1 else ''}, "
                f"{fastest.source.name}): raise --p99-ms, or bench a faster machine"
            )
        return max(fitting, key=lambda p: p.per_s)
    wanted = " or ".join(m for m, _ in sources)
    raise MaasError(
        f"the bench reports measured no {wanted}: give a report of `maas bench` "
        "(mnist, npc_dialogue) and of `maas bench --npc-turns` (npc_turn)"
    )


def make_plan(
    players: int, reports: list[Path], *, headroom: float = 0.3, p99_budget_ms: float = 500.0
) -> Plan:
    if players < 1:
        raise MaasError(f"--players must be at least 1, not {players}")
    if not 0 <= headroom <= 0.9:
        raise MaasError(f"--headroom is the share of capacity kept free: 0 to 0.9, not {headroom}")
    if not reports:
        raise MaasError(
            "no bench report: run `maas bench` and `maas bench --npc-turns` first (they write "
            "reports/), or give --bench FILE"
        )
    points = [p for path in reports for p in read_points(path)]
    rates = requests_per_player_s()
    models = []
    for work, sources in (("talk", TALK_SOURCES), ("draw", DRAW_SOURCES)):
        point = best_point(points, sources, p99_budget_ms)
        models.append(ModelPlan(work, point, players * rates[work], point.per_s * (1 - headroom)))
    return Plan(players, headroom, p99_budget_ms, rates, models)


def newest_reports(folder: Path) -> list[Path]:
    """The newest `maas bench` report and the newest `--npc-turns` one, where they exist."""
    npc = sorted(folder.glob("bench-npc-turns-*.json"))
    plain = sorted(p for p in folder.glob("bench-*.json") if p not in npc)
    return [found[-1] for found in (plain, npc) if found]
