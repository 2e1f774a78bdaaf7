"""add-model end to end: derive the config, prove it in a real Triton from a staging copy,
then place it in the repository (and load it into a running server) without ever leaving the
repository half-changed. Also rollback and unload, the other half of a live model's life.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from maas.add_model.artifact import describe
from maas.add_model.client_example import request_body
from maas.add_model.config_text import config_text
from maas.add_model.declarations import AddModelError, load_example, parse_tensor_option
from maas.add_model.derive import Derived, derive
from maas.add_model.live import LiveServer
from maas.model_config import ConfigError, read_config
from maas.paths import version_dirs
from maas.validate import ngc
from maas.validate.pipeline import (
    ModelReport,
    check_ngc,
    check_served,
    differences,
    load_runner,
    server_for,
)
from maas.validate.static import ModelEntry
from maas_backends.common import BackendError, execute_batched, framework_message

Log = Callable[[str], None]
RETIRED = "retired"  # a model's rolled-back versions: Triton ignores folders that are not numbers
CARD = "model_card.json"
EXAMPLE_REQUEST = "example_request.json"  # the printed curl command's body
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass
class AddRequest:
    artifact: Path
    name: str
    repository: Path
    version: int | None = None
    max_batch_size: int | None = None
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    example: Path | None = None
    instances: int | None = None
    dynamic_batching: bool | None = None
    signature: str = ""
    url: str | None = None
    key_file: Path | None = None
    runtime: str = ngc.RUNTIME
    dry_run: bool = False


@dataclass
class AddResult:
    name: str
    version: int
    model_dir: Path
    config: dict[str, Any]
    config_text: str
    notes: list[str]
    checks: list[tuple[str, str]]  # (check, detail), all passed
    inputs: dict[str, np.ndarray]
    new_model: bool
    installed: bool
    live: bool


def version_numbers(model_dir: Path) -> list[int]:
    """Every version number the model has used, rolled-back ones included: never reused."""
    return sorted(served_numbers(model_dir) + served_numbers(model_dir / RETIRED))


def served_numbers(model_dir: Path) -> list[int]:
    return [int(p.name) for p in version_dirs(model_dir)]


def _existing_config(model_dir: Path) -> dict[str, Any] | None:
    path = model_dir / "config.pbtxt"
    if not model_dir.exists():
        return None
    if not path.is_file():
        raise AddModelError(f"{model_dir} exists without a config.pbtxt: not a model to extend")
    try:
        config = read_config(path)
    except ConfigError as error:
        raise AddModelError(f"the model's config does not parse: {error}") from None
    config.setdefault("name", model_dir.name)
    return config


def _check_settings(request: AddRequest, existing: dict[str, Any]) -> None:
    """Batching and instances belong to the model, not to a version: a new version keeps them."""
    changes = []
    if request.max_batch_size is not None and request.max_batch_size != int(
        existing.get("max_batch_size", 0)
    ):
        changes.append(f"--max-batch-size {request.max_batch_size}")
    groups = existing.get("instance_group", []) or [{"count": 1}]
    if request.instances is not None and request.instances != sum(
        int(g.get("count", 1)) for g in groups
    ):
        changes.append(f"--instances {request.instances}")
    if request.dynamic_batching is False and "dynamic_batching" in existing:
        changes.append("--no-dynamic-batching")
    if changes:
        raise AddModelError(
            f"'{request.name}' exists: {', '.join(changes)} would change its config.pbtxt, "
            "which all its versions share. Edit the config, or add a new model"
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _card(request: AddRequest, derived: Derived, version: int, checks) -> dict[str, Any]:
    def side(key: str) -> list[dict[str, Any]]:
        return [
            {"name": t["name"], "data_type": t["data_type"], "dims": [int(d) for d in t["dims"]]}
            for t in derived.config.get(key, [])
        ]

    return {
        "name": request.name,
        "version": version,
        "platform": derived.config["platform"],
        "source": str(request.artifact.resolve()),
        "sha256": _sha256(request.artifact),
        "inputs": side("input"),
        "outputs": side("output"),
        "max_batch_size": int(derived.config.get("max_batch_size", 0)),
        "validated": [name for name, _ in checks],
        "added": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }


def _copy_artifact(source: Path, target: Path) -> None:
    if source.is_dir():
        shutil.copytree(source, target)
    else:
        shutil.copy2(source, target)


def _entry(name: str, folder: Path, config: dict[str, Any]) -> ModelEntry:
    return ModelEntry(name=name, folder=folder, config=config)


def _prove(
    request: AddRequest, derived: Derived, staged: Path, version: int, log: Log
) -> list[tuple[str, str]]:
    """Our backend's load checks (the native rules) and a run, a temporary Triton, and the
    NGC image's frameworks; each compared with the artifact run by its own framework."""
    checks: list[tuple[str, str]] = []
    spec = derived.spec
    config = derived.config
    model_dir = staged / request.name
    entry = _entry(request.name, model_dir, config)
    framework = entry.backend
    artifact = entry.artifact(model_dir / str(version))
    try:
        runner = load_runner(framework, artifact, spec)
    except BackendError as error:
        raise AddModelError(f"the config does not fit the artifact: {error}") from None
    except Exception as error:
        raise AddModelError(f"loading it as Triton would: {framework_message(error)}") from None
    (result,) = execute_batched(spec, [derived.inputs], runner.run)
    del runner
    if isinstance(result, BackendError):
        raise AddModelError(f"run as the backend would: {result}")
    if derived.expected is not None:
        problems = differences(result, derived.expected, "the framework's own run")
        if problems:
            raise AddModelError("run as the backend would: " + "; ".join(problems))
    checks.append(("backend rules", f"{artifact.name} loads and runs as the native backend would"))

    report = ModelReport(request.name, str(version), framework)
    report.inputs, report.local_outputs = derived.inputs, derived.expected
    with server_for(staged, None, log) as target:
        check_served(target, report, entry)
    if request.runtime == ngc.RUNTIME:
        check_ngc(report, entry, log)
    for check in report.checks:
        if check.ok is False:
            raise AddModelError(f"{check.name}: {check.detail}")
        checks.append((check.name, check.detail))
    return checks


@contextlib.contextmanager
def _staging() -> Iterator[Path]:
    folder = Path(tempfile.mkdtemp(prefix="maas-add-"))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def add_model(request: AddRequest, log: Log = print) -> AddResult:
    if not _NAME.match(request.name):
        raise AddModelError(
            f"--name {request.name!r}: letters, digits, '_', '-' and '.', starting with a letter "
            "or digit"
        )
    repository = request.repository
    if not repository.is_dir():
        raise AddModelError(f"repository {repository} is not a folder")
    model_dir = repository / request.name
    existing = _existing_config(model_dir)
    if existing is not None:
        _check_settings(request, existing)
    used = version_numbers(model_dir)
    version = request.version if request.version is not None else (max(used, default=0) + 1)
    if version < 1:
        raise AddModelError("--version is 1 or more")
    if version in used:
        raise AddModelError(
            f"version {version} of '{request.name}' exists; versions are never overwritten: "
            f"leave --version out (next: {max(used) + 1})"
        )
    served = served_numbers(model_dir)
    if served and version < max(served):
        raise AddModelError(
            f"version {version} is below the latest ({max(served)}), which Triton would keep "
            f"serving: leave --version out (next: {max(used) + 1})"
        )
    live = None
    if request.url and not request.dry_run:
        live = LiveServer(request.url, request.key_file)
    try:
        return _add(request, existing, version, live, log)
    finally:
        if live is not None:
            live.close()


def _add(
    request: AddRequest,
    existing: dict[str, Any] | None,
    version: int,
    live: LiveServer | None,
    log: Log,
) -> AddResult:
    artifact = describe(request.artifact, request.signature)
    example = load_example(request.example) if request.example else None
    declared_in = [parse_tensor_option(t, "--input") for t in request.inputs]
    declared_out = [parse_tensor_option(t, "--output") for t in request.outputs]
    log(f"Deriving the config of {request.name} version {version} from {request.artifact}")
    derived = derive(
        artifact,
        name=request.name,
        declared_inputs=declared_in,
        declared_outputs=declared_out,
        example=example,
        max_batch_size=request.max_batch_size,
        instances=request.instances or 1,
        dynamic_batching=request.dynamic_batching is not False,
        existing=existing,
    )
    text = config_text(derived.config)
    model_dir = request.repository / request.name
    with _staging() as staged:
        staged_model = staged / request.name
        if existing is None:
            staged_model.mkdir()
            (staged_model / "config.pbtxt").write_text(text, encoding="utf-8")
        else:  # the model as it is (config, label files), with only the new version in it
            shutil.copytree(model_dir, staged_model, ignore=_versions_and_retired)
        (staged_model / str(version)).mkdir()
        _copy_artifact(request.artifact, staged_model / str(version) / artifact.filename)
        log("Proving it: native load rules, a temporary Triton, the NGC image's frameworks")
        checks = _prove(request, derived, staged, version, log)
        result = AddResult(
            request.name,
            version,
            model_dir,
            derived.config,
            text,
            derived.notes,
            checks,
            derived.inputs,
            new_model=existing is None,
            installed=False,
            live=False,
        )
        if request.dry_run:
            return result
        card = _card(request, derived, version, checks)
        (staged_model / str(version) / CARD).write_text(json.dumps(card, indent=2) + "\n")
        body = request_body(derived.spec, derived.inputs)
        (staged_model / str(version) / EXAMPLE_REQUEST).write_text(json.dumps(body) + "\n")
        _install(staged_model, model_dir, version, existing is None)
        result.installed = True
    if live is not None:
        try:
            _go_live(live, result, derived, log)
        except BaseException:
            _uninstall(model_dir, version, existing is None)
            with contextlib.suppress(AddModelError):
                if existing is None:
                    live.unload(request.name)
                else:
                    live.load(request.name)  # back to the files as they were
            raise
        result.live = True
    return result


def _versions_and_retired(folder: str, names: list[str]) -> list[str]:
    if Path(folder).name == RETIRED:
        return names
    return [n for n in names if n == RETIRED or (n.isdigit() and (Path(folder) / n).is_dir())]


def _install(staged_model: Path, model_dir: Path, version: int, new_model: bool) -> None:
    """Copied next to its place under a name Triton ignores, then renamed into place."""
    incoming = (model_dir.parent if new_model else model_dir) / f".incoming-{os.getpid()}"
    try:
        if new_model:
            shutil.copytree(staged_model, incoming)
            os.rename(incoming, model_dir)
        else:
            shutil.copytree(staged_model / str(version), incoming)
            os.rename(incoming, model_dir / str(version))
    except BaseException as error:
        shutil.rmtree(incoming, ignore_errors=True)
        if isinstance(error, OSError):
            raise AddModelError(f"cannot write into {model_dir.parent}: {error}") from None
        raise


def _uninstall(model_dir: Path, version: int, new_model: bool) -> None:
    shutil.rmtree(model_dir if new_model else model_dir / str(version), ignore_errors=True)


def _go_live(live: LiveServer, result: AddResult, derived: Derived, log: Log) -> None:
    if not live.knows(result.name):
        raise AddModelError(
            f"the server at {live.url} does not read {result.model_dir.parent}: its repository "
            f"has no '{result.name}'. Pass the server's --repository"
        )
    log(f"Loading {result.name} version {result.version} into {live.url}")
    live.load(result.name)
    if str(result.version) not in live.ready_versions(result.name):
        raise AddModelError(f"version {result.version} did not become ready on {live.url}")
    entry = _entry(result.name, result.model_dir, result.config)
    report = ModelReport(result.name, str(result.version), entry.backend)
    report.inputs, report.local_outputs = derived.inputs, derived.expected
    with server_for(result.model_dir.parent, live.url, log) as target:
        check_served(target, report, entry)
    for check in report.checks:
        if check.ok is False:
            raise AddModelError(f"live on {live.url}: {check.detail}")
        result.checks.append(("live", f"{live.url}: {check.detail}"))


@dataclass
class RollbackResult:
    name: str
    retired: int
    serving: int
    live: bool


def rollback_model(
    name: str, repository: Path, url: str | None = None, key_file: Path | None = None
) -> RollbackResult:
    """The latest version moves to `<model>/retired/` (kept, never reused); the one before
    serves again. With a server, it is loaded again, so the switch needs no restart."""
    model_dir = repository / name
    if not (model_dir / "config.pbtxt").is_file():
        raise AddModelError(f"no model '{name}' in {repository}")
    served = served_numbers(model_dir)
    if len(served) < 2:
        raise AddModelError(
            f"'{name}' has {'only version ' + str(served[0]) if served else 'no version'}: "
            "nothing to roll back to"
        )
    latest, previous = served[-1], served[-2]
    live = LiveServer(url, key_file) if url else None
    try:
        if live is not None and not live.knows(name):
            raise AddModelError(
                f"the server at {live.url} has no model '{name}': does it read {repository}?"
            )
        (model_dir / RETIRED).mkdir(exist_ok=True)
        os.rename(model_dir / str(latest), model_dir / RETIRED / str(latest))
        if live is not None:
            try:
                live.load(name)
            except AddModelError:
                os.rename(model_dir / RETIRED / str(latest), model_dir / str(latest))
                with contextlib.suppress(AddModelError):
                    live.load(name)
                raise
    finally:
        if live is not None:
            live.close()
    return RollbackResult(name, latest, previous, live is not None)


def unload_model(name: str, url: str, key_file: Path | None = None) -> None:
    with LiveServer(url, key_file) as live:
        if not live.knows(name):
            raise AddModelError(f"the server at {live.url} has no model '{name}'")
        live.unload(name)


def load_model(name: str, url: str, key_file: Path | None = None) -> list[str]:
    with LiveServer(url, key_file) as live:
        if not live.knows(name):
            raise AddModelError(f"the server at {live.url} has no model '{name}' in its repository")
        live.load(name)
        return live.ready_versions(name)
