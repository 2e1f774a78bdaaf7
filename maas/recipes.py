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
# Which repository models each recipe fills, as data: answering "how do I build npc_bert?"
# must not execute every recipe. A recipe not listed fills the model of its own name.
RECIPE_MODELS: dict[str, tuple[str, ...]] = {
    "mnist": ("mnist",),
    "npc": ("npc_tokenizer", "npc_bert", "npc_dialogue", "npc_encoder", "npc_turn"),
}


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
    return RECIPE_MODELS.get(name, (name,))


def recipe_for(model: str) -> str:
    """The recipe that fills `model` (npc_dialogue is built by `npc`), else the model's name."""
    return next((r for r, models in RECIPE_MODELS.items() if model in models), model)


def missing(repository: Path) -> list[str]:
    """Recipes with a model configured in `repository` that has no version built yet."""
    found = []
    for name in available():
        models = models_of(name)
        configured = [m for m in models if (repository / m / "config.pbtxt").exists()]
        if configured and any(latest_version_dir(repository / m) is None for m in configured):
            found.append(name)
    return found
