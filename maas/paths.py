"""Where the project's folders are, whether maas runs from the checkout or elsewhere."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def default_repository() -> Path:
    """model_repository/ in the current folder if there is one, else the checkout's."""
    here = Path.cwd() / "model_repository"
    return here if here.is_dir() else PROJECT_ROOT / "model_repository"
