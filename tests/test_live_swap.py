"""A new NPC brain swapped into a running Triton under load, and back, without a failed or
mixed request (issue 25): version 1 is the untrained MiniLM (384 numbers), version 2 a tiny
random MPNet (48 numbers) with its own vocabulary order, so a request that tokenized for one
version and encoded with the other gets scores that neither version gives."""

from __future__ import annotations

import dataclasses
import json
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from maas.live_swap import LiveSwap, SwapError, newest_versions
from maas.server import TritonServer
from tests.conftest import server_config
from tests.test_npc_recipe import tiny_mpnet

MODELS = ("npc_tokenizer", "npc_bert", "npc_dialogue", "npc_encoder", "npc_turn")
QUERIES = ["do you have a room for tonight?", "hello there", "what happened to the mill"]
LINES = ["A room is two silver a night.", "Welcome, traveller!", "The mill burned down."]


def reordered_tokenizer(folder: Path, base: Path) -> Path:
    """MiniLM's tokenizer with every ordinary word piece moved to another id."""
    folder.mkdir()
    data = json.loads((base / "tokenizer.json").read_text())
    vocab = data["model"]["vocab"]
    top = max(vocab.values())
    data["model"]["vocab"] = {t: (i if i < 1000 else 1000 + top - i) for t, i in vocab.items()}
    (folder / "tokenizer.json").write_text(json.dumps(data))
    return folder


def add_version(export, repository: Path, version: int, scorer, tokenizer_dir: Path) -> None:
    folders = {name: repository / name / str(version) for name in MODELS}
    for folder in folders.values():
        folder.mkdir()
    export.write_version_folders(
        folders["npc_tokenizer"], folders["npc_bert"], export.to_torchscript(scorer), tokenizer_dir
    )
    encoder = export.encoder_to_torchscript(scorer)
    encoder.save(str(folders["npc_encoder"] / "model.pt"))
    export.write_turn_folder(folders["npc_turn"], version, tokenizer_dir)
    export.encoder_to_onnx(encoder, folders["npc_turn"] / "encoder.onnx")


class Players:
    """Bounded load: threads asking npc_turn and npc_dialogue the same questions over and over;
    each answer is checked against what version 1 and version 2 answer alone."""

    def __init__(self, url: str, count: int = 4) -> None:
        self.url = url
        self.references: dict[tuple[str, str], list[np.ndarray]] = {}
        self.counts = {"requests": 0, "failed": 0, "mixed": 0}
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._play, args=(i,)) for i in range(count)]

    def ask(self, client, model: str, query: str) -> np.ndarray:
        if model == "npc_turn":
            inputs = {
                "QUERY": np.array([[query.encode()]], dtype=np.object_),
                "CANDIDATE": np.array([[t.encode() for t in LINES]], dtype=np.object_),
            }
        else:
            inputs = {
                "QUERY": np.array([[query.encode()]] * len(LINES), dtype=np.object_),
                "CANDIDATE": np.array([[t.encode()] for t in LINES], dtype=np.object_),
            }
        return client.infer(model, inputs, ["SCORE"])["SCORE"].reshape(-1)

    def learn(self) -> None:
        """Records what the version serving now answers (alone, no load)."""
        from maas_client.http_client import ModelClient

        with ModelClient(self.url) as client:
            for model in ("npc_turn", "npc_dialogue"):
                for query in QUERIES:
                    answer = self.ask(client, model, query)
                    self.references.setdefault((model, query), []).append(answer)

    def _play(self, number: int) -> None:
        from maas_client.http_client import ModelClient

        with ModelClient(self.url, timeout_s=60) as client:
            turn = number
            while not self._stop.is_set():
                model = ("npc_turn", "npc_dialogue")[turn % 2]
                query = QUERIES[turn % len(QUERIES)]
                turn += 1
                try:
                    answer = self.ask(client, model, query)
                except Exception as error:
                    with self._lock:
                        self.counts["failed"] += 1
                        self.errors.append(f"{model}: {error}")
                    continue
                known = self.references[(model, query)]
                right = any(np.allclose(answer, ref, atol=1e-4) for ref in known)
                with self._lock:
                    self.counts["requests"] += 1
                    if not right:
                        self.counts["mixed"] += 1
                        self.errors.append(f"{model} {query!r}: {answer} is no version's answer")

    def __enter__(self) -> Players:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=120)


def test_a_new_brain_swaps_in_and_back_under_load_without_a_failed_or_mixed_request(
    export, scorer, npc_repository, tmp_path
):
    repository = tmp_path / "repo"
    shutil.copytree(npc_repository, repository)
    tokens = reordered_tokenizer(tmp_path / "tokens", export.base_encoder_path())
    small = export.make_pair_scorer(export.load_encoder(tiny_mpnet(tmp_path / "tiny")))
    config = dataclasses.replace(server_config(repository, tmp_path), require_all_models=False)
    with TritonServer(config) as server:
        players = Players(server.config.http_url)
        players.learn()  # version 1
        staged = tmp_path / "staged"  # version 2 where the server does not look yet
        for name in MODELS:
            (staged / name).mkdir(parents=True)
            shutil.copy(repository / name / "config.pbtxt", staged / name)
        add_version(export, staged, 2, small, tokens)

        def publish() -> None:
            for name in MODELS:
                shutil.copytree(staged / name / "2", repository / name / "2")

        swap = LiveSwap(server.config.http_url, server.admin_headers, repository)
        with swap:
            # Learn version 2's answers on a second server of its own (same files).
            alone = staged
            with TritonServer(server_config(alone, tmp_path / "alone")) as other:
                players.url, saved = other.config.http_url, players.url
                players.learn()
                players.url = saved
            assert not np.allclose(
                players.references[("npc_turn", QUERIES[0])][0],
                players.references[("npc_turn", QUERIES[0])][1],
            )

            with Players(server.config.http_url) as load:
                load.references = players.references
                time.sleep(1)
                swap.switch(MODELS, lambda: newest_versions(repository, MODELS), publish=publish)
                time.sleep(1)
                up = dict(load.counts)
                assert swap.ready_versions()["npc_turn"] == [2]
                assert swap.ready_versions()["npc_bert"] == [2]

                def retire() -> None:
                    for name in MODELS:
                        (repository / name / "retired").mkdir(exist_ok=True)
                        (repository / name / "2").rename(repository / name / "retired" / "2")

                swap.switch(MODELS, {n: 1 for n in MODELS}, before_settle=retire)
                time.sleep(1)
            down = {k: v - up[k] for k, v in load.counts.items()}
            assert up["requests"] > 20 and down["requests"] > 20, (up, down)
            assert up["failed"] == up["mixed"] == 0, load.errors[:5]
            assert down["failed"] == down["mixed"] == 0, load.errors[:5]
            assert swap.ready_versions()["npc_encoder"] == [1]

            # A brain that does not load: the switch stops, version 1 keeps answering.
            def broken() -> None:
                add_version(export, repository, 3, small, tokens)
                (repository / "npc_bert" / "3" / "model.pt").write_bytes(b"not a model")

            with Players(server.config.http_url, count=2) as load:
                load.references = players.references
                time.sleep(1)
                with pytest.raises(SwapError, match="npc_bert"):
                    swap.switch(MODELS, lambda: newest_versions(repository, MODELS), publish=broken)
                time.sleep(1)
            assert load.counts["failed"] == load.counts["mixed"] == 0, load.errors[:5]
            assert load.counts["requests"] > 5
            assert swap.ready_versions()["npc_turn"] == [1]
    print(f"swap up {up}, back {down}")
