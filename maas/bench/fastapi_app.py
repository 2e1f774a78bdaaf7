"""The service many teams write first, as `maas bench`'s baseline: FastAPI + uvicorn around the
same model files Triton serves, JSON in and out, one request one forward pass. `/npc_turn` is
npc_turn's design by hand: NPC line embeddings in an LRU dict, the player's line encoded.

Run: MAAS_BENCH_REPOSITORY=model_repository uvicorn maas.bench.fastapi_app:app --port 8500
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel

from maas.bench.models import Models
from maas.errors import MaasError

REPOSITORY = Path(os.environ.get("MAAS_BENCH_REPOSITORY", "model_repository"))


class Drawing(BaseModel):
    image: list[list[float]]  # 28x28, prepared like the game does


class Turn(BaseModel):
    query: str
    candidates: list[str]


app = FastAPI(title="maas bench baseline")
models: Models | None = None
CACHE_LINES = 65536
line_cache: OrderedDict[str, np.ndarray] = OrderedDict()
cache_lock = threading.Lock()


@app.on_event("startup")
def load() -> None:
    global models
    try:
        models = Models(REPOSITORY)
    except MaasError as error:
        raise SystemExit(str(error)) from None


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


@app.post("/npc_turn")
def npc_turn(turn: Turn) -> dict[str, list[float]]:
    assert models is not None
    with cache_lock:
        known = {c: line_cache[c] for c in turn.candidates if c in line_cache}
        for text in known:
            line_cache.move_to_end(text)
    new = list(dict.fromkeys(c for c in turn.candidates if c not in known))
    vectors = models.embeddings([turn.query, *new])
    with cache_lock:
        for text, vector in zip(new, vectors[1:]):
            known[text] = line_cache[text] = vector
        while len(line_cache) > CACHE_LINES:
            line_cache.popitem(last=False)
    lines = np.stack([known[c] for c in turn.candidates])
    return {"scores": (lines @ vectors[0]).tolist()}


@app.get("/health")
def health() -> dict[str, bool]:
    return {"ready": models is not None}
