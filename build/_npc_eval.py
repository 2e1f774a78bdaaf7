"""Held-out evaluation of the NPC encoder, as npc_turn serves it: every distinct text encoded
once (tokenized like the server: truncated at 128, padded to a multiple of 16), a turn's scores
the dot products of the player's line with the NPC's lines; a line with `examples` scores as the
best of its text and its examples, as the client does.

What is measured on a set: top-1 and MRR of the right line; at a threshold, the share of player
lines that get the right reply (best line is the right one and reaches the threshold) and the
share of off-topic lines refused (best line below the threshold, against every NPC).
"""

from __future__ import annotations

from typing import Any

import numpy as np

BATCH = 64


def embed(encoder: Any, tokenizer: Any, texts: list[str]) -> dict[str, np.ndarray]:
    """text -> unit vector, for each distinct text (sorted by length: little padding)."""
    import torch

    unique = sorted(set(texts), key=len)
    found: dict[str, np.ndarray] = {}
    with torch.inference_mode():
        for start in range(0, len(unique), BATCH):
            chunk = unique[start : start + BATCH]
            batch = tokenizer(
                chunk,
                padding=True,
                truncation=True,
                max_length=128,
                pad_to_multiple_of=16,
                return_tensors="pt",
            )
            vectors = encoder(batch["input_ids"], batch["attention_mask"]).numpy()
            found.update(zip(chunk, vectors))
    return found


def report(
    encoder: Any,
    tokenizer: Any,
    npcs: list[Any],
    offtopic: list[str],
    threshold: float | None = None,
) -> dict[str, Any]:
    turns = [
        (player, npc, index)
        for npc in npcs
        for index, line in enumerate(npc.lines)
        for player in line.player
    ]
    texts = [t for npc in npcs for t in npc.scored_texts] + [p for p, _, _ in turns] + offtopic
    vectors = embed(encoder, tokenizer, texts)
    lines = {npc.name: _line_scorer(npc, vectors) for npc in npcs}
    top1 = reciprocal = 0.0
    best_when_right = []  # the right line's score where it ranked first
    for player, npc, answer in turns:
        row = lines[npc.name](vectors[player])
        rank = 1 + int((row > row[answer]).sum())
        top1 += rank == 1
        reciprocal += 1 / rank
        if rank == 1:
            best_when_right.append(float(row[answer]))
    offtopic_best = [float(lines[npc.name](vectors[o]).max()) for npc in npcs for o in offtopic]
    found: dict[str, Any] = {
        "top1": round(top1 / len(turns), 4),
        "mrr": round(reciprocal / len(turns), 4),
        "player_lines": len(turns),
        "npcs": len(npcs),
        "_best_when_right": best_when_right,
        "_offtopic_best": offtopic_best,
    }
    return found if threshold is None else at_threshold(found, threshold)


def at_threshold(found: dict[str, Any], threshold: float) -> dict[str, Any]:
    """A report's figures at a threshold, from its score lists (nothing encoded again)."""
    right = sum(s >= threshold for s in found["_best_when_right"])
    offtopic = found["_offtopic_best"]
    return {
        **found,
        "right_reply": round(right / found["player_lines"], 4),
        "offtopic_refused": round(sum(s < threshold for s in offtopic) / max(1, len(offtopic)), 4),
        "threshold": threshold,
    }


def _line_scorer(npc: Any, vectors: dict[str, np.ndarray]) -> Any:
    """player vector -> one score per line: the best of the line's text and its examples."""
    matrix = np.stack([vectors[t] for t in npc.scored_texts])
    owner = np.array([i for i, line in enumerate(npc.lines) for _ in line.texts])

    def score(player: np.ndarray) -> np.ndarray:
        row = np.full(len(npc.lines), -np.inf, dtype=np.float64)
        np.maximum.at(row, owner, matrix @ player)
        return row

    return score


def public(found: dict[str, Any]) -> dict[str, Any]:
    """The figures without the score lists (what the model card keeps)."""
    return {k: v for k, v in found.items() if not k.startswith("_")}
