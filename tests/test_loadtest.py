"""`maas loadtest` as CI runs it: a seconds-long Locust run against a real Triton with the
quick-built models, both player types, content checked, reports written."""

from __future__ import annotations

import csv
import re

from tests.cli_calls import maas


def test_loadtest_smoke_writes_reports_without_failures(quick_server, tmp_path):
    url = quick_server.config.http_url
    result = maas(
        "loadtest", "--url", url, "--users", "6", "--spawn-rate", "6", "--duration", "6s",
        "--no-think-time", "--reports", str(tmp_path), timeout=180, env={"COLUMNS": "80"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert max(len(line) for line in result.stdout.splitlines()) <= 80
    assert "npc_dialogue" in result.stdout and "mnist" in result.stdout
    html = list(tmp_path.glob("loadtest-*.html"))
    stats = list(tmp_path.glob("loadtest-*_stats.csv"))
    assert len(html) == 1 and len(stats) == 1
    with stats[0].open() as handle:
        rows = {row["Name"]: row for row in csv.DictReader(handle)}
    for name in ("npc_dialogue", "mnist"):
        assert int(rows[name]["Request Count"]) > 0 and rows[name]["Failure Count"] == "0"


def test_loadtest_without_server_is_one_clear_line(tmp_path):
    result = maas("loadtest", "--url", "127.0.0.1:9", "--reports", str(tmp_path), timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "127.0.0.1:9" in result.stderr and not list(tmp_path.iterdir())


def test_soak_smoke_prints_windows_and_judges_the_targets(quick_server, tmp_path):
    """The CI version of the 10-minute soak: 30 s, windows of 5 s, memory of the local server."""
    url = quick_server.config.http_url
    result = maas(
        "loadtest", "--url", url, "--users", "8", "--spawn-rate", "8", "--duration", "30s",
        "--soak", "--reports", str(tmp_path), timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    out = result.stdout
    assert "Soak, 5 s windows" in out and "25-30 s" in out
    assert re.search(r"0 failed requests\s*│\s*0\s*│\s*met", out), out
    assert re.search(r"server RSS growth.*MB \([+-]\d", out), out  # measured: server is local
    lines = (tmp_path / next(p.name for p in tmp_path.glob("*_requests.csv"))).read_text()
    assert lines.count("\n") > 30 and ",mnist," in lines and ",npc_dialogue," in lines


def test_the_locustfile_needs_neither_the_game_nor_textual():
    """The loadtest extra installs the client and Locust only: the locustfile must import
    without maas_game and Textual, and still find the adventure's characters and the digits."""
    import subprocess
    import sys

    from maas.paths import PROJECT_ROOT

    code = (
        "import sys, importlib.util\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('maas_game', 'textual'):\n"
        "            raise ImportError(f'{name} is not installed here')\n"
        "sys.meta_path.insert(0, Block())\n"
        f"path = r'{PROJECT_ROOT / 'loadtest' / 'locustfile.py'}'\n"
        "spec = importlib.util.spec_from_file_location('lf', path)\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "from maas_client.npc_file import load_npcs\n"
        "print(len(load_npcs(module.NPC_FILE)), len(module.TYPED_DIGITS))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    npcs, digits = map(int, done.stdout.split())
    assert npcs >= 3 and digits >= 10
