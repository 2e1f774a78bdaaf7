"""Real MNIST test digits for tests, through the build recipe's own cached loader."""

from __future__ import annotations

import numpy as np

from maas.recipes import load


def real_test_digits(count: int) -> tuple[np.ndarray, np.ndarray]:
    recipe = load("mnist")
    files = recipe.fetch_mnist()
    images = recipe.load_idx(files["t10k-images-idx3-ubyte"])[:count].astype(np.float32) / 255.0
    labels = recipe.load_idx(files["t10k-labels-idx1-ubyte"])[:count].astype(np.int64)
    return images, labels
