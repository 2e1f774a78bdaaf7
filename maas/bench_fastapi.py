"""The service many teams write first, as `maas bench`'s baseline: FastAPI + uvicorn around the
same model files Triton serves, JSON in and out, one request one forward pass.

Run: MAAS_BENCH_REPOSITORY=model_repository uvicorn maas.bench_fastapi:app --port 8500
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel

from maas.paths import latest_version_dir

REPOSITORY = Path(os.environ.get("MAAS_BENCH_REPOSITORY", "model_repository"))
THREADS = int(os.environ.get("MAAS_FRAMEWORK_THREADS", os.cpu_count() or 1))


class Drawing(BaseModel):
    image: list[list[float]]  # 28x28, prepared like the game does


class Turn(BaseModel):
    query: str
    candidates: list[str]


class Models:
    """Loaded once at start-up, the same artifacts as the served versions."""

    def __init__(self, repository: Path) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf
        import torch
        from tokenizers import Tokenizer

        torch.set_num_threads(THREADS)
        tf.config.threading.set_intra_op_parallelism_threads(THREADS)
        self.torch = torch
        mnist = latest_version_dir(repository / "mnist")
        bert = latest_version_dir(repository / "npc_bert")
        tokens = latest_version_dir(repository / "npc_tokenizer")
        if mnist is None or bert is None or tokens is None:
            raise SystemExit(f"{repository}: build mnist and npc first (maas build ...)")
        self.tf = tf
        self.mnist = tf.saved_model.load(str(mnist / "model.savedmodel")).signatures[
            "serving_default"
        ]
        self.bert = torch.jit.load(str(bert / "model.pt")).eval()
        self.tokenizer = Tokenizer.from_file(str(tokens / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=128)
        self.tokenizer.enable_padding()

    def digits(self, images: np.ndarray) -> np.ndarray:
        return self.mnist(IMAGE=self.tf.constant(images, self.tf.float32))["PROBABILITIES"].numpy()

    def scores(self, queries: list[str], candidates: list[str]) -> np.ndarray:
        def ids(texts: list[str]) -> list[Any]:
            found = self.tokenizer.encode_batch(texts)
            return [
                self.torch.tensor([e.ids for e in found]),
                self.torch.tensor([e.attention_mask for e in found]),
            ]

        with self.torch.inference_mode():
            return self.bert(*ids(queries), *ids(candidates)).reshape(-1).numpy()


app = FastAPI(title="maas bench baseline")
models: Models | None = None


@app.on_event("startup")
def load() -> None:
    global models
    models = Models(REPOSITORY)


@app.post("/mnist")
def mnist(drawing: Drawing) -> dict[str, list[float]]:
    assert models is not None
    image = np.asarray(drawing.image, np.float32)[None]
    return {"probabilities": models.digits(image)[0].tolist()}


@app.post("/npc")
def npc(turn: Turn) -> dict[str, list[float]]:
    assert models is not None
    scores = models.scores([turn.query] * len(turn.candidates), turn.candidates)
    return {"scores": scores.tolist()}


@app.get("/health")
def health() -> dict[str, bool]:
    return {"ready": models is not None}
