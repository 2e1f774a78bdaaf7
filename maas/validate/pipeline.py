"""Validate a repository: per model version, config against artifact, an in-process run, a
served request, and optionally the same inputs through NGC 24.10's framework versions.

Returns data (reports of checks); the CLI prints it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from maas.server.supervisor import clean_reason
from maas.validate import ngc
from maas.validate import side_encoder as side
from maas.validate.samples import sample_inputs
from maas.validate.static import ModelEntry, check_ensemble, check_labels, discover
from maas_backends.common import (
    BackendError,
    ModelSpec,
    check_output,
    execute_batched,
    framework_message,
)

RUNTIMES = ("local", ngc.RUNTIME)
ATOL = RTOL = 1e-4  # same inputs, same artifact: framework builds may differ in the last bits
FRAMEWORKS = ("pytorch", "tensorflow", "onnxruntime")

Log = Callable[[str], None]


@dataclass
class Check:
    name: str
    ok: bool | None  # None: not applicable or skipped, with the reason in detail
    detail: str = ""


@dataclass
class ModelReport:
    model: str
    version: str
    backend: str
    checks: list[Check] = field(default_factory=list)
    local_outputs: dict[str, np.ndarray] | None = None
    inputs: dict[str, np.ndarray] | None = None
    # npc_turn's encoder.onnx: (path, config, inputs, local outputs) for the NGC check
    side_encoder: tuple[Path, dict, dict[str, np.ndarray], dict[str, np.ndarray]] | None = None

    @property
    def ok(self) -> bool:
        return all(c.ok is not False for c in self.checks)

    def add(self, name: str, ok: bool | None, detail: str = "") -> None:
        self.checks.append(Check(name, ok, detail))


def validate_repository(
    repository: Path, *, runtime: str = "local", url: str | None = None, log: Log = print
) -> list[ModelReport]:
    if runtime not in RUNTIMES:
        raise ValueError(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
    if url is not None:
        from maas_client.status import models_ready

        models_ready(url, ())  # nobody at --url: say so before minutes of local checks
    entries = discover(repository)
    models = {e.name: e for e in entries}
    reports: list[ModelReport] = []
    for entry in entries:
        reports += _static_and_local(entry, models)
    with server_for(repository, url, log) as target:
        for report in reports:
            if report.inputs is not None:
                check_served(target, report, models[report.model])
    if runtime == ngc.RUNTIME:
        for report in reports:
            if report.inputs is not None or report.backend == "python":
                check_ngc(report, models[report.model], log)
            if report.side_encoder is not None:
                check_ngc_side_encoder(report, log)
    return reports


def _static_and_local(entry: ModelEntry, models: dict[str, ModelEntry]) -> list[ModelReport]:
    if entry.error:
        report = ModelReport(entry.name, "-", entry.backend or "?")
        report.add("config", False, entry.error)
        return [report]
    versions = entry.served_versions()
    if entry.backend == "ensemble":
        report = ModelReport(entry.name, "-", "ensemble")
        problems = check_ensemble(entry, models)
        report.add("config", not problems, "; ".join(problems) or _contract(entry.spec))
        if not problems:
            report.inputs = sample_inputs(entry.spec)
        return [report]
    if not versions:
        report = ModelReport(entry.name, "-", entry.backend)
        report.add("config", True, _contract(entry.spec))
        report.add("artifact", False, "no version folder yet (maas build, or add one)")
        return [report]
    reports = []
    for version_dir in versions:
        report = ModelReport(entry.name, version_dir.name, entry.backend)
        reports.append(report)
        labels = check_labels(entry)
        report.add("config", not labels, "; ".join(labels) or _contract(entry.spec))
        artifact = entry.artifact(version_dir)
        if not artifact.exists():
            report.add("artifact", False, f"{artifact.name} missing in {version_dir}")
            continue
        if entry.backend == "python":
            problem = _python_source_problem(artifact)
            report.add("artifact", problem is None, problem or f"{artifact.name} compiles")
            if problem is None:
                report.inputs = sample_inputs(entry.spec)
            if (version_dir / side.FILENAME).exists():
                _side_encoder(report, version_dir, entry, models)
            continue
        if entry.backend not in FRAMEWORKS:
            report.add("artifact", None, f"backend '{entry.backend}' is not checked in-process")
            report.inputs = sample_inputs(entry.spec)
            continue
        _local(report, entry.spec, artifact)
    return reports


def _side_encoder(
    report: ModelReport, version_dir: Path, entry: ModelEntry, models: dict[str, ModelEntry]
) -> None:
    """npc_turn's in-process encoder against the npc_encoder version it stands in for."""
    path = version_dir / side.FILENAME
    encoder_dir = side.encoder_version(version_dir, entry.folder.parent)
    encoder = models.get(encoder_dir.parent.name) if encoder_dir else None
    if encoder_dir is None or encoder is None or not (encoder_dir / "model.pt").exists():
        report.add(side.FILENAME, False, "encoder.json names no built npc_encoder version")
        return
    inputs = side.token_ids()
    try:
        config = side.onnx_config(encoder.config)
        want = _run(load_runner("pytorch", encoder_dir / "model.pt", encoder.spec), encoder.spec,
                    inputs)  # fmt: skip
        spec = ModelSpec.from_config(config)
        have = _run(load_runner("onnxruntime", path, spec), spec, inputs)
    except Exception as error:  # the framework's own words are the useful part
        report.add(side.FILENAME, False, framework_message(error))
        return
    kind = side.precision(path)
    problem = side.compare(have["EMBEDDING__0"], want["EMBEDDING__0"], kind)
    report.add(side.FILENAME, problem is None,
               problem or f"{kind}, runs as npc_encoder/{encoder_dir.name} does")  # fmt: skip
    report.side_encoder = (path, config, inputs, have)


def _run(runner, spec: ModelSpec, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    (result,) = execute_batched(spec, [inputs], runner.run)
    if isinstance(result, BackendError):
        raise result
    return result


def _contract(spec: ModelSpec) -> str:
    def side(tensors) -> str:
        return ", ".join(f"{t.name} {t.triton_type[5:]} {list(t.dims)}" for t in tensors)

    batch = f"batch<={spec.max_batch_size}" if spec.batching else "no batching"
    return f"{side(spec.inputs)} -> {side(spec.outputs)}; {batch}"


def _python_source_problem(path: Path) -> str | None:
    try:
        compile(path.read_text(encoding="utf-8"), str(path), "exec")
    except (SyntaxError, UnicodeDecodeError) as error:
        return f"{path.name}: {error}"
    return None


def load_runner(backend: str, artifact: Path, spec: ModelSpec):
    """The runner our Python-based backend uses; loading performs the native config checks."""
    if backend == "pytorch":
        from maas_backends.torchscript import TorchScriptRunner

        return TorchScriptRunner(artifact, spec)
    if backend == "tensorflow":
        from maas_backends.savedmodel import SavedModelRunner

        return SavedModelRunner(artifact, spec)
    from maas_backends.onnx import OnnxRunner

    return OnnxRunner(artifact, spec)


def _local(report: ModelReport, spec: ModelSpec, artifact: Path) -> None:
    try:
        runner = load_runner(report.backend, artifact, spec)
    except BackendError as error:
        report.add("artifact", False, str(error))
        return
    except Exception as error:  # the framework's own words are the useful part
        report.add("artifact", False, framework_message(error))
        return
    report.add("artifact", True, f"{artifact.name} matches the config")
    report.inputs = sample_inputs(spec)
    (result,) = execute_batched(spec, [report.inputs], runner.run)
    if isinstance(result, BackendError):
        report.add("local run", False, str(result))
        return
    (again,) = execute_batched(spec, [report.inputs], runner.run)
    if isinstance(again, BackendError) or differences(again, result, "the first run"):
        # Sampling, dropout left on, ...: only dtypes and shapes can be compared elsewhere.
        report.add("local run", True, f"{_shapes(result)}; outputs vary between runs")
        return
    report.local_outputs = result
    report.add("local run", True, _shapes(result))


def _shapes(outputs: dict[str, np.ndarray]) -> str:
    return ", ".join(f"{name} {value.dtype} {list(value.shape)}" for name, value in outputs.items())


@dataclass
class Target:
    """The server a validation talks to, and why models that did not load failed."""

    client: object
    load_reasons: dict[str, str] = field(default_factory=dict)


@contextmanager
def server_for(repository: Path, url: str | None, log: Log) -> Iterator[Target]:
    """A tritonclient to the given server, or to a temporary one on free ports that keeps
    serving even when some models fail to load (their reasons are reported per model)."""
    import tritonclient.http as httpclient

    if url is not None:
        from maas_client.urls import normalize_url

        client = httpclient.InferenceServerClient(normalize_url(url), network_timeout=120)
        try:
            yield Target(client)
        finally:
            client.close()
        return
    from maas.server import ServerConfig, TritonServer

    config = ServerConfig.on_free_ports(repository, require_all_models=False)
    log(f"Starting a temporary Triton on {config.http_url} for {repository}")
    with TritonServer(config) as server:
        client = httpclient.InferenceServerClient(config.http_url, network_timeout=120)
        try:
            yield Target(client, {m.name: m.reason for m in server.failed_models()})
        finally:
            client.close()


def check_served(target: Target, report: ModelReport, entry: ModelEntry) -> None:
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException, np_to_triton_dtype

    client = target.client

    version = "" if report.version == "-" else report.version
    try:
        ready = client.is_model_ready(report.model, version)
    except InferenceServerException as error:
        report.add("served", False, f"the server did not answer: {error.message()}")
        return
    if not ready:
        reason = clean_reason(target.load_reasons.get(report.model, ""))
        report.add("served", False, f"not ready on the server. {reason}".strip())
        return
    assert report.inputs is not None
    tensors = []
    for name, value in report.inputs.items():
        tensor = httpclient.InferInput(name, list(value.shape), np_to_triton_dtype(value.dtype))
        tensor.set_data_from_numpy(value)
        tensors.append(tensor)
    try:
        result = client.infer(report.model, tensors, model_version=version)
    except InferenceServerException as error:
        report.add("served", False, f"request failed: {error.message()}")
        return
    spec = entry.spec
    batch = len(next(iter(report.inputs.values()))) if spec.batching else None
    served: dict[str, np.ndarray] = {}
    problems = []
    for tensor in spec.outputs:
        value = result.as_numpy(tensor.name)
        if value is None:
            problems.append(f"no output '{tensor.name}'")
            continue
        served[tensor.name] = value
        try:
            check_output(tensor, value, batch, report.model)
        except BackendError as error:
            problems.append(str(error))
    if not problems and report.local_outputs is not None:
        problems += differences(served, report.local_outputs, "in-process")
    report.add("served", not problems, "; ".join(problems) or f"HTTP: {_shapes(served)}")


def differences(
    got: dict[str, np.ndarray], expected: dict[str, np.ndarray], label: str
) -> list[str]:
    problems = []
    for name, want in expected.items():
        have = got.get(name)
        if have is None:
            problems.append(f"no output '{name}'")
            continue
        if have.shape != want.shape:
            problems.append(f"'{name}' has shape {list(have.shape)}, {label} {list(want.shape)}")
            continue
        if want.dtype.kind in "OSU":
            if not np.array_equal(_as_bytes(have), _as_bytes(want)):
                problems.append(f"'{name}' differs from {label}")
            continue
        if not np.allclose(have, want, atol=ATOL, rtol=RTOL, equal_nan=True):
            gap = float(np.nanmax(np.abs(have.astype(np.float64) - want.astype(np.float64))))
            problems.append(f"'{name}' differs from {label} by up to {gap:.3g}")
    return problems


def _as_bytes(array: np.ndarray) -> np.ndarray:
    """Strings as Triton sends them (UTF-8 bytes): frameworks hand back str or bytes."""
    encode = np.vectorize(lambda v: v.encode("utf-8") if isinstance(v, str) else bytes(v))
    return encode(array.astype(object)).astype(object) if array.size else array


def check_ngc(report: ModelReport, entry: ModelEntry, log: Log) -> None:
    framework = report.backend
    name = f"{ngc.RUNTIME} {framework}"
    if framework not in ngc.FRAMEWORKS:
        report.add(name, None, "nothing to run: Triton core runs it")
        return
    artifact = entry.artifact(entry.folder / report.version)
    try:
        result = ngc.run_probe(framework, artifact, entry.config, report.inputs, log=log)
    except ngc.RuntimeSetupError as error:
        report.add(name, False, str(error))
        return
    versions = ", ".join(f"{k} {v}" for k, v in result.versions.items())
    image_python = result.versions.get("python", "").startswith(ngc.IMAGE_PYTHON + ".")
    if framework == "python" and result.versions and not image_python:
        report.add(
            name,
            None,
            f"not proven: no Python {ngc.IMAGE_PYTHON} on this machine (MAAS_NGC_PYTHON names "
            f"one) [{versions}]",
        )
        return
    if not result.ok:
        report.add(name, False, f"{result.error} [{versions}]" if versions else result.error)
        return
    problems = []
    if report.local_outputs is not None:
        problems = differences(result.outputs, report.local_outputs, "the local runtime")
    if framework == "python":
        done = "compiles and imports"
    elif report.local_outputs is None:
        done = "runs (outputs vary between runs: not compared)"
    else:
        done = "same outputs as local"
    if not image_python:
        done += f" (not the image's Python {ngc.IMAGE_PYTHON})"
    report.add(name, not problems, "; ".join(problems) or f"{done} [{versions}]")


def check_ngc_side_encoder(report: ModelReport, log: Log) -> None:
    """encoder.onnx in the image's onnxruntime: the same embeddings as the local one."""
    assert report.side_encoder is not None
    path, config, inputs, local = report.side_encoder
    name = f"{ngc.RUNTIME} {side.FILENAME}"
    try:
        result = ngc.run_probe("onnxruntime", path, config, inputs, log=log)
    except ngc.RuntimeSetupError as error:
        report.add(name, False, str(error))
        return
    versions = ", ".join(f"{k} {v}" for k, v in result.versions.items())
    if not result.ok:
        report.add(name, False, f"{result.error} [{versions}]")
        return
    kind = side.precision(path)
    if kind == "int8":  # int8 kernels round differently between onnxruntime versions
        problem = side.compare(result.outputs["EMBEDDING__0"], local["EMBEDDING__0"], kind)
        problems = [problem] if problem else []
    else:
        problems = differences(result.outputs, local, "the local onnxruntime")
    report.add(name, not problems, "; ".join(problems) or f"same outputs as local [{versions}]")
