"""`maas plan`: how many Triton replicas a number of concurrent players needs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from maas.cli_common import console
from maas_client.player_profile import DRAW_WEIGHT, TALK_WEIGHT, THINK_TIME_S


def plan(
    players: Annotated[int, typer.Option(help="Concurrent players at the peak", min=1)],
    bench: Annotated[
        list[Path] | None,
        typer.Option(
            help="A `maas bench` or `maas bench --npc-turns` JSON report; repeat for both "
            "(default: the newest of each in reports/)"
        ),
    ] = None,
    p99_ms: Annotated[
        float, typer.Option(help="Latency budget: only load levels with p99 within it", min=1)
    ] = 500.0,
    headroom: Annotated[
        float,
        typer.Option(help="Share of each replica's measured capacity kept free", min=0, max=0.9),
    ] = 0.3,
) -> None:
    """Replicas per model and in all, from a bench run and the players' request rates.

    Uses the bench's throughput and p99, and the load test's think time and talk:draw mix."""
    from maas.paths import PROJECT_ROOT
    from maas.plan import make_plan, newest_reports

    reports = bench or newest_reports(PROJECT_ROOT / "reports")
    result = make_plan(players, reports, headroom=headroom, p99_budget_ms=p99_ms)
    low, high = THINK_TIME_S
    console.print(
        f"[bold]{players:,} concurrent players[/]: think {low:g}-{high:g} s, talk:draw "
        f"{TALK_WEIGHT}:{DRAW_WEIGHT}, so each asks {result.rates['talk']:.2f} talk turns/s "
        f"and {result.rates['draw']:.2f} drawings/s. Replicas run at most at "
        f"{1 - headroom:.0%} of the capacity measured within p99 {p99_ms:g} ms.",
        highlight=False,
    )
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in ("work", "model", "demand/s", "replica/s", "clients", "p99 ms", "replicas"):
        table.add_column(column, justify="left" if column in ("work", "model") else "right")
    for m in result.models:
        table.add_row(
            m.work, m.point.model, f"{m.demand_s:,.0f}", f"{m.point.per_s:,.1f}",
            str(m.point.clients), f"{m.point.p99_ms:,.0f}", f"{m.replicas_alone:,}",
        )  # fmt: skip
    console.print(table)
    console.print(
        "replica/s: measured per replica at that many closed-loop clients; replicas: if the "
        "model had a deployment of its own.",
        highlight=False,
    )
    console.print(
        f"[bold]One Triton for all models (docker-compose.yml, deploy/k8s): "
        f"{result.shared_replicas:,} replicas[/], {result.shared_replicas + 1:,} with one spare "
        "for a node drain (the PodDisruptionBudget lets one go): the autoscaler's "
        "maxReplicas should reach it.",
        highlight=False,
    )
    for m in result.models:
        console.print(
            f"  {m.work}: {m.point.model} ({m.point.scenario}) from {m.point.source.name}",
            highlight=False,
        )
    for folder in sorted({str(m.point.source.resolve().parent) for m in result.models}):
        console.print(f"  (reports in {folder})", highlight=False)
    if any(m.point.scenario.startswith("one NPC") for m in result.models):
        console.print(
            "[yellow]Talk was measured with one NPC and eight player lines, which flatters it "
            "(they de-duplicate in merged batches): add a `maas bench --npc-turns` report.",
            highlight=False,
        )
    machines = result.machines
    console.print(f"Machine kind: {' | '.join(machines)} (one replica each).", highlight=False)
    if len(machines) > 1:
        console.print(
            "[yellow]The reports come from different machines: bench both on the kind you "
            "will deploy.",
            highlight=False,
        )


def register(app: typer.Typer) -> None:
    app.command("plan")(plan)
