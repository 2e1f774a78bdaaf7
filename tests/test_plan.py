"""`maas plan`'s choices on reports whose figures are set here, so each rule is visible: the
best level within the latency budget, levels with errors ignored, npc_turn preferred, loads of
models sharing one Triton added. (A plan from a real bench run: tests/test_bench.py.)"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from maas.errors import MaasError
from maas.plan import make_plan, newest_reports
from tests.cli_calls import maas


def _bench(path: Path, served: list[tuple], machine: str = "2 cores, test CPU") -> Path:
    """A `maas bench` report: npc_dialogue turns of 12 lines (in-process batch 12 = 1 turn)."""
    rows = [
        {"model": m, "server": "triton, dynamic batching", "concurrency": c, "throughput": t,
         "p99_ms": p99, "errors": e}
        for m, c, t, p99, e in served
    ]  # fmt: skip
    rows.append({"model": "mnist", "server": "fastapi + uvicorn", "concurrency": 64,
                 "throughput": 1e9, "p99_ms": 1, "errors": 0})  # fmt: skip
    in_process = {"npc_dialogue": {"rows": [{"batch": 12, "turns": 1, "throughput": 1}]}}
    path.write_text(json.dumps({"machine": machine, "served": rows, "in_process": in_process}))
    return path


def _turns(path: Path, rows: list[tuple], machine: str = "2 cores, test CPU") -> Path:
    """A `maas bench --npc-turns` report."""
    found = [
        {"scenario": s, "model": m, "clients": c, "turns_per_s": t, "p99_ms": p99, "errors": e}
        for s, m, c, t, p99, e in rows
    ]
    path.write_text(json.dumps({"machine": machine, "rows": found, "ratios": {}}))
    return path


def test_plan_takes_the_best_level_within_budget_and_adds_shared_loads(tmp_path):
    bench = _bench(
        tmp_path / "bench-1.json",
        [("mnist", 1, 300, 5, 0), ("mnist", 8, 1000, 40, 0), ("mnist", 32, 1400, 900, 0),
         ("npc_dialogue", 8, 1200, 300, 0), ("npc_dialogue", 32, 2400, 200, 3)],
    )  # fmt: skip
    plan = make_plan(1000, [bench], headroom=0.3, p99_budget_ms=500)
    talk, draw = plan.models
    # npc_dialogue: the 32-client level had errors; 1200 pairs/s = 100 turns of 12 lines
    assert (talk.point.model, talk.point.clients, talk.point.per_s) == ("npc_dialogue", 8, 100)
    assert (draw.point.clients, draw.point.per_s) == (8, 1000)  # 32 clients: p99 over budget
    assert talk.demand_s == pytest.approx(600) and draw.demand_s == pytest.approx(200)
    assert talk.replicas_alone == math.ceil(600 / 70) == 9
    assert draw.replicas_alone == 1
    assert plan.shared_replicas == math.ceil(600 / 70 + 200 / 700) == 9


def test_plan_prefers_npc_turn_and_names_the_sources(tmp_path):
    bench = _bench(tmp_path / "bench-1.json", [("mnist", 8, 1000, 40, 0),
                                               ("npc_dialogue", 8, 1200, 30, 0)])  # fmt: skip
    turns = _turns(
        tmp_path / "bench-npc-turns-1.json",
        [("realistic", "npc_turn", 8, 50, 400, 0), ("realistic", "npc_dialogue", 8, 9, 900, 0),
         ("one NPC, 8 lines", "npc_turn", 8, 500, 20, 0)],
        machine="16 cores, other CPU",
    )  # fmt: skip
    plan = make_plan(10_000, [bench, turns])
    assert (plan.models[0].point.model, plan.models[0].point.scenario) == ("npc_turn", "realistic")
    assert plan.machines == ["16 cores, other CPU", "2 cores, test CPU"]
    result = maas("plan", "--players", "10000", "--bench", str(bench), "--bench", str(turns),
                  timeout=60, env={"COLUMNS": "80"})  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert max(len(line) for line in result.stdout.splitlines()) <= 80, result.stdout
    text = " ".join(result.stdout.split())
    assert "bench-npc-turns-1.json" in text and "different machines" in text
    assert f"{math.ceil(6000 / 35 + 2000 / 700):,} replicas" in text


def test_plan_refuses_a_budget_no_level_meets(tmp_path):
    bench = _bench(tmp_path / "bench-1.json", [("mnist", 8, 1000, 40, 0),
                                               ("npc_dialogue", 8, 1200, 300, 0)])  # fmt: skip
    with pytest.raises(MaasError, match=r"within 100 ms \(best: 300 ms at 8 clients"):
        make_plan(10, [bench], p99_budget_ms=100)
    result = maas("plan", "--players", "10", "--bench", str(bench), "--p99-ms", "100", timeout=60)
    assert result.returncode == 1 and "raise --p99-ms" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not readable JSON"),
        ('{"machine": "x"}', "not a `maas bench` report"),
        ('["served"]', "not a `maas bench` report"),
        (None, "does not exist"),
    ],
)
def test_plan_names_what_is_wrong_with_a_report(tmp_path, content, message):
    path = tmp_path / "bench-x.json"
    if content is not None:
        path.write_text(content)
    result = maas("plan", "--players", "10", "--bench", str(path), timeout=60)
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_plan_needs_both_kinds_of_work_measured(tmp_path):
    turns = _turns(tmp_path / "bench-npc-turns-1.json", [("realistic", "npc_turn", 8, 50, 40, 0)])
    with pytest.raises(MaasError, match="measured no mnist"):
        make_plan(10, [turns])


def test_newest_reports_takes_the_newest_of_each_kind(tmp_path):
    for name in ("bench-20261101-1.json", "bench-20261102-1.json",
                 "bench-npc-turns-20261101-1.json", "bench-npc-turns-20261103-1.json"):  # fmt: skip
        (tmp_path / name).write_text("{}")
    assert [p.name for p in newest_reports(tmp_path)] == [
        "bench-20261102-1.json", "bench-npc-turns-20261103-1.json",
    ]  # fmt: skip
    assert newest_reports(tmp_path / "none") == []
