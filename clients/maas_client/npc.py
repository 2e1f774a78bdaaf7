"""NPC dialogue as a game sees it: the player's words and an NPC's lines in, the reply out.

Turns go to `npc_turn` (one request per turn; the server caches the NPC lines' embeddings) when
the server has it, else to `npc_dialogue` (pairs; every line encoded per turn): same scores.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from maas_client.errors import MaasClientError
from maas_client.http_client import ModelClient
from maas_client.npc_file import MAX_TEXTS, Npc

MODEL = "npc_dialogue"  # the pair contract every server with NPCs has
TURN_MODEL = "npc_turn"  # the lean contract: one turn per request
MAX_BATCH = 64  # npc_dialogue's max_batch_size; longer repertoires are split over requests
DEFAULT_THRESHOLD = 0.47  # used when the server's config does not publish REPLY_THRESHOLD
THRESHOLD_PARAMETER = "REPLY_THRESHOLD"
RECHECK_S = 10.0  # how often a client on npc_dialogue looks for npc_turn (it may load later)


@dataclass(frozen=True)
class Reply:
    text: str  # what the NPC says: the best line, or its fallback when nothing fits
    understood: bool  # the best score reached the threshold
    index: int  # the best line's position, even when not understood
    score: float
    threshold: float
    scores: tuple[float, ...]  # per line: the best of its text and its examples
    matched: str = ""  # the text that scored best: the line itself or one of its examples
    model: str = ""  # which served model scored it (npc_turn or npc_dialogue) ...
    model_version: str = ""  # ... and its version: what a playtest log ties a turn to


def choose_reply(
    npc: Npc, scores: Sequence[float], threshold: float, *, with_examples: bool = False
) -> Reply:
    """The threshold rule: the best-scoring line, or the NPC's fallback below the threshold.
    `with_examples`: `scores` follow `npc.scored_texts` (each line, then its examples)."""
    texts = npc.scored_texts if with_examples else npc.texts
    if len(scores) != len(texts):
        raise ValueError(f"{len(scores)} scores for {len(texts)} texts of {npc.name}")
    per_line, matched, start = [], [], 0
    for line in npc.lines:
        width = len(line.texts) if with_examples else 1
        own = [float(s) for s in scores[start : start + width]]
        best = int(np.argmax(own))
        per_line.append(own[best])
        matched.append(line.texts[best])
        start += width
    index = int(np.argmax(per_line))
    best = per_line[index]
    understood = best >= threshold
    text = npc.lines[index].text if understood else npc.fallback
    return Reply(text, understood, index, best, threshold, tuple(per_line), matched[index])


class NpcClient(ModelClient):
    """Scores NPC lines as replies to a player's line; one per thread or task.

    `model`: None picks npc_turn when the server has it ready, else npc_dialogue."""

    def __init__(
        self, url: str | None = None, *, timeout_s: float = 10.0, model: str | None = None
    ) -> None:
        super().__init__(url, timeout_s=timeout_s)
        self.fixed_model = model
        self._model: str | None = model
        self._checked_at = 0.0
        self._thresholds: dict[str, float] = {}

    @property
    def model(self) -> str:
        """The model turns go to now."""
        now = time.monotonic()
        if self._model is None or (
            self.fixed_model is None and self._model == MODEL and now - self._checked_at > RECHECK_S
        ):
            self._checked_at = now
            self._model = TURN_MODEL if self.model_ready(TURN_MODEL) else MODEL
        return self._model

    def rank(self, query: str, candidates: Sequence[str]) -> list[float]:
        """One score per candidate, in their order (higher is a better reply)."""
        if isinstance(candidates, str):
            raise TypeError("candidates must be a list of lines, not one string")
        model = self.model
        try:
            if model == TURN_MODEL:
                return self._rank_turn(query, list(candidates))
            return self._rank_pairs(query, list(candidates))
        except MaasClientError:
            if self.fixed_model is None and model == TURN_MODEL:  # unloaded since: try again
                self._model = None
                if self.model != TURN_MODEL:
                    return self._rank_pairs(query, list(candidates))
            raise

    def _rank_turn(self, query: str, candidates: list[str]) -> list[float]:
        scores: list[float] = []
        for start in range(0, len(candidates), MAX_TEXTS):
            chunk = candidates[start : start + MAX_TEXTS]
            inputs = {
                "QUERY": np.array([[query.encode("utf-8")]], dtype=np.object_),
                "CANDIDATE": np.array([[c.encode("utf-8") for c in chunk]], dtype=np.object_),
            }
            result = self.infer(TURN_MODEL, inputs, ["SCORE"])
            scores.extend(float(s) for s in result["SCORE"].reshape(-1))
        return scores

    def _rank_pairs(self, query: str, candidates: list[str]) -> list[float]:
        scores: list[float] = []
        for start in range(0, len(candidates), MAX_BATCH):
            chunk = candidates[start : start + MAX_BATCH]
            queries = np.array([[query.encode("utf-8")]] * len(chunk), dtype=np.object_)
            lines = np.array([[c.encode("utf-8")] for c in chunk], dtype=np.object_)
            result = self.infer(MODEL, {"QUERY": queries, "CANDIDATE": lines}, ["SCORE"])
            scores.extend(float(s) for s in result["SCORE"].reshape(-1))
        return scores

    @property
    def threshold(self) -> float:
        """The server's REPLY_THRESHOLD (read once per model): the operator's choice."""
        model = self.model
        if model not in self._thresholds:
            raw = self.config_parameters(model).get(THRESHOLD_PARAMETER)
            try:
                self._thresholds[model] = float(raw) if raw else DEFAULT_THRESHOLD
            except ValueError:
                raise MaasClientError(
                    f"{model}: config parameter {THRESHOLD_PARAMETER}={raw!r} is not a number"
                ) from None
        return self._thresholds[model]

    def reply(self, npc: Npc, query: str, *, threshold: float | None = None) -> Reply:
        """The NPC's answer; each line scores as the best of its text and its examples."""
        limit = self.threshold if threshold is None else threshold
        scores = self.rank(query, npc.scored_texts)
        reply = choose_reply(npc, scores, limit, with_examples=True)
        return replace(reply, model=self._model or "", model_version=self.last_model_version)
