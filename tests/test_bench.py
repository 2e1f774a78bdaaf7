"""`maas bench` as CI runs it: a seconds-long smoke over every serving path with the
quick-built models, so the benchmark keeps working (figures come from full runs, not tests)."""

from __future__ import annotations

import json

from maas.bench import ray_available
from tests.cli_calls import maas


def test_bench_smoke_measures_every_path_and_writes_json_and_plot(quick_repository, tmp_path):
    repository, _ = quick_repository
    result = maas(
        "bench", "--repository", str(repository), "--concurrency", "1,2", "--seconds", "0.3",
        "--in-process-seconds", "0.1", "--reports", str(tmp_path), timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    report = json.loads(next(tmp_path.glob("bench-*.json")).read_text())
    assert next(tmp_path.glob("bench-*.png")).stat().st_size > 10_000
    assert {r["batch"] for r in report["in_process"]["mnist"]["rows"]} == {1, 2, 4, 8, 16, 32, 64}
    assert [r["turns"] for r in report["in_process"]["npc_dialogue"]["rows"]] == [1, 2, 4, 5]
    points = {(r["model"], r["server"], r["concurrency"]) for r in report["served"]}
    servers = {"triton, dynamic batching", "triton, no batching", "fastapi + uvicorn"}
    if ray_available():
        servers.add("ray serve, @serve.batch")
    assert points == {(m, s, c) for m in ("mnist", "npc_dialogue") for s in servers for c in (1, 2)}
    for row in report["served"]:
        assert row["errors"] == 0 and row["throughput"] > 0 and row["throughput_vs_inprocess"] > 0
        assert 0 <= row["client_cpu_cores"] <= 4


def test_bench_rejects_bad_concurrency():
    result = maas("bench", "--concurrency", "8,x", timeout=60)
    assert result.returncode == 1 and "comma-separated whole numbers" in result.stderr
