"""Writers see what players said: the playtest log (`maas chat`, `maas play`), `/wrong`, and
`maas npc report` reading it; against a real Triton where turns are involved."""

from __future__ import annotations

import json

import pytest

from maas.npc_report import analyse
from maas_client.npc import choose_reply
from maas_client.npc_file import Npc, NpcLine
from maas_client.playtest_log import PlaytestLog, PlaytestLogError, read_logs
from tests.cli_calls import maas
from tests.test_npc_build import INNKEEPER

NPC = Npc(
    "Bess",
    (
        NpcLine("A room is two silver a night.", "room"),
        NpcLine("Stew and bread, fresh today.", "food"),
        NpcLine("Mind the cellar stairs.", "cellar"),
    ),
    fallback="Say it plainer, pet?",
)


def turn(log: PlaytestLog, said: str, scores: list[float]) -> str:
    return log.turn(NPC, said, choose_reply(NPC, scores, 0.5))


def test_turns_flags_and_what_the_report_makes_of_them(tmp_path):
    log = PlaytestLog(tmp_path / "play.jsonl", source="test")
    with pytest.raises(PlaytestLogError, match="nothing to flag yet"):
        log.flag_wrong()
    for said in ("got any ale?", "Got any ale", "ale"):
        turn(log, said, [0.1, 0.45, 0.2])  # fallbacks, nearest: food
    turn(log, "a bed for tonight", [0.8, 0.3, 0.1])
    turn(log, "is it safe down there", [0.3, 0.1, 0.62])
    log.flag_wrong("she talked about stairs")
    turn(log, "where do i sleep and eat", [0.61, 0.6, 0.1])  # near miss: room / food
    with (tmp_path / "play.jsonl").open("a") as log_file:
        log_file.write("not json\n")
        bad = {"kind": "turn", "turn": "x", "npc": "[bold]B", "said": "hi", "understood": True}
        log_file.write(json.dumps({**bad, "best": {"id": "room", "score": "high"}}) + "\n")

    contents = read_logs([tmp_path / "play.jsonl"])
    assert len(contents.turns) == 6 and len(contents.flagged) == 1
    assert contents.skipped == [
        f"{tmp_path / 'play.jsonl'}:8: not JSON",
        f"{tmp_path / 'play.jsonl'}:9: turn without a valid best",
    ]
    first = contents.turns[0]
    assert first["understood"] is False and first["reply"] == NPC.fallback
    assert first["best"]["id"] == "food" and first["second"]["id"] == "cellar"

    (found,) = analyse(contents)
    assert (found.npc, found.turns, found.understood) == ("Bess", 6, 3)
    fallbacks = found.ranked(found.fallbacks)
    assert fallbacks[0].key == "food" and fallbacks[0].count == 3
    assert fallbacks[0].distinct() == [("got any ale?", 2), ("ale", 1)]  # "Got any ale" joins
    assert [f.key for f in found.ranked(found.flagged)] == ["cellar"]
    assert [f.key for f in found.ranked(found.near_misses)] == ["food / room"]


def test_the_log_is_bounded(tmp_path):
    log = PlaytestLog(tmp_path / "play.jsonl", source="test", max_bytes=2000)
    for number in range(30):
        turn(log, f"line {number}", [0.9, 0.1, 0.1])
    current, older = tmp_path / "play.jsonl", tmp_path / "play.jsonl.1"
    assert current.stat().st_size <= 2000 and older.stat().st_size <= 2000
    kept = read_logs([older, current]).turns
    assert kept[-1]["said"] == "line 29" and len(kept) < 30  # the oldest went


def test_an_unwritable_log_is_one_clear_error(tmp_path):
    (tmp_path / "file").write_text("")
    log = PlaytestLog(tmp_path / "file" / "play.jsonl", source="test")
    with pytest.raises(PlaytestLogError, match="cannot write the playtest log"):
        turn(log, "hello", [0.9, 0.1, 0.1])


def test_chat_logs_each_turn_and_wrong_flags_the_last(npc_server, tmp_path):
    log = tmp_path / "bess.jsonl"
    talk = "hi there\n/wrong\ndo you have a room for tonight\nzzqx qqq\n/wrong not her\n/quit\n"
    result = maas(
        "chat", str(INNKEEPER), "--url", npc_server.config.http_url, "--log", str(log),
        stdin=talk, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("Flagged as wrong") == 2
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert [r["kind"] for r in records] == ["turn", "flag", "turn", "turn", "flag"]
    turns = [r for r in records if r["kind"] == "turn"]
    assert [t["said"] for t in turns] == ["hi there", "do you have a room for tonight", "zzqx qqq"]
    assert all(t["model"] == "npc_turn" and t["model_version"] == "1" for t in turns)
    assert all(t["best"]["score"] >= t["second"]["score"] for t in turns)
    assert records[1]["turn"] == turns[0]["turn"] and records[4]["note"] == "not her"

    report = maas("npc", "report", str(log), env={"COLUMNS": "80"}, timeout=60)
    assert report.returncode == 0, report.stderr
    assert "Bess Tanner: 3 turns" in report.stdout and "2 flagged wrong" in report.stdout
    assert "npc_turn v1 (3)" in report.stdout
    assert all(len(line) <= 80 for line in report.stdout.splitlines())
    data = json.loads(maas("npc", "report", str(log), "--json", timeout=60).stdout)
    assert data[0]["turns"] == 3 and sum(f["turns"] for f in data[0]["flagged"]) == 2

    quiet = tmp_path / "quiet.jsonl"
    result = maas(
        "chat", str(INNKEEPER), "--url", npc_server.config.http_url, "--no-log",
        "--log", str(quiet), stdin="hello\n/wrong\n", timeout=60,
    )  # fmt: skip
    assert result.returncode == 0 and not quiet.exists()
    assert "nothing to flag" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.jsonl"], "no such playtest log"),
        (["."], "a folder, not a playtest log"),
        (["empty.jsonl"], "no turns in"),
        (["one.jsonl", "--npc", "Garrick"], "no turns with 'Garrick'"),
    ],
)
def test_report_mistakes_are_one_clear_line(tmp_path, args, message):
    (tmp_path / "empty.jsonl").write_text("")
    turn(PlaytestLog(tmp_path / "one.jsonl", source="test"), "hello", [0.9, 0.1, 0.1])
    result = maas("npc", "report", *args, cwd=tmp_path, timeout=60)
    assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr
