"""Finding and running the build recipes in build/ (loaded by path: build/ is not a package,
so it cannot shadow PyPA's `build`)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from maas.errors import MaasError
from maas.paths import PROJECT_ROOT, latest_version_dir

RECIPES_DIR = PROJECT_ROOT / "build"


def available() -> list[str]:
    return sorted(p.stem for p in RECIPES_DIR.glob("*.py") if not p.name.startswith("_"))


def load(name: str) -> ModuleType:
    path = RECIPES_DIR / f"{name}.py"
    if not path.exists():
        raise MaasError(f"no recipe named {name!r}; available: {', '.join(available())}")
    spec = importlib.util.spec_from_file_location(f"maas_recipe_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses and pickling look their module up here
    spec.loader.exec_module(module)
    return module


def models_of(name: str) -> tuple[str, ...]:
    """The repository models a recipe builds: its MODELS, or the model named like it."""
    return tuple(getattr(load(name), "MODELS", (name,)))


def missing(repository: Path) -> list[str]:
    """Recipes with a model configured in `repository` that has no version built yet."""
    found = []
    for name in available():
        models = models_of(name)
        configured = [m for m in models if (repository / m / "config.pbtxt").exists()]
        if configured and any(latest_version_dir(repository / m) is None for m in configured):
            found.append(name)
    return found
