"""`maas validate`: configs against artifacts, served requests against a real Triton, and the
framework versions of NVIDIA's 24.10 image (isolated virtualenvs, cached under ~/.cache/maas)."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from maas.paths import PROJECT_ROOT, version_dirs
from maas.validate.static import check_ensemble, check_labels, discover
from maas_backends.common import BackendError
from tests.broken_exports import export_module_wrapper
from tests.cli_calls import maas
from tests.fixture_models import build_repository, write_config
from tests.npc_fixtures import load_export


def rows(output: str) -> dict[str, list[str]]:
    """The validate tables as {'model version': [check lines]} (Rich box rows, folded)."""
    tables: dict[str, list[str]] = {}
    current = None
    for line in output.splitlines():
        if " version " in line and not line.startswith(("│", "┌", "└", "├")):
            current = line.strip()
            tables[current] = []
        elif current and line.startswith("│"):
            cells = [c.strip() for c in line.strip("│").split("│")]
            if cells[0]:
                tables[current].append(" ".join(cells))
            elif tables[current]:
                tables[current][-1] += " " + cells[-1]
    return tables


def committed_mnist(repository: Path) -> None:
    """mnist's committed files only: a checkout that has built mnist also holds versions."""
    (repository / "mnist").mkdir(parents=True)
    for name in ("config.pbtxt", "labels.txt"):
        shutil.copy(PROJECT_ROOT / "model_repository" / "mnist" / name, repository / "mnist")


def check_line(output: str, table: str, check: str) -> str:
    found = rows(output)
    title = next((t for t in found if t.startswith(table)), None)
    assert title is not None, f"no table {table!r} in:\n{output}"
    line = next((ln for ln in found[title] if ln.startswith(check)), None)
    assert line is not None, f"no check {check!r} in table {title!r}:\n{output}"
    return line


# --- the checks that need no server ---------------------------------------------------------


def test_ensemble_wiring_problems_are_named(tmp_path):
    repository = tmp_path / "repo"
    shutil.copytree(
        PROJECT_ROOT / "model_repository",
        repository,
        ignore=shutil.ignore_patterns("[0-9]*", "README.md"),
    )
    models = {e.name: e for e in discover(repository)}
    assert check_ensemble(models["npc_dialogue"], models) == []

    text = (repository / "npc_dialogue" / "config.pbtxt").read_text()
    broken = text.replace('key: "OUTPUT__0" value: "SCORE"', 'key: "OUTPUT__1" value: "SCORE"')
    broken = broken.replace('key: "query_ids" value: "query_ids"', 'key: "query_ids" value: "ids"')
    (repository / "npc_dialogue" / "config.pbtxt").write_text(broken)
    models = {e.name: e for e in discover(repository)}
    problems = " | ".join(check_ensemble(models["npc_dialogue"], models))
    assert "the model has no output 'OUTPUT__1'" in problems
    assert "reads 'ids', which no ensemble input or earlier step provides" in problems
    assert "ensemble output 'SCORE' is produced by no step" in problems


def test_label_file_must_have_one_line_per_class(tmp_path):
    repository = tmp_path / "repo"
    shutil.copytree(PROJECT_ROOT / "model_repository" / "mnist", repository / "mnist")
    (entry,) = discover(repository)
    assert check_labels(entry) == []
    (repository / "mnist" / "labels.txt").write_text("0\n1\n2\n")
    (entry,) = discover(repository)
    assert check_labels(entry) == ["output 'PROBABILITIES': labels.txt has 3 labels for 10 classes"]


def test_served_versions_follow_the_version_policy(tmp_path):
    repository = tmp_path / "repo"
    committed_mnist(repository)
    for version in ("1", "2", "10"):
        (repository / "mnist" / version).mkdir()
    (entry,) = discover(repository)  # latest { num_versions: 2 }
    assert [v.name for v in entry.served_versions()] == ["2", "10"]


def test_savedmodel_outputs_must_match_dims_exactly_as_the_native_backend_asks(tmp_path):
    """The native backend compares output dims exactly (inputs allow the model's wildcards):
    a config that says [-1] for an output the SavedModel fixes at 2 does not load there."""
    from maas.model_config import read_config
    from maas_backends.common import ModelSpec
    from maas_backends.savedmodel import SavedModelRunner

    repository = build_repository(tmp_path / "repo", ("tf_two_inputs",))
    config_path = repository / "tf_two_inputs" / "config.pbtxt"
    loose = config_path.read_text().replace(
        'name: "weighted" data_type: TYPE_FP32 dims: [ 2 ]',
        'name: "weighted" data_type: TYPE_FP32 dims: [ -1 ]',
    )
    config_path.write_text(loose)
    spec = ModelSpec.from_config(read_config(config_path))
    with pytest.raises(BackendError, match=r"tensor 'weighted': the model expects 2 dimensions"):
        SavedModelRunner(repository / "tf_two_inputs" / "1" / "model.savedmodel", spec)


# --- the broken export: caught by the build and by validate --------------------------------


@pytest.fixture(scope="module")
def mnist_recipe():
    from maas import recipes

    return recipes.load("mnist")


def test_mnist_build_refuses_an_export_the_gpu_server_cannot_run(
    mnist_recipe, tmp_path, monkeypatch
):
    from maas.buildkit import BuildError

    repository = tmp_path / "repo"
    committed_mnist(repository)
    monkeypatch.setattr(mnist_recipe, "export_savedmodel", export_module_wrapper)
    monkeypatch.setattr(mnist_recipe, "QUICK", {**mnist_recipe.QUICK, "train_limit": 512})
    with pytest.raises(BuildError, match="Could not find variable") as raised:
        mnist_recipe.build(repository, quick=True)
    assert "the way Triton's TensorFlow backend runs it" in str(raised.value)
    assert version_dirs(repository / "mnist") == []  # nothing published
    assert not list((repository / "mnist").glob(".building-*"))


def test_validate_fails_the_old_module_wrapper_export(mnist_recipe, tmp_path):
    import keras

    repository = tmp_path / "repo"
    committed_mnist(repository)
    served, _ = mnist_recipe.make_models(keras)
    export_module_wrapper(served, repository / "mnist" / "1" / "model.savedmodel")

    result = maas("validate", "--repository", str(repository))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "1 of 1 model versions failed: mnist/1" in result.stderr
    local = check_line(result.stdout, "mnist version 1", "local run")
    assert "FAIL" in local and "Could not find variable" in local
    assert "FAIL" in check_line(result.stdout, "mnist version 1", "served")
    assert "Traceback" not in result.stderr


# --- whole repositories through the CLI -----------------------------------------------------


def test_validate_quick_built_models_with_the_ngc_runtime(quick_repository):
    repository, _ = quick_repository
    result = maas("validate", "--repository", str(repository), "--runtime", "ngc-24.10")
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    output = result.stdout
    mnist = check_line(output, "mnist version 1", "ngc-24.10 tensorflow")
    assert "ok" in mnist and "tensorflow 2.16.1" in mnist and "python 3.10" in mnist
    bert = check_line(output, "npc_bert version 1", "ngc-24.10 pytorch")
    assert "ok" in bert and "torch 2.5.0" in bert and "same outputs as local" in bert
    tokenizer = check_line(output, "npc_tokenizer version 1", "ngc-24.10 python")
    assert "compiles and imports" in tokenizer and "numpy 1.26.4" in tokenizer
    ensemble = check_line(output, "npc_dialogue", "served")
    assert "ok" in ensemble and "SCORE float32 [3, 1]" in ensemble
    encoder = check_line(output, "npc_encoder version 1", "ngc-24.10 pytorch")
    assert "ok" in encoder and "torch 2.5.0" in encoder and "same outputs as local" in encoder
    turn = check_line(output, "npc_turn version 1", "ngc-24.10 python")
    assert "compiles and imports" in turn
    # npc_turn's in-process CPU encoder: npc_encoder's embeddings, also in the image's ORT
    side = check_line(output, "npc_turn version 1", "encoder.onnx")
    assert "ok" in side and "runs as npc_encoder/1 does" in side, side
    side = check_line(output, "npc_turn version 1", "ngc-24.10 encoder.onnx")
    assert "same outputs as local" in side and "onnxruntime 1.19.2" in side, side
    assert "All 6 model versions passed (ngc-24.10)" in output


def test_a_stale_or_broken_cpu_encoder_fails_validation(quick_repository, tmp_path):
    """encoder.onnx stands in for npc_encoder on CPU servers: one from other weights (here the
    untrained base model's) or one that does not load is named, with exit code 1."""
    import shutil

    from maas.validate.pipeline import validate_repository

    repository = tmp_path / "repo"
    for model in ("npc_encoder", "npc_turn"):
        shutil.copytree(quick_repository[0] / model, repository / model)
    export = load_export()
    base = export.encoder_to_torchscript(export.make_pair_scorer(export.load_encoder()))
    side = repository / "npc_turn" / "1" / "encoder.onnx"
    export.encoder_to_onnx(base, side)
    (report,) = [r for r in validate_repository(repository, log=lambda _: None)
                 if r.model == "npc_turn"]  # fmt: skip
    (check,) = [c for c in report.checks if c.name == "encoder.onnx"]
    assert check.ok is False and "differs from npc_encoder by" in check.detail, check
    side.write_bytes(b"not onnx")
    result = maas("validate", "--repository", str(repository))
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    assert "FAIL" in check_line(result.stdout, "npc_turn version 1", "encoder.onnx")


def test_validate_fixtures_of_every_platform_with_the_ngc_runtime(backend_repository):
    result = maas("validate", "--repository", str(backend_repository), "--runtime", "ngc-24.10")
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    for model, framework in [
        ("torch_named", "pytorch"),
        ("torch_indexed", "pytorch"),
        ("tf_two_inputs", "tensorflow"),
        ("onnx_dynamic", "onnxruntime"),
    ]:
        line = check_line(result.stdout, f"{model} version 1", f"ngc-24.10 {framework}")
        assert "ok" in line and "same outputs as local" in line, line
    assert "onnxruntime 1.19.2" in check_line(
        result.stdout, "onnx_dynamic version 1", "ngc-24.10 onnxruntime"
    )


def test_validate_against_a_running_server(quick_server, quick_repository):
    repository, _ = quick_repository
    result = maas(
        "validate", "--repository", str(repository), "--url", quick_server.config.http_url
    )
    assert result.returncode == 0, result.stdout + result.stderr[-3000:]
    assert "Starting a temporary Triton" not in result.stderr
    assert "ok" in check_line(result.stdout, "npc_bert version 1", "served")


def test_validate_with_url_and_no_server_says_so_in_one_line(tmp_path):
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    repository = build_repository(tmp_path / "repo", ("onnx_dynamic",))
    result = maas("validate", "--repository", str(repository), "--url", f"127.0.0.1:{port}")
    assert result.returncode == 1
    assert f"no Triton server answers at 127.0.0.1:{port}" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr + result.stdout
    assert "onnx_dynamic version 1" not in result.stdout  # failed before the local checks


def test_validate_names_each_broken_model_and_exits_1(tmp_path):
    repository = build_repository(tmp_path / "repo", ("onnx_dynamic", "torch_indexed"))
    # onnx: a dtype the graph does not have; torch: an output dtype only a request can reveal.
    config = repository / "onnx_dynamic" / "config.pbtxt"
    config.write_text(
        config.read_text().replace('"x" data_type: TYPE_FP32', '"x" data_type: TYPE_FP64')
    )
    config = repository / "torch_indexed" / "config.pbtxt"
    config.write_text(
        config.read_text().replace(
            '"OUTPUT__1" data_type: TYPE_INT64', '"OUTPUT__1" data_type: TYPE_INT32'
        )
    )
    write_config(
        repository,
        "no_such_platform",
        textwrap.dedent("""
        name: "no_such_platform"
        backend: "nonexistent"
        max_batch_size: 0
        input [ { name: "x" data_type: TYPE_FP32 dims: [ 1 ] } ]
        output [ { name: "y" data_type: TYPE_FP32 dims: [ 1 ] } ]
    """),
    )
    result = maas("validate", "--repository", str(repository))
    assert result.returncode == 1
    onnx = check_line(result.stdout, "onnx_dynamic version 1", "artifact")
    assert "FAIL" in onnx and "TYPE_FP64 for input 'x', model provides tensor(float)" in onnx
    torch_run = check_line(result.stdout, "torch_indexed version 1", "local run")
    assert "FAIL" in torch_run and "OUTPUT__1" in torch_run and "TYPE_INT32" in torch_run
    unknown = check_line(result.stdout, "no_such_platform version 1", "served")
    assert "FAIL" in unknown and "not ready" in unknown
    assert "3 of 3 model versions failed" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr
