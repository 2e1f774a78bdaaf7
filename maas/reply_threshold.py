"""The NPC reply threshold an operator serves against the one the served model's build suggested.

The threshold lives in the committed configs, the suggestion in each build's model card; a model
rebuilt by another recipe (or on a GPU) can need another value, and nothing else would say so.
"""

from __future__ import annotations

import json
from pathlib import Path

from maas.model_config import ConfigError, read_config
from maas.paths import latest_version_dir

MODELS = ("npc_turn", "npc_dialogue")  # same scores, so one threshold for both
TOLERANCE = 0.015  # the build's rule moves in steps of 0.01


def served(config: Path) -> float | None:
    """REPLY_THRESHOLD in a config.pbtxt; None when missing, unreadable or not a number."""
    try:
        parameters = read_config(config).get("parameters", {})
        return float(parameters["REPLY_THRESHOLD"]["string_value"])
    except (ConfigError, KeyError, ValueError):
        return None


def suggested(repository: Path) -> float | None:
    """What the newest npc_bert's build suggested; None for quick builds and older cards."""
    version = latest_version_dir(repository / "npc_bert")
    card = version / "model_card.json" if version else None
    if card is None or not card.exists():
        return None
    try:
        data = json.loads(card.read_text())
    except (OSError, ValueError):
        return None
    value = data.get("metrics", {}).get("reply_threshold")
    return None if data.get("quick") or not isinstance(value, int | float) else float(value)


def warnings(repository: Path, suggestion: float | None = None) -> list[str]:
    """One line per config whose threshold is not the suggestion (the served build's if none)."""
    suggestion = suggested(repository) if suggestion is None else suggestion
    if suggestion is None or not (repository / "npc_turn").is_dir():
        return []
    lines = []
    for name in MODELS:
        config = repository / name / "config.pbtxt"
        value = served(config)
        if value is None or abs(value - suggestion) > TOLERANCE:
            lines.append(
                f"REPLY_THRESHOLD in {config} is {value}; the NPC model's build suggests "
                f"{suggestion}: change it to match (or rebuild with `maas build npc`)."
            )
    return lines
