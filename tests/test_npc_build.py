"""The NPC dialogue brain end to end: a --quick build through the CLI, served by a real Triton,
called by the client library and by `maas chat`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from maas.paths import PROJECT_ROOT
from maas_client.npc_file import NpcFileError, load_npc
from tests.cli_calls import maas

INNKEEPER = PROJECT_ROOT / "examples" / "npcs" / "innkeeper.yaml"


@pytest.fixture(scope="module")
def npc_repository(quick_repository) -> Path:
    """The session's repository with --quick builds (tests/conftest.py), made through the CLI."""
    repository, outputs = quick_repository
    assert "Built npc version 1" in outputs["npc"]
    return repository


@pytest.fixture(scope="module")
def npc_server(quick_server):
    return quick_server


@pytest.fixture(scope="module")
def scripted(npc_repository):
    import torch

    return torch.jit.load(str(npc_repository / "npc_bert" / "1" / "model.pt"))


def test_quick_build_publishes_versions_and_a_model_card(npc_repository):
    assert (npc_repository / "npc_tokenizer/1/model.py").exists()
    assert (npc_repository / "npc_tokenizer/1/tokenizer.json").exists()
    assert (npc_repository / "npc_dialogue/1").is_dir()
    card = json.loads((npc_repository / "npc_bert/1/model_card.json").read_text())
    metrics = card["metrics"]
    assert card["quick"] and card["version"] == 1
    assert metrics["heldout_player_lines"] == card["data"]["heldout_player_lines"] > 100
    # Even the quick build (160 pairs, one epoch) must beat the untrained encoder.
    assert metrics["heldout_top1"] > metrics["base"]["heldout_top1"]
    assert 0 < metrics["heldout_mrr"] <= 1 and metrics["export_max_abs_diff"] <= 1e-4
    assert 0 <= metrics["reply_threshold"] <= 1
    # the independent set, with and without its writer's examples, for the base model too
    for figures in (metrics, metrics["base"]):
        lines = figures["independent_with_examples"]["player_lines"]
        assert (
            lines
            == figures["independent"]["player_lines"]
            == card["data"]["independent_player_lines"]
        )
        assert 0 <= figures["threshold_without_examples"] <= 1
    assert card["data"]["independent_examples"] > 400
    assert not list(npc_repository.glob("*/.building-*"))
    # npc_turn's CPU encoder: fp32 ONNX equal to TorchScript; int8 measured beside it
    cpu = metrics["cpu_encoder"]
    assert cpu["precision"] == "fp32" and cpu["fp32_onnx_max_abs_diff"] <= 1e-4
    loss = max(metrics[k] - cpu["int8"][k] for k in ("heldout_top1", "heldout_top1_with_examples"))
    assert cpu["int8_heldout_top1_loss"] == round(loss, 4)
    import onnx

    served = onnx.load(str(npc_repository / "npc_turn/1/encoder.onnx"))
    assert {p.key: p.value for p in served.metadata_props}["precision"] == cpu["precision"]


def test_rank_equals_in_process_torchscript(npc_server, scripted):
    """npc_dialogue runs npc_bert's TorchScript, npc_turn its encoder.onnx in-process on this
    CPU server (onnxruntime, fp32): both equal the TorchScript run in-process."""
    import torch
    from transformers import AutoTokenizer

    from maas_client.npc import NpcClient

    npc = load_npc(INNKEEPER)
    query = "how much 4 a bed tonite??"
    with NpcClient(npc_server.config.http_url, model="npc_dialogue") as client:
        pairs = client.rank(query, npc.texts)
    with NpcClient(npc_server.config.http_url) as client:
        turn = client.rank(query, npc.texts)
    folder = npc_server.config.repository / "npc_tokenizer" / "1"
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    args = []
    for texts in ([query] * len(npc.texts), npc.texts):
        batch = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
        args += [batch["input_ids"], batch["attention_mask"]]
    with torch.inference_mode():
        expected = scripted(*args).reshape(-1).numpy()
    np.testing.assert_allclose(pairs, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(turn, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("said", "line_id"),
    [
        ("hello there!", "greet"),
        ("how much is a room for the night", "room"),
        ("what is there to eat", "food"),
        ("where can i find the blacksmith", "directions"),
        ("thank you so much", "thanks"),
    ],
)
def test_ranking_fixed_cases(npc_server, said, line_id):
    from maas_client.npc import NpcClient

    npc = load_npc(INNKEEPER)
    with NpcClient(npc_server.config.http_url) as client:
        reply = client.reply(npc, said, threshold=-1.0)
    assert npc.lines[reply.index].id == line_id, (said, reply)


def test_threshold_comes_from_the_served_config_and_long_repertoires_are_split(npc_server):
    from maas_client.npc import NpcClient

    config = (npc_server.config.repository / "npc_dialogue" / "config.pbtxt").read_text()
    lines = [f"Line {i}: the weather is {i} degrees." for i in range(70)]  # above max batch 64
    with NpcClient(npc_server.config.http_url) as client:
        assert f'string_value: "{client.threshold}"' in config
        long = client.rank("hot today?", lines)
        split = client.rank("hot today?", lines[:35]) + client.rank("hot today?", lines[35:])
    np.testing.assert_allclose(long, split, atol=1e-4)


def test_reply_rule_uses_the_fallback_below_the_threshold():
    from maas_client.npc import choose_reply

    npc = load_npc(INNKEEPER)
    scores = [0.1] * len(npc.lines)
    scores[3] = 0.5
    assert choose_reply(npc, scores, 0.4).text == npc.lines[3].text
    below = choose_reply(npc, scores, 0.6)
    assert not below.understood and below.text == npc.fallback and below.index == 3
    with pytest.raises(ValueError, match="scores for"):
        choose_reply(npc, scores[:2], 0.4)


def test_chat_command_talks_and_shows_scores(npc_server):
    result = maas(
        "chat",
        str(INNKEEPER),
        "--url",
        npc_server.config.http_url,
        "--scores",
        stdin="hi there\nzzqx\n/quit\nnever read\n",
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    replies = [line for line in result.stdout.splitlines() if line.startswith("Bess Tanner:")]
    assert len(replies) == 2, result.stdout
    npc = load_npc(INNKEEPER)
    assert all(r.removeprefix("Bess Tanner: ") in [*npc.texts, npc.fallback] for r in replies)
    assert result.stdout.count("threshold") == 2


def test_a_model_the_server_lacks_is_named_with_what_to_do(npc_server):
    from maas_client.errors import MaasClientError
    from maas_client.http_client import ModelClient

    with ModelClient(npc_server.config.http_url) as client, pytest.raises(MaasClientError) as err:
        client.config_parameters("npc_not_built")
    assert str(err.value).startswith("npc_not_built: ")
    assert "`maas status`" in str(err.value) and "`maas build`" in str(err.value)


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        ("name: Bob\nlines: [\n", ".yaml", "not valid YAML"),
        ('{"name": "Bob", "lines": []}', ".json", "'lines' must be a non-empty list"),
        ("name: Bob\nlines: ['hi', {text: ''}]\n", ".yaml", "lines[1]: 'text' must be"),
        ("lines: [hi]\n", ".yml", "'name' must be a non-empty string"),
        ("name: Bob\nlines: [{id: a, text: x}, {id: a, text: y}]\n", ".yaml", "used twice"),
        ("name: Bob\nlines: [hi]\n", ".txt", "expected a .yaml"),
        ("name: Bob\nlines: [{text: x, examples: [1]}]\n", ".yaml", "'examples' must be a list"),
        (
            "name: Bob\nlines: [{text: x, examples: [" + ", ".join(["a"] * 256) + "]}]\n",
            ".yaml",
            "257 lines and examples together; at most 256",
        ),
    ],
)
def test_malformed_npc_files_are_one_clear_line(tmp_path, content, suffix, message):
    path = tmp_path / f"npc{suffix}"
    path.write_text(content)
    with pytest.raises(NpcFileError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_npc(path)
    result = maas("chat", str(path), "--url", "127.0.0.1:9", timeout=60)
    assert result.returncode == 1
    assert message in result.stderr and "Traceback" not in result.stderr


def test_chat_without_server_is_one_clear_line():
    result = maas("chat", str(INNKEEPER), "--url", "127.0.0.1:9", timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "127.0.0.1:9" in result.stderr
