"""What every build recipe needs: cached downloads with checks, version folders, model cards."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import platform
import shutil
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from maas.errors import MaasError
from maas.paths import cache_root, version_dirs

console = Console(stderr=True)
MODEL_CARD = "model_card.json"


class BuildError(MaasError):
    """A build could not finish: a download, a checksum, a quality gate."""


def data_cache(name: str) -> Path:
    path = cache_root() / "data" / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def file_digest(path: Path, algorithm: str = "md5") -> str:
    digest = hashlib.new(algorithm)
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download(url: str, target: Path, *, description: str) -> Path:
    """Fetch `url` to `target` with a progress bar; keep an existing file (the cache)."""
    if target.exists():
        return target
    partial = target.with_suffix(target.suffix + ".partial")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, partial.open("wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            columns = (
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
            )
            with Progress(*columns, console=console) as progress:
                task = progress.add_task(description, total=total)
                for chunk in iter(lambda: response.read(1 << 16), b""):
                    out.write(chunk)
                    progress.advance(task, len(chunk))
    except (OSError, http.client.HTTPException) as error:
        partial.unlink(missing_ok=True)
        raise BuildError(f"could not download {url}: {error}") from None
    partial.rename(target)
    return target


def read_json_url(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            return json.loads(response.read())
    except (OSError, ValueError, http.client.HTTPException) as error:
        raise BuildError(f"could not reach {url}: {error}") from None


def next_version_dir(model_dir: Path) -> Path:
    """A new numbered folder after the highest one, retired ones included (rollbacks move
    versions to retired/): builds never overwrite or reuse a version."""
    numbers = [int(v.name) for v in version_dirs(model_dir)]
    numbers += [int(v.name) for v in version_dirs(model_dir / "retired")]
    target = model_dir / str(max(numbers, default=0) + 1)
    target.mkdir()
    return target


@dataclass
class StagedVersion:
    path: Path  # build here
    published: Path | None = None  # the numbered folder, once the block has finished


@contextmanager
def staged_version(model_dir: Path) -> Iterator[StagedVersion]:
    """A folder Triton ignores (not a number) to build in, published as the next version only
    when the block finishes: an interrupted or failed build never leaves a broken version."""
    stage = StagedVersion(Path(tempfile.mkdtemp(prefix=".building-", dir=model_dir)))
    try:
        yield stage
        while stage.published is None:
            target = next_version_dir(model_dir)
            target.rmdir()
            with contextlib.suppress(OSError):  # another build may publish this number first
                stage.path.rename(target)
                stage.published = target
    finally:
        if stage.path.exists():
            shutil.rmtree(stage.path, ignore_errors=True)


@dataclass
class ModelCard:
    """What a build produced and how, written beside the artifact and printed."""

    model: str
    version: int
    quick: bool
    metrics: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    timings_s: dict[str, float] = field(default_factory=dict)
    environment: dict[str, str] = field(
        default_factory=lambda: {
            "python": platform.python_version(),
            "machine": platform.machine(),
            "processor": platform.processor() or "unknown",
        }
    )

    def write(self, version_dir: Path) -> Path:
        path = version_dir / MODEL_CARD
        path.write_text(json.dumps(self.__dict__, indent=2, sort_keys=False) + "\n")
        return path


STATUS_ENV = "MAAS_BUILD_STATUS"  # a file a watcher (the game's build line) reads
_last_status = {"at": 0.0}


def report_status(step: str, fraction: float | None = None, *, every_s: float = 1.0) -> None:
    """Where a build stands, for whoever started it in the background; at most once per
    `every_s` within a step. Written aside and renamed, so a reader never sees half of it."""
    path = os.environ.get(STATUS_ENV)
    now = time.monotonic()
    if not path or (fraction not in (None, 0.0) and now - _last_status["at"] < every_s):
        return
    _last_status["at"] = now
    draft = Path(f"{path}.tmp")
    with contextlib.suppress(OSError):
        draft.write_text(json.dumps({"step": step, "fraction": fraction}))
        os.replace(draft, path)


@contextmanager
def timed(card: ModelCard, step: str) -> Iterator[None]:
    report_status(step)
    started = time.monotonic()
    try:
        yield
    finally:
        card.timings_s[step] = round(time.monotonic() - started, 1)
