"""The NPC dialogue serving path with the untrained base encoder: tokenization inside Triton,
TorchScript scoring, and the npc_dialogue ensemble, against in-process Hugging Face and torch.
(tests/test_npc_build.py covers the trained model from a quick build.)"""

from __future__ import annotations

import numpy as np
import pytest

from tests.triton_calls import model_counts, run_players, settled_counts

PAIRS = [
    ("hello there", "Aye, welcome to my forge."),
    ("wher is teh north door??", "The north door answers to the number of moons: three."),
    ("", "I have nothing to say to silence."),
    ("Ünïcödé façade — naïve café 🐉", "Dragons? Not since my grandfather's day."),
    ("HOW MUCH 4 THE SWORD", ""),
    ("bye", "Safe roads, friend."),
]


def text_inputs(module, queries, candidates):
    tensors = []
    for name, texts in (("QUERY", queries), ("CANDIDATE", candidates)):
        values = np.array(
            [[t if isinstance(t, bytes) else t.encode()] for t in texts], dtype=object
        )
        tensor = module.InferInput(name, list(values.shape), "BYTES")
        tensor.set_data_from_numpy(values)
        tensors.append(tensor)
    return tensors


def served(client_module, url, model, queries, candidates, outputs):
    client = client_module.InferenceServerClient(url)
    result = client.infer(model, text_inputs(client_module, queries, candidates))
    return {name: result.as_numpy(name) for name in outputs}


def hf_ids(hf_tokenizer, texts, **options):
    return hf_tokenizer(list(texts), truncation=True, max_length=128, **options)


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_tokenization_in_triton_equals_hugging_face(npc_server, hf_tokenizer, protocol):
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    module = httpclient if protocol == "http" else grpcclient
    url = (
        npc_server.config.http_url
        if protocol == "http"
        else (f"127.0.0.1:{npc_server.config.grpc_port}")
    )
    queries, candidates = zip(*PAIRS)
    names = ["QUERY_IDS", "QUERY_MASK", "CANDIDATE_IDS", "CANDIDATE_MASK"]
    got = served(module, url, "npc_tokenizer", queries, candidates, names)
    for prefix, texts in (("QUERY", queries), ("CANDIDATE", candidates)):
        expected = hf_ids(hf_tokenizer, texts)["input_ids"]
        ids, mask = got[f"{prefix}_IDS"], got[f"{prefix}_MASK"]
        for row, want in enumerate(expected):
            assert ids[row, : len(want)].tolist() == want
            assert mask[row].sum() == len(want) and not ids[row, len(want) :].any()
        assert ids.shape[1] % 16 == 0  # padded to a bucket


def in_process_args(hf_tokenizer, queries, candidates):
    import torch

    args = []
    for texts in (queries, candidates):
        batch = hf_ids(hf_tokenizer, texts, padding=True, return_tensors="pt")
        args += [batch["input_ids"].to(torch.int64), batch["attention_mask"].to(torch.int64)]
    return args


def test_ensemble_scores_equal_torchscript_and_eager(
    npc_server, npc_repository, scorer, hf_tokenizer
):
    import torch
    import tritonclient.http as httpclient

    queries, candidates = zip(*PAIRS)
    scores = served(
        httpclient, npc_server.config.http_url, "npc_dialogue", queries, candidates, ["SCORE"]
    )["SCORE"]
    assert scores.shape == (len(PAIRS), 1) and scores.dtype == np.float32
    args = in_process_args(hf_tokenizer, queries, candidates)
    scripted = torch.jit.load(str(npc_repository / "npc_bert/1/model.pt"))
    with torch.inference_mode():
        eager = scorer(*args).numpy()
        traced = scripted(*args).numpy()
    np.testing.assert_allclose(scores, traced, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(scores, eager, rtol=1e-4, atol=1e-4)


def test_repeated_rows_are_encoded_once_with_the_same_scores(scorer, hf_tokenizer):
    """The de-duplication inside the model changes no score."""
    import torch

    queries = ["where's the inn?"] * 5 + ["bye"]
    candidates = ["Down the hill.", "Safe roads.", "Down the hill.", "", "Aye.", "Safe roads."]
    with torch.inference_mode():
        together = scorer(*in_process_args(hf_tokenizer, queries, candidates))
        one_by_one = torch.cat(
            [scorer(*in_process_args(hf_tokenizer, [q], [c])) for q, c in zip(queries, candidates)]
        )
    np.testing.assert_allclose(together.numpy(), one_by_one.numpy(), atol=1e-5)


def test_text_rules(npc_server):
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    url = npc_server.config.http_url
    long_text = "ye olde tavern " * 700  # 10,500 characters: truncated, never an error
    scores = served(httpclient, url, "npc_dialogue", ["", long_text], [long_text, ""], ["SCORE"])
    assert np.isfinite(scores["SCORE"]).all()

    with pytest.raises(InferenceServerException) as caught:
        served(httpclient, url, "npc_dialogue", [b"caf\xe9 \xff"], ["hello"], ["SCORE"])
    assert caught.value.status() == "400" and "QUERY item 0 is not valid UTF-8" in str(caught.value)

    with pytest.raises(InferenceServerException) as caught:
        served(httpclient, url, "npc_dialogue", ["hi"] * 65, ["hello"] * 65, ["SCORE"])
    assert caught.value.status() == "400" and "batch" in str(caught.value).lower()

    again = served(httpclient, url, "npc_dialogue", ["hi"], ["hello"], ["SCORE"])["SCORE"]
    assert again.shape == (1, 1)


def test_bert_model_is_callable_on_its_own(npc_server, hf_tokenizer, scorer):
    import torch
    import tritonclient.http as httpclient

    args = in_process_args(hf_tokenizer, ["where is the inn"], ["Down the hill, past the well."])
    client = httpclient.InferenceServerClient(npc_server.config.http_url)
    tensors = []
    for name, value in zip(("query_ids", "query_mask", "candidate_ids", "candidate_mask"), args):
        tensor = httpclient.InferInput(name, list(value.shape), "INT64")
        tensor.set_data_from_numpy(value.numpy())
        tensors.append(tensor)
    score = client.infer("npc_bert", tensors).as_numpy("OUTPUT__0")
    with torch.inference_mode():
        expected = scorer(*args).numpy()
    np.testing.assert_allclose(score, expected, rtol=1e-4, atol=1e-4)


def test_concurrent_turns_are_batched_in_the_encoder(npc_server):
    """Eight players at once, each a line against a 12-line repertoire: the encoder merges turns."""
    import tritonclient.http as httpclient

    url = npc_server.config.http_url
    client = httpclient.InferenceServerClient(url)
    repertoire = [f"Line number {i} of the innkeeper, about ale and beds." for i in range(12)]
    before = model_counts(client, "npc_bert")

    def player(seed: int) -> None:
        for turn in range(4):
            scores = served(
                httpclient,
                url,
                "npc_dialogue",
                [f"player {seed} asks {turn}"] * 12,
                repertoire,
                ["SCORE"],
            )["SCORE"]
            assert scores.shape == (12, 1)

    errors = run_players(player, 8)
    assert not errors, errors[:2]
    after = settled_counts(client, "npc_bert", before[0] + 8 * 4 * 12)
    inferences, executions = (a - b for a, b in zip(after, before))
    assert inferences == 8 * 4 * 12
    assert executions < 8 * 4, f"{executions} encoder executions for 32 turns: nothing merged"
