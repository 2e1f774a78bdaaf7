"""The served model files loaded in-process, as every `maas bench` path outside Triton uses them:
the in-process limit (a), the FastAPI baseline (d) and the Ray Serve baseline (e)."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from maas.errors import MaasError
from maas.paths import latest_version_dir

THREADS = int(os.environ.get("MAAS_FRAMEWORK_THREADS", os.cpu_count() or 1))


def version_dir(repository: Path, model: str) -> Path:
    found = latest_version_dir(repository / model)
    if found is None:
        raise MaasError(f"{model} has no version in {repository}: run `maas build` first")
    return found


class Models:
    """The newest mnist SavedModel, npc_bert TorchScript and npc_tokenizer tokenizer.json.

    `pad_to_multiple_of=16` tokenizes exactly as npc_tokenizer does in Triton; None pads to the
    longest text, as a hand-written service would."""

    def __init__(self, repository: Path, *, pad_to_multiple_of: int | None = None) -> None:
        import torch
        from tokenizers import Tokenizer

        torch.set_num_threads(THREADS)
        self.torch = torch
        bert = version_dir(repository, "npc_bert")
        tokens = version_dir(repository, "npc_tokenizer")
        self.tf: Any = None  # TensorFlow only where there is an mnist to run (an NPC-only
        self.mnist: Any = None  # repository, the NPC turns bench)
        if latest_version_dir(repository / "mnist") is not None:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
            import tensorflow as tf

            tf.config.threading.set_intra_op_parallelism_threads(THREADS)
            saved = tf.saved_model.load(str(version_dir(repository, "mnist") / "model.savedmodel"))
            self.tf, self.mnist = tf, saved.signatures["serving_default"]
        self.bert = torch.jit.load(str(bert / "model.pt")).eval()
        encoder = latest_version_dir(repository / "npc_encoder")
        self.encoder = torch.jit.load(str(encoder / "model.pt")).eval() if encoder else None
        turn = latest_version_dir(repository / "npc_turn")
        self.onnx_encoder = _onnx_session(turn / "encoder.onnx") if turn else None
        self.tokenizer = Tokenizer.from_file(str(tokens / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=128)
        self.tokenizer.enable_padding(pad_to_multiple_of=pad_to_multiple_of)

    def digits(self, images: np.ndarray) -> np.ndarray:
        if self.mnist is None:
            raise MaasError("mnist has no version in this repository")
        return self.mnist(IMAGE=self.tf.constant(images, self.tf.float32))["PROBABILITIES"].numpy()

    def scores(self, queries: list[str], candidates: list[str]) -> np.ndarray:
        """Tokenization included, as in the served path."""

        def ids(texts: list[str]) -> list[Any]:
            found = self.tokenizer.encode_batch(texts)
            return [
                self.torch.tensor([e.ids for e in found]),
                self.torch.tensor([e.attention_mask for e in found]),
            ]

        with self.torch.inference_mode():
            return self.bert(*ids(queries), *ids(candidates)).reshape(-1).numpy()

    @property
    def served_runtime(self) -> str:
        """What npc_turn runs on a CPU server: its onnxruntime file if the build made one."""
        return "onnxruntime" if self.onnx_encoder is not None else "torchscript"

    def embeddings(self, texts: list[str], runtime: str | None = None) -> np.ndarray:
        """The encoder on `texts` (the cached design's one encoding per new text): npc_turn's
        runtime unless `runtime` names one (the in-process limit is TorchScript's)."""
        runtime = runtime or self.served_runtime
        found = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in found], np.int64)
        mask = np.array([e.attention_mask for e in found], np.int64)
        if runtime == "onnxruntime" and self.onnx_encoder is not None:
            return self.onnx_encoder.run(None, {"input_ids": ids, "attention_mask": mask})[0]
        if self.encoder is None:
            raise MaasError("npc_encoder has no version in this repository")
        with self.torch.inference_mode():
            return self.encoder(self.torch.from_numpy(ids), self.torch.from_numpy(mask)).numpy()


def served_runtime(repository: Path) -> str:
    """The encoder runtime npc_turn runs on a CPU server: its onnxruntime file where the build
    made one (see build/_npc_turn_model.py), else npc_encoder's TorchScript."""
    turn = latest_version_dir(repository / "npc_turn")
    return "onnxruntime" if turn and (turn / "encoder.onnx").exists() else "torchscript"


def _onnx_session(path: Path) -> Any:
    """npc_turn's in-process encoder, set up as npc_turn sets it up (all cores, one pool)."""
    if not path.exists():
        return None
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = THREADS
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


class LineCache:
    """npc_turn's design by hand, for the FastAPI and Ray Serve baselines: NPC line embeddings
    in an LRU dict bounded in entries (as npc_turn's), the player's lines encoded each time,
    new lines of all turns and the players' lines in one encoder call. Thread-safe."""

    def __init__(self, models: Models, max_lines: int = 65536) -> None:
        self.models, self.max_lines = models, max_lines
        self.lines: OrderedDict[str, np.ndarray] = OrderedDict()
        self.lock = threading.Lock()

    def scores(self, turns: list[tuple[str, list[str]]]) -> list[np.ndarray]:
        """Each turn's (player line, NPC lines) -> the lines' scores."""
        with self.lock:
            known = {c: self.lines[c] for _, lines in turns for c in lines if c in self.lines}
            for text in known:
                self.lines.move_to_end(text)
        new = list(dict.fromkeys(c for _, lines in turns for c in lines if c not in known))
        vectors = self.models.embeddings([query for query, _ in turns] + new)
        with self.lock:
            for text, vector in zip(new, vectors[len(turns) :], strict=True):
                known[text] = self.lines[text] = vector
            while len(self.lines) > self.max_lines:
                self.lines.popitem(last=False)
        return [
            np.stack([known[c] for c in lines]) @ vectors[i] for i, (_, lines) in enumerate(turns)
        ]
