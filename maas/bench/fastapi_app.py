"""The service many teams write first, as `maas bench`'s baseline: FastAPI + uvicorn around the
same model files Triton serves, JSON in and out, one request one forward pass. `/npc_turn` is
npc_turn's design by hand: NPC line embeddings in an LRU dict, the player's line encoded.

Run: MAAS_BENCH_REPOSITORY=model_repository uvicorn maas.bench.fastapi_app:app --port 8500
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel

from maas.bench.models import LineCache, Models
from maas.errors import MaasError

REPOSITORY = Path(os.environ.get("MAAS_BENCH_REPOSITORY", "model_repository"))


class Drawing(BaseModel):
    image: list[list[float]]  # 28x28, prepared like the game does


class Turn(BaseModel):
    query: str
    candidates: list[str]


app = FastAPI(title="maas bench baseline")
models: Models | None = None
line_cache: LineCache | None = None


@app.on_event("startup")
def load() -> None:
    global models, line_cache
    try:
        models = Models(REPOSITORY)
        line_cache = LineCache(models)
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
    assert line_cache is not None
    (scores,) = line_cache.scores([(turn.query, turn.candidates)])
    return {"scores": scores.tolist()}


@app.get("/health")
def health() -> dict[str, bool]:
    return {"ready": models is not None}
