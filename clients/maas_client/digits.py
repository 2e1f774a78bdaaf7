"""The digit recognizer as a game sees it: drawings in, a digit and ten probabilities out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from maas_client.drawing import prepare
from maas_client.errors import MaasClientError
from maas_client.http_client import ModelClient

MODEL = "mnist"
INPUT = "IMAGE"
OUTPUT = "PROBABILITIES"
MAX_BATCH = 128  # the model's max_batch_size; larger batches are split


@dataclass(frozen=True)
class DigitResult:
    digit: int
    probabilities: tuple[float, ...]
    image: np.ndarray  # the 28x28 image the model saw

    def top(self, k: int = 3) -> list[tuple[int, float]]:
        order = np.argsort(self.probabilities)[::-1][:k]
        return [(int(i), float(self.probabilities[i])) for i in order]


class DigitClient(ModelClient):
    """Drawings in, digits out; one per thread or task (see ModelClient)."""

    def classify(self, drawing: np.ndarray) -> DigitResult:
        return self.classify_batch([drawing])[0]

    def classify_batch(self, drawings: Sequence[np.ndarray]) -> list[DigitResult]:
        """Prepare every drawing, then send them as batches of up to MAX_BATCH per request."""
        images = np.stack([prepare(d) for d in drawings]) if drawings else np.zeros((0, 28, 28))
        results: list[DigitResult] = []
        for start in range(0, len(images), MAX_BATCH):
            chunk = images[start : start + MAX_BATCH].astype(np.float32)
            probabilities = self.probabilities(chunk)
            results.extend(
                DigitResult(int(p.argmax()), tuple(float(v) for v in p), image)
                for p, image in zip(probabilities, chunk)
            )
        return results

    def probabilities(self, images: np.ndarray) -> np.ndarray:
        """Raw call: prepared [N,28,28] float32 images to [N,10] probabilities.

        The server computes whatever it is given (NaN in, NaN out, as NVIDIA's backends do),
        so non-finite pixels are refused here, before they cost a request."""
        if not np.isfinite(images).all():
            bad = int((~np.isfinite(images)).reshape(len(images), -1).any(axis=1).argmax())
            raise MaasClientError(f"image {bad} holds NaN or infinite pixels; nothing was sent")
        inputs = {INPUT: np.ascontiguousarray(images, np.float32)}
        return self.infer(MODEL, inputs, [OUTPUT])[OUTPUT]
