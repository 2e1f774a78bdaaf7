"""Where the project's folders are, whether maas runs from the checkout or elsewhere."""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def default_repository() -> Path:
    """model_repository/ in the current folder if there is one, else the checkout's."""
    here = Path.cwd() / "model_repository"
    return here if here.is_dir() else PROJECT_ROOT / "model_repository"


def cache_root() -> Path:
    """Downloads, the assembled backend directory and Triton logs: outside git (MAAS_CACHE)."""
    return Path(os.environ.get("MAAS_CACHE", Path.home() / ".cache" / "maas"))


def version_dirs(model_dir: Path) -> list[Path]:
    """A model's numbered version folders, as Triton sees them, lowest first."""
    if not model_dir.is_dir():
        return []
    found = [p for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    return sorted(found, key=lambda p: int(p.name))


def latest_version_dir(model_dir: Path) -> Path | None:
    versions = version_dirs(model_dir)
    return versions[-1] if versions else None
