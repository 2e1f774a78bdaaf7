"""npc_turn's encoder.onnx: the CPU path's copy of npc_encoder, run by npc_turn itself.

It is no model of its own to Triton, so the per-model checks would never open it. Checked here:
it runs in the local onnxruntime and, with `--runtime ngc-24.10`, in the image's onnxruntime
1.19.2 (a CPU image built on NGC's may install that), and gives npc_encoder's embeddings for the
same token ids: within 1e-4 in fp32, and a cosine of at least INT8_MIN_COSINE where the build
kept int8 (its quality gate is the held-out set; this catches a wrong or stale file).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np

FILENAME = "encoder.onnx"
FP32_ATOL = 1e-4
INT8_MIN_COSINE = 0.97


def token_ids(seed: int = 0) -> dict[str, np.ndarray]:
    """Four rows of 16 vocabulary ids (not the 0/1 of generic samples), one padded after 9."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(1000, 20000, size=(4, 16)).astype(np.int64)
    mask = np.ones_like(ids)
    ids[1, 9:], mask[1, 9:] = 0, 0
    return {"input_ids": ids, "attention_mask": mask}


def onnx_config(encoder_config: dict[str, Any]) -> dict[str, Any]:
    """npc_encoder's config (the same tensors) as an ONNX model's."""
    config = copy.deepcopy(encoder_config)
    config.pop("platform", None)
    config["backend"] = "onnxruntime"
    return config


def precision(path: Path) -> str:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}.get("precision", "fp32")


def compare(have: np.ndarray, want: np.ndarray, kind: str) -> str | None:
    """Why `have` is not npc_encoder's `want`, or None."""
    if have.shape != want.shape:
        return f"shape {list(have.shape)}, npc_encoder gives {list(want.shape)}"
    if kind == "int8":
        cosine = float(
            (
                (have * want).sum(1) / np.linalg.norm(have, axis=1) / np.linalg.norm(want, axis=1)
            ).min()
        )
        return None if cosine >= INT8_MIN_COSINE else f"cosine {cosine:.3f} < {INT8_MIN_COSINE}"
    gap = float(np.abs(have - want).max())
    return None if gap <= FP32_ATOL else f"differs from npc_encoder by {gap:.2g}"


def encoder_version(version_dir: Path, repository: Path) -> Path | None:
    """The npc_encoder version folder that npc_turn's encoder.json names."""
    try:
        named = json.loads((version_dir / "encoder.json").read_text())
        return repository / named["model"] / str(named["version"])
    except (OSError, ValueError, KeyError):
        return None
