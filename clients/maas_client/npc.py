"""NPC dialogue as a game sees it: the player's words and an NPC's lines in, the reply out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from maas_client.errors import MaasClientError
from maas_client.http_client import ModelClient
from maas_client.npc_file import Npc

MODEL = "npc_dialogue"
MAX_BATCH = 64  # npc_dialogue's max_batch_size; longer repertoires are split over requests
DEFAULT_THRESHOLD = 0.34  # used when the server's config does not publish REPLY_THRESHOLD
THRESHOLD_PARAMETER = "REPLY_THRESHOLD"


@dataclass(frozen=True)
class Reply:
    text: str  # what the NPC says: the best line, or its fallback when nothing fits
    understood: bool  # the best score reached the threshold
    index: int  # the best line's position, even when not understood
    score: float
    threshold: float
    scores: tuple[float, ...]


def choose_reply(npc: Npc, scores: Sequence[float], threshold: float) -> Reply:
    """The threshold rule: the best-scoring line, or the NPC's fallback below the threshold."""
    if len(scores) != len(npc.lines):
        raise ValueError(f"{len(scores)} scores for {len(npc.lines)} lines of {npc.name}")
    index = int(np.argmax(scores))
    best = float(scores[index])
    understood = best >= threshold
    text = npc.lines[index].text if understood else npc.fallback
    return Reply(text, understood, index, best, threshold, tuple(float(s) for s in scores))


class NpcClient(ModelClient):
    """Scores NPC lines as replies to a player's line; one per thread or task."""

    _threshold: float | None = None

    def rank(self, query: str, candidates: Sequence[str]) -> list[float]:
        """One score per candidate, in their order (higher is a better reply)."""
        if isinstance(candidates, str):
            raise TypeError("candidates must be a list of lines, not one string")
        scores: list[float] = []
        for start in range(0, len(candidates), MAX_BATCH):
            chunk = list(candidates[start : start + MAX_BATCH])
            queries = np.array([[query.encode("utf-8")]] * len(chunk), dtype=np.object_)
            lines = np.array([[c.encode("utf-8")] for c in chunk], dtype=np.object_)
            result = self.infer(MODEL, {"QUERY": queries, "CANDIDATE": lines}, ["SCORE"])
            scores.extend(float(s) for s in result["SCORE"].reshape(-1))
        return scores

    @property
    def threshold(self) -> float:
        """The server's REPLY_THRESHOLD (read once): the operator's choice, from the model card."""
        if self._threshold is None:
            raw = self.config_parameters(MODEL).get(THRESHOLD_PARAMETER)
            try:
                self._threshold = float(raw) if raw else DEFAULT_THRESHOLD
            except ValueError:
                raise MaasClientError(
                    f"{MODEL}: config parameter {THRESHOLD_PARAMETER}={raw!r} is not a number"
                ) from None
        return self._threshold

    def reply(self, npc: Npc, query: str, *, threshold: float | None = None) -> Reply:
        limit = self.threshold if threshold is None else threshold
        return choose_reply(npc, self.rank(query, npc.texts), limit)
