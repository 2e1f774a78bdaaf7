"""The larger NPC encoder arrives by itself: after a CPU machine's first (MiniLM) build, mpnet
trains in the background at the lowest CPU priority and, once built, is swapped into the
running server (maas/live_swap.py) without a failed turn.

It builds in a shadow repository outside the served one (placeholders keep the version numbers
going), so Triton never sees a half-published brain: the swap moves the new versions in after
the ensemble is pinned. A stopped build resumes from its checkpoint on the next start (the
recipe's Checkpoint); a GPU machine needs none of this (its first build is mpnet already).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

from maas.background_builds import BuildJob, BuildState
from maas.errors import MaasError
from maas.paths import cache_root, latest_version_dir, version_dirs
from maas.recipes import models_of

UPGRADE_BASE = "mpnet"
# 900 batches: 92.9% right replies with the writer's examples on the independent set (300:
# 91.7%), about 90 minutes of two idle cores; README's quality table.
UPGRADE_STEPS = 900
MODELS = models_of("npc")
PLACEHOLDER = ".placeholder"  # marks a shadow version folder that stands for a served one


def gpu_visible() -> bool:
    """As npc_turn decides it, without importing torch into the game."""
    devices = os.environ.get("CUDA_VISIBLE_DEVICES")
    return Path("/dev/nvidiactl").exists() and devices not in ("", "-1")


def _base_of(version: Path) -> str:
    try:
        card = json.loads((version / "model_card.json").read_text())
    except (OSError, ValueError):
        return "minilm"  # built before cards named a base: MiniLM was the only one
    base = card.get("settings", {}).get("base", "minilm")
    return "minilm" if base in ("auto", None) else str(base)


def serving_base(repository: Path) -> str | None:
    """The base encoder of the newest npc_encoder version (its model card), None if unbuilt."""
    newest = latest_version_dir(repository / "npc_encoder")
    return None if newest is None else _base_of(newest)


def retired_upgrade(repository: Path) -> bool:
    """An mpnet brain was rolled back (or failed to swap in): the user's choice stands."""
    retired = version_dirs(repository / "npc_encoder" / "retired")
    return any(_base_of(v) == UPGRADE_BASE for v in retired)


def wanted(repository: Path, *, npc_missing: bool) -> bool:
    """Whether this machine should go on to mpnet: a CPU machine whose brain is (or is about
    to be) MiniLM, with the NPC models configured."""
    if gpu_visible() or not (repository / "npc_encoder" / "config.pbtxt").exists():
        return False
    if retired_upgrade(repository):
        return False
    return npc_missing or serving_base(repository) == "minilm"


def shadow_for(repository: Path) -> Path:
    digest = hashlib.sha256(str(repository.resolve()).encode()).hexdigest()[:12]
    return cache_root() / "upgrade" / digest


def prepare_shadow(repository: Path, shadow: Path) -> Path:
    """The served repository's NPC configs, and an empty folder per served version so that
    the build numbers its versions after them. Versions a stopped build left are dropped."""
    for name in MODELS:
        target = shadow / name
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        shutil.copy2(repository / name / "config.pbtxt", target / "config.pbtxt")
        for version in version_dirs(repository / name):
            (target / version.name).mkdir()
            (target / version.name / PLACEHOLDER).touch()
        for version in version_dirs(repository / name / "retired"):  # never reused either
            (target / "retired" / version.name).mkdir(parents=True)
    return shadow


def built_versions(shadow: Path) -> dict[str, Path]:
    """Each model's version folder the build wrote (not a placeholder)."""
    found = {}
    for name in MODELS:
        real = [v for v in version_dirs(shadow / name) if not (v / PLACEHOLDER).exists()]
        if real:
            found[name] = real[-1]
    return found


def move_in(repository: Path, shadow: Path) -> dict[str, int]:
    """Moves the built versions into the served repository (a hidden name first, then one
    rename: Triton never sees half a folder). Refuses if the served one moved on meanwhile."""
    built = built_versions(shadow)
    if "npc_encoder" not in built:
        raise MaasError(f"the upgrade build left no npc_encoder version in {shadow}")
    for name, folder in built.items():
        served = latest_version_dir(repository / name)
        if served is not None and int(served.name) >= int(folder.name):
            raise MaasError(
                f"{repository / name} has version {served.name} already (built meanwhile?); "
                f"the upgrade's version {folder.name} stays in {shadow}"
            )
    incoming = {name: repository / name / f".incoming-{f.name}" for name, f in built.items()}
    try:  # every copy first, then the renames: a full disk leaves no model half upgraded
        for name, folder in built.items():
            shutil.rmtree(incoming[name], ignore_errors=True)
            shutil.copytree(folder, incoming[name])
    except OSError as error:
        for path in incoming.values():
            shutil.rmtree(path, ignore_errors=True)
        raise MaasError(f"cannot move the upgrade into {repository}: {error}") from None
    for name, folder in built.items():
        incoming[name].rename(repository / name / folder.name)
    shutil.rmtree(shadow, ignore_errors=True)
    return {name: int(folder.name) for name, folder in built.items()}


def retire_versions(repository: Path, versions: dict[str, int]) -> None:
    """Moves these version folders to `<model>/retired/` (a swap that failed half way: the
    next start must not serve them)."""
    for name, version in versions.items():
        folder = repository / name / str(version)
        if folder.is_dir():
            (repository / name / "retired").mkdir(exist_ok=True)
            folder.rename(repository / name / "retired" / str(version))


def rollback(repository: Path, url: str | None, headers: dict[str, str]) -> dict[str, int]:
    """The previous NPC brain serves again: each NPC model's newest version moves to
    `<model>/retired/` (kept, its number never reused); with `url` the running server is
    switched live, as the upgrade was. Returns the versions that serve now."""
    from maas.live_swap import LiveSwap

    newest, previous = {}, {}
    for name in MODELS:
        versions = version_dirs(repository / name)
        if name == "npc_dialogue" or not versions:
            continue  # the ensemble's one folder stays
        if len(versions) < 2:
            only = versions[-1].name
            raise MaasError(f"{name} has only version {only}: nothing to go back to")
        newest[name], previous[name] = versions[-1], int(versions[-2].name)

    if not newest:
        raise MaasError(f"no NPC model versions in {repository}: nothing to roll back")

    def retire() -> None:
        for name, folder in newest.items():
            (repository / name / "retired").mkdir(exist_ok=True)
            folder.rename(repository / name / "retired" / folder.name)

    if url is None:
        retire()
    else:
        with LiveSwap(url, headers, repository) as swap:
            swap.switch(MODELS, previous, before_settle=retire)
    return previous


def upgrade_job(
    repository: Path,
    url: str,
    headers: dict[str, str],
    args: tuple[str, ...] = ("--base", UPGRADE_BASE, "--steps", str(UPGRADE_STEPS)),
) -> BuildJob:
    """The background build of mpnet and its live swap into the server at `url` (`args`:
    the build's options; the tests' quick build)."""
    shadow = shadow_for(repository)

    def publish(state: BuildState) -> str:
        from maas.live_swap import LiveSwap, newest_versions

        state.step = "swapping it into the server"
        published: dict[str, int] = {}

        def publish_folders() -> None:
            published.update(move_in(repository, shadow))

        with LiveSwap(url, headers, repository) as swap:
            try:
                swap.switch(
                    MODELS, lambda: newest_versions(repository, MODELS), publish=publish_folders
                )
            except Exception:
                retire_versions(repository, published)  # the previous brain stays, next time too
                raise
        version = latest_version_dir(repository / "npc_turn")
        return (
            f"The NPC brain is sharper now: {UPGRADE_BASE} answers from here on "
            f"(npc_turn version {version.name if version else '?'})."
        )

    return BuildJob(
        "npc",
        args,
        label=f"NPC brain upgrade ({UPGRADE_BASE})",
        owes_models=False,
        nice=19,
        stop_grace_s=90.0,
        publish=publish,
        repository=shadow,
        prepare=lambda: prepare_shadow(repository, shadow),  # after the first build, if any
    )
