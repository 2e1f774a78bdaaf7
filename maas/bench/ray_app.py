"""Ray Serve with `@serve.batch` around the same model files, as `maas bench`'s (e): what a team
picks when it wants batching without Triton. JSON over HTTP, like the FastAPI baseline.

`/npc_turn` is npc_turn's design, as FastAPI's /npc_turn: NPC line embeddings cached, the
player's line encoded, turns batched by `@serve.batch` like npc_encoder's dynamic batcher.

Run: python -m maas.bench.ray_app --repository model_repository --port 8600   (Ctrl-C stops Ray)
"""

from __future__ import annotations

import argparse
import signal
import time
from pathlib import Path
from typing import Any

import numpy as np


def batching_like_triton(repository: Path, model: str) -> tuple[int, float]:
    """The model's committed max_batch_size and queue delay (s), so that Ray batches no more
    and waits no longer than Triton does: the comparison is of serving paths, not settings."""
    from maas.model_config import read_config

    if not (repository / model / "config.pbtxt").exists():
        return 1, 0.0  # not in this repository (an NPC-only one): never called
    config = read_config(repository / model / "config.pbtxt")
    delay_us = int(config.get("dynamic_batching", {}).get("max_queue_delay_microseconds", 0))
    return int(config.get("max_batch_size", 1)), delay_us / 1e6


def build_app(repository: Path) -> Any:
    from ray import serve
    from starlette.requests import Request

    mnist_batch, mnist_wait = batching_like_triton(repository, "mnist")
    pairs, npc_wait = batching_like_triton(repository, "npc_bert")
    from maas.bench.compare import payloads  # the repertoire every client sends

    turns_per_batch = max(1, pairs // len(payloads().lines))
    texts, encoder_wait = batching_like_triton(repository, "npc_encoder")

    @serve.deployment(num_replicas=1, max_ongoing_requests=256)
    class GameModels:
        def __init__(self, repository: str) -> None:
            from maas.bench.models import LineCache, Models

            self.models = Models(Path(repository))
            self.line_cache = LineCache(self.models)

        @serve.batch(max_batch_size=mnist_batch, batch_wait_timeout_s=mnist_wait)
        async def digits(self, images: list[np.ndarray]) -> list[list[float]]:
            return [row.tolist() for row in self.models.digits(np.stack(images))]

        @serve.batch(max_batch_size=turns_per_batch, batch_wait_timeout_s=npc_wait)
        async def turns(self, turns: list[tuple[str, list[str]]]) -> list[list[float]]:
            queries = [query for query, lines in turns for _ in lines]
            lines = [line for _, texts in turns for line in texts]
            scores = self.models.scores(queries, lines).tolist()
            answers = []
            for _, texts in turns:
                answers.append(scores[: len(texts)])
                scores = scores[len(texts) :]
            return answers

        @serve.batch(max_batch_size=texts, batch_wait_timeout_s=encoder_wait)
        async def cached_turns(self, turns: list[tuple[str, list[str]]]) -> list[list[float]]:
            """npc_turn's design (maas.bench.models.LineCache), a batch of turns per call."""
            return [scores.tolist() for scores in self.line_cache.scores(turns)]

        async def __call__(self, request: Request) -> dict[str, list[float]]:
            body = await request.json()
            if request.url.path.rstrip("/").endswith("npc_turn"):
                return {"scores": await self.cached_turns((body["query"], body["candidates"]))}
            if request.url.path.rstrip("/").endswith("mnist"):
                image = np.asarray(body["image"], np.float32)
                return {"probabilities": await self.digits(image)}
            return {"scores": await self.turns((body["query"], body["candidates"]))}

    return GameModels.bind(str(repository))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repository", type=Path, default=Path("model_repository"))
    parser.add_argument("--port", type=int, default=8600)
    args = parser.parse_args()

    import ray
    from ray import serve

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    ray.init(include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": args.port})
        serve.run(build_app(args.repository.resolve()), route_prefix="/")
        print(f"ready on 127.0.0.1:{args.port}", flush=True)
        while True:
            time.sleep(1)
    finally:
        serve.shutdown()
        ray.shutdown()


if __name__ == "__main__":
    main()
