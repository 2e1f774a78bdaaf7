"""npc_turn, the cached path: the same scores as npc_dialogue and the eager model, turns to
different NPCs merged, NPC lines encoded once and kept within the cache's bounds (read from
Triton's /metrics as `maas status` reads them), bad turns refused with a 400, and the client's
examples. Uses the session's NPC server (tests/npc_fixtures.py, base encoder)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.cli_calls import maas
from tests.npc_fixtures import CACHE_BOUNDS
from tests.triton_calls import model_counts, run_players

SMITH = ["Aye, welcome to my forge.", "A sword is forty silver.", "Safe roads, friend."]
INN = [
    "Two silver a night, breakfast included.",
    "The road north is safe since the patrols.",
    "Ale's a copper a mug.",
    "I'm Bess; this is my inn.",
    "Off with you, then.",
]


def turn_inputs(module, queries, rows):
    values = {
        "QUERY": np.array([[q.encode()] for q in queries], dtype=object),
        "CANDIDATE": np.array(
            [[c if isinstance(c, bytes) else c.encode() for c in r] for r in rows], dtype=object
        ),
    }
    tensors = []
    for name, value in values.items():
        tensor = module.InferInput(name, list(value.shape), "BYTES")
        tensor.set_data_from_numpy(value)
        tensors.append(tensor)
    return tensors


def turn(module, url, queries, rows):
    client = module.InferenceServerClient(url)
    try:
        return client.infer("npc_turn", turn_inputs(module, queries, rows)).as_numpy("SCORE")
    finally:
        client.close()


def eager_scores(scorer, hf_tokenizer, query, lines):
    import torch

    args = []
    for texts in ([query] * len(lines), lines):
        batch = hf_tokenizer(
            list(texts), truncation=True, max_length=128, padding=True, return_tensors="pt"
        )
        args += [batch["input_ids"], batch["attention_mask"]]
    with torch.inference_mode():
        return scorer(*args).reshape(-1).numpy()


def metrics(server):
    from maas_client.status import fetch_cache_metrics

    (cache,) = fetch_cache_metrics(f"127.0.0.1:{server.config.metrics_port}")
    return cache


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_turn_scores_equal_the_pair_model_and_eager_pytorch(
    npc_server, scorer, hf_tokenizer, protocol
):
    """Eight players at once, to two NPCs with 3 and 5 lines (ragged: the batcher merges them),
    each turn equal to the eager model and to npc_dialogue's pairs."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    from maas_client.npc import NpcClient

    module = httpclient if protocol == "http" else grpcclient
    url = (
        npc_server.config.http_url
        if protocol == "http"
        else f"127.0.0.1:{npc_server.config.grpc_port}"
    )
    said = ["hello there", "how much is a sword", "is the road safe", "a room please",
            "who are you", "ale?", "Ünïcödé façade 🐉", ""]  # fmt: skip
    results: dict[int, np.ndarray] = {}
    before = model_counts(httpclient.InferenceServerClient(npc_server.config.http_url), "npc_turn")

    def player(seed: int) -> None:
        lines = SMITH if seed % 2 else INN
        for repeat in range(3):
            results[seed * 3 + repeat] = turn(module, url, [said[seed]], [lines])[0]

    errors = run_players(player, 8)
    assert not errors, errors[:2]
    for seed in range(8):
        lines = SMITH if seed % 2 else INN
        want = eager_scores(scorer, hf_tokenizer, said[seed], lines)
        for repeat in range(3):
            np.testing.assert_allclose(results[seed * 3 + repeat], want, atol=1e-4)
    with NpcClient(npc_server.config.http_url, model="npc_dialogue") as pairs:
        np.testing.assert_allclose(results[0], pairs.rank(said[0], INN), atol=1e-5)
    after = model_counts(httpclient.InferenceServerClient(npc_server.config.http_url), "npc_turn")
    assert after[0] - before[0] == 24 and after[1] - before[1] < 24, "no turns were merged"


def test_a_request_may_carry_several_turns_of_the_same_width(npc_server, scorer, hf_tokenizer):
    import tritonclient.http as httpclient

    got = turn(httpclient, npc_server.config.http_url, ["hi", "bye"], [SMITH, SMITH[::-1]])
    assert got.shape == (2, 3) and got.dtype == np.float32
    np.testing.assert_allclose(got[0], eager_scores(scorer, hf_tokenizer, "hi", SMITH), atol=1e-4)
    np.testing.assert_allclose(
        got[1], eager_scores(scorer, hf_tokenizer, "bye", SMITH[::-1]), atol=1e-4
    )


def test_lines_are_encoded_once_and_the_cache_stays_within_its_bounds(
    npc_server, scorer, hf_tokenizer
):
    import tritonclient.http as httpclient

    url = npc_server.config.http_url
    start = metrics(npc_server)
    assert (start.max_entries, start.max_bytes) == (
        CACHE_BOUNDS["CACHE_MAX_ENTRIES"],
        CACHE_BOUNDS["CACHE_MAX_BYTES"],
    )
    lines = [f"Cache line {i}: the well is dry." for i in range(4)]
    turn(httpclient, url, ["first"], [lines])
    turn(httpclient, url, ["second, another player"], [lines])
    seen = metrics(npc_server)
    assert seen.misses - start.misses == 4 and seen.hits - start.hits == 4  # the second: all hits

    # 10 more short lines: the entry bound (6) evicts the least recently used
    short = [f"Short line {i}." for i in range(10)]
    for line in short:
        turn(httpclient, url, ["x"], [[line]])
    full = metrics(npc_server)
    assert full.entries == CACHE_BOUNDS["CACHE_MAX_ENTRIES"] and full.evictions > seen.evictions
    turn(httpclient, url, ["x"], [[short[4]]])  # held: a hit, now the most recent
    turn(httpclient, url, ["x"], [["Short line, new."]])  # evicts short[5], not short[4]
    turn(httpclient, url, ["x"], [[short[4]]])
    after = metrics(npc_server)
    assert after.hits - full.hits == 2 and after.misses - full.misses == 1

    # long lines: the byte bound binds before the entry bound
    long_lines = ["The ballad of the drowned bell, " * 80 + str(i) for i in range(5)]
    scores = turn(httpclient, url, ["sing"], [long_lines])[0]
    np.testing.assert_allclose(
        scores, eager_scores(scorer, hf_tokenizer, "sing", long_lines), atol=1e-4
    )
    bounded = metrics(npc_server)
    assert bounded.bytes <= CACHE_BOUNDS["CACHE_MAX_BYTES"]
    assert bounded.entries < CACHE_BOUNDS["CACHE_MAX_ENTRIES"]


def test_bad_turns_get_a_400_naming_the_problem_and_the_server_goes_on(npc_server):
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    url = npc_server.config.http_url
    cases = {
        "not valid UTF-8": (["hi"], [[b"caf\xe9 \xff"]]),
        "holds no NPC lines": (["hi"], np.zeros((1, 0), dtype=object)),
        "at most 256": (["hi"], [["a line"] * 257]),
    }
    for expected, (queries, rows) in cases.items():
        with pytest.raises(InferenceServerException) as caught:
            turn(httpclient, url, queries, rows)
        assert caught.value.status() == "400", caught.value
        assert expected in str(caught.value)
    assert turn(httpclient, url, ["hi"], [SMITH]).shape == (1, 3)


def test_a_polling_server_loads_the_python_models_once(npc_repository, npc_server, tmp_path):
    """The stubs import npc_turn's and npc_tokenizer's model.py. Without the bytecode the
    build writes beside it, the import wrote __pycache__ into the version folder and a polling
    server (`./run.sh`) reloaded both seconds after loading them; on a first run a reloaded
    npc_turn then hung on its npc_encoder call. That call is the GPU server's path, so this
    server takes it (ENCODER_IN_PROCESS never) and must score as the CPU path does: the session
    server runs the encoder inside npc_turn (onnxruntime, one stub instead of two)."""
    import dataclasses
    import shutil
    import time

    import tritonclient.http as httpclient

    from maas.server import TritonServer
    from tests.conftest import server_config

    repository = tmp_path / "repo"
    shutil.copytree(npc_repository, repository)
    config_file = repository / "npc_turn" / "config.pbtxt"
    auto = '"ENCODER_IN_PROCESS" value: { string_value: "auto" }'
    assert auto in config_file.read_text()
    config_file.write_text(config_file.read_text().replace(auto, auto.replace("auto", "never")))
    before = {p: p.stat().st_mtime_ns for p in repository.rglob("*")}
    config = server_config(repository, tmp_path)
    config = dataclasses.replace(config, model_control=False, poll_s=1)
    said = ["hi", "where can I sleep tonight?", "Ünïcödé façade 🐉"]
    in_process = turn(httpclient, npc_server.config.http_url, said, [SMITH] * 3)
    with TritonServer(config) as server:
        through_encoder = turn(httpclient, server.config.http_url, said, [SMITH] * 3)
        time.sleep(3)  # three polls
        assert turn(httpclient, server.config.http_url, ["hi"], [SMITH]).shape == (1, 3)
        log = server.log_path.read_text()
    np.testing.assert_allclose(through_encoder, in_process, atol=1e-5)
    assert "npc_turn: encoder through npc_encoder version 1 (ENCODER_IN_PROCESS is never)" in log
    session_log = npc_server.log_path.read_text()
    assert "npc_turn: encoder in-process: onnxruntime" in session_log
    after = {p: p.stat().st_mtime_ns for p in repository.rglob("*")}
    assert after == before, sorted(str(p) for p in set(after) ^ set(before))
    for model in ("npc_turn", "npc_tokenizer"):
        assert log.count(f"successfully loaded '{model}'") == 1, f"{model} loaded again"


def test_the_client_uses_npc_turn_and_scores_a_line_by_its_best_example(npc_server):
    from maas_client.npc import TURN_MODEL, NpcClient
    from maas_client.npc_file import parse_npc

    npc = parse_npc(
        {
            "name": "Bess",
            "lines": [
                {"id": "room", "text": INN[0], "examples": ["somewhere to crash tonight?"]},
                {"id": "news", "text": "They say the mill is haunted."},
            ],
        },
        "test",
    )
    with NpcClient(npc_server.config.http_url) as client:
        reply = client.reply(npc, "somewhere to crash tonight?", threshold=0.5)
        assert client.model == TURN_MODEL
    assert reply.understood and reply.index == 0
    assert reply.matched == "somewhere to crash tonight?" and reply.score == pytest.approx(1.0)
    assert len(reply.scores) == 2  # one per line, the best of its texts


def test_status_shows_the_cache_at_80_columns(npc_server):
    turn(__import__("tritonclient.http").http, npc_server.config.http_url, ["hi"], [SMITH])
    result = maas(
        "status",
        "--url",
        npc_server.config.http_url,
        "--metrics-url",
        f"127.0.0.1:{npc_server.config.metrics_port}",
        env={"COLUMNS": "80"},
    )
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert "npc_turn v1 line cache:" in text and "hit rate" in text, result.stdout
    assert "NPC brain: MiniLM (npc_encoder v1, 384 numbers a text)" in text
    assert all(len(line) <= 80 for line in result.stdout.splitlines())


def test_chat_scores_name_the_example_that_matched(npc_server, tmp_path):
    path = tmp_path / "bess.yaml"
    path.write_text(
        "name: Bess\nlines:\n"
        f"  - {{id: room, text: '{INN[0]}', examples: ['somewhere to crash tonight?']}}\n"
        "  - {id: news, text: 'They say the mill is haunted.'}\n"
    )
    result = maas(
        "chat", str(path), "--url", npc_server.config.http_url, "--scores",
        stdin="somewhere to crash tonight?\n", timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert f"Bess: {INN[0]}" in result.stdout
    assert "via example 'somewhere to crash tonight?'" in " ".join(result.stdout.split())


def test_derive_makes_the_turn_models_from_an_existing_npc_bert(npc_repository, tmp_path):
    """A repository built before npc_turn existed: `maas build npc --derive` adds npc_encoder
    and npc_turn from its npc_bert in seconds, with the same embeddings."""
    import shutil

    import torch

    repository = tmp_path / "repo"
    for name in ("npc_bert", "npc_tokenizer", "npc_dialogue", "npc_encoder", "npc_turn"):
        (repository / name).mkdir(parents=True)
        shutil.copy(npc_repository / name / "config.pbtxt", repository / name)
    for name in ("npc_bert", "npc_tokenizer", "npc_dialogue"):
        shutil.copytree(npc_repository / name / "1", repository / name / "1")
    from maas.server.supervisor import _unbuilt_hint

    assert "maas build npc --derive" in _unbuilt_hint(repository, "npc_turn")
    result = maas("build", "npc", "--derive", "--repository", str(repository), timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Derived npc_encoder and npc_turn version 1" in " ".join(result.stdout.split())
    assert (repository / "npc_turn/1/encoder.json").read_text().strip().endswith('"version": 1}')
    ids = torch.tensor([[101, 7592, 2045, 102, 0, 0], [101, 2129, 2172, 2003, 1037, 102]])
    mask = (ids > 0).long()
    derived = torch.jit.load(str(repository / "npc_encoder/1/model.pt"))
    built = torch.jit.load(str(npc_repository / "npc_encoder/1/model.pt"))
    with torch.inference_mode():
        torch.testing.assert_close(derived(ids, mask), built(ids, mask), atol=1e-5, rtol=1e-5)

    refused = maas("build", "mnist", "--derive", "--repository", str(repository), timeout=60)
    assert refused.returncode == 1 and "--derive is for the npc recipe" in refused.stderr
