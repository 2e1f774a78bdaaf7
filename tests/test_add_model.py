"""`maas add-model` and its siblings against real Tritons: each format end to end with output
parity over HTTP and gRPC, mixed dtypes, a second version, refused artifacts that leave the
repository as it was, and hot loads and a rollback under load with no failed request."""

from __future__ import annotations

import json
import shutil
import threading
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient

from maas.add_model.declarations import AddModelError
from maas.add_model.install import AddRequest, add_model
from maas.model_config import read_config
from maas.server import TritonServer
from tests import add_model_artifacts as artifacts
from tests.cli_calls import maas
from tests.conftest import server_config
from tests.triton_calls import infer

ADDED = {
    # name: (artifact builder output, extra CLI arguments)
    "mixed_onnx": ("mixed.onnx", []),
    # The example fixes dtypes and dims; ids and mask get a variable length on top of it.
    "named_torch": (
        "named.pt",
        ["--example", "{dir}/named.npz", "--input", "ids::-1", "--input", "mask::-1"],
    ),
    "positional_torch": (
        "positional.pt",
        ["--input", "INPUT__0:FP32:4", "--input", "INPUT__1:INT32:4"],
    ),
    "strings_tf": ("strings", []),
}


def snapshot(repository: Path) -> list[tuple[str, int]]:
    return sorted(
        (str(p.relative_to(repository)), p.stat().st_size if p.is_file() else -1)
        for p in repository.rglob("*")
    )


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("artifacts")
    artifacts.onnx_mixed(folder / "mixed.onnx")
    artifacts.onnx_mixed(folder / "mixed_v2.onnx", scale=2.0)
    artifacts.onnx_mixed(folder / "fixed_batch.onnx", batch=1)
    artifacts.onnx_other_contract(folder / "wider.onnx")
    artifacts.torch_named(folder / "named.pt")
    artifacts.torch_named_example(folder / "named.npz")
    artifacts.torch_positional(folder / "positional.pt")
    artifacts.savedmodel_strings(folder / "strings")
    artifacts.savedmodel_strings(folder / "unsigned", with_signature=False)
    artifacts.torch_unbatchable(folder)
    np.save(folder / "plain.npy", np.zeros((2, 3), np.float32))
    data = (folder / "mixed.onnx").read_bytes()
    (folder / "truncated.onnx").write_bytes(data[: len(data) // 2])
    shutil.copy(folder / "mixed.onnx", folder / "really_onnx.pt")
    return folder


@pytest.fixture(scope="module")
def added(made, quick_repository, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A repository with the game's quick-built models, then each format added by the CLI."""
    repository = tmp_path_factory.mktemp("added_repo")
    for model in ("mnist", "npc_bert", "npc_tokenizer", "npc_dialogue"):
        shutil.copytree(quick_repository[0] / model, repository / model)
    outputs = {}
    for name, (artifact, extra) in ADDED.items():
        arguments = [a.format(dir=made) for a in extra]
        result = maas(
            "add-model", str(made / artifact), "--name", name, "--repository", str(repository),
            "--runtime", "local", *arguments,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
        outputs[name] = result.stdout
    return repository, outputs


@pytest.fixture(scope="module")
def server(added, tmp_path_factory):
    config = server_config(added[0], tmp_path_factory.mktemp("add_logs"))
    with TritonServer(config) as running:
        yield running


def reference(name: str, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """What each artifact computes, written again in numpy."""
    if name == "mixed_onnx":
        return {
            "y": inputs["x"] @ artifacts.ONNX_W,
            "total": inputs["ids"].sum(axis=1, keepdims=True),
            "negated": ~inputs["flag"],
            "echo": inputs["words"],
        }
    if name == "named_torch":
        mask = inputs["mask"]
        kept = inputs["ids"] * mask
        return {
            "OUTPUT__0": kept.sum(axis=1, keepdims=True).astype(np.float32) * inputs["weight"],
            "OUTPUT__1": (mask.sum(axis=1, keepdims=True) + inputs["offset"]).astype(np.int32),
            "OUTPUT__2": mask.any(axis=1, keepdims=True),
        }
    if name == "positional_torch":
        x, y = inputs["INPUT__0"], inputs["INPUT__1"]
        return {
            "OUTPUT__0": (x * 2.0 + y).astype(np.float32),
            "OUTPUT__1": (y * 3).astype(np.int64),
        }
    words = inputs["words"]
    return {
        "shout": np.array([w.upper() for w in words], dtype=object),
        "total": inputs["x"].sum(axis=1, keepdims=True),
        "doubled": inputs["n"] * 2,
        "positive": inputs["x"] > 0.5,
    }


def request(name: str, rows: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    if name == "mixed_onnx":
        return {
            "x": rng.random((rows, 3)).astype(np.float32),
            "ids": rng.integers(0, 100, (rows, 5)).astype(np.int64),
            "flag": rng.integers(0, 2, (rows, 1)).astype(bool),
            "words": np.array([[b"north", "d\u00e9j\u00e0".encode()]] * rows, dtype=object),
        }
    if name == "named_torch":
        return {
            "ids": rng.integers(0, 50, (rows, 7)).astype(np.int64),
            "mask": rng.integers(0, 2, (rows, 7)).astype(bool),
            "weight": rng.random((rows, 1)).astype(np.float32),
            "offset": rng.integers(0, 9, (rows, 1)).astype(np.int32),
        }
    if name == "positional_torch":
        return {
            "INPUT__0": rng.random((rows, 4)).astype(np.float32),
            "INPUT__1": rng.integers(-5, 5, (rows, 4)).astype(np.int32),
        }
    return {
        "words": np.array([b"hello", b"room?", b"x"][:rows], dtype=object),
        "x": rng.random((rows, 3)).astype(np.float32),
        "n": rng.integers(0, 100, rows).astype(np.int32),
    }


@pytest.mark.parametrize("protocol", ["http", "grpc"])
@pytest.mark.parametrize("name", list(ADDED))
def test_each_format_serves_what_the_artifact_computes(server, name, protocol):
    if protocol == "http":
        client = httpclient.InferenceServerClient(server.config.http_url)
    else:
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.config.grpc_port}")
    try:
        inputs = request(name, 3, np.random.default_rng(len(name)))
        served = infer(client, name, inputs)
    finally:
        client.close()
    expected = reference(name, inputs)
    assert set(served) == set(expected)
    for key, want in expected.items():
        have = served[key]
        assert have.shape == want.shape, key
        if want.dtype == object:
            assert have.tolist() == want.tolist(), key
        else:
            assert have.dtype == want.dtype, key
            np.testing.assert_allclose(have, want, rtol=1e-5, atol=1e-5, err_msg=key)


def test_written_config_card_and_example_request(added, made):
    repository, outputs = added
    config = read_config(repository / "mixed_onnx" / "config.pbtxt")
    assert config["platform"] == "onnxruntime_onnx"
    # Measured, never below the 3 generated rows it was checked with; the printed why says so.
    assert config["max_batch_size"] >= 3 and "dynamic_batching" in config
    assert "measured in-process" in outputs["mixed_onnx"].replace("\n", " ")
    assert [(t["name"], t["data_type"], t["dims"]) for t in config["input"]] == [
        ("x", "TYPE_FP32", ["3"]),
        ("ids", "TYPE_INT64", ["-1"]),
        ("flag", "TYPE_BOOL", ["1"]),
        ("words", "TYPE_STRING", ["2"]),
    ]
    card = json.loads((repository / "mixed_onnx" / "1" / "model_card.json").read_text())
    import hashlib

    assert card["sha256"] == hashlib.sha256((made / "mixed.onnx").read_bytes()).hexdigest()
    assert card["source"] == str((made / "mixed.onnx").resolve())
    assert [t["name"] for t in card["outputs"]] == ["y", "total", "negated", "echo"]
    assert "served" in card["validated"]
    torch_config = read_config(repository / "named_torch" / "config.pbtxt")
    assert [t["name"] for t in torch_config["input"]] == ["ids", "mask", "weight", "offset"]
    # TorchScript batch axis found by running the example at two batch sizes; the string-only
    # batch axis of the SavedModel cannot be batched by Triton, so it is served whole.
    assert torch_config["max_batch_size"] >= 3  # the example's 3 rows
    strings = read_config(repository / "strings_tf" / "config.pbtxt")
    assert strings.get("max_batch_size", 0) == 0
    assert "max_batch_size 0 after all" in outputs["strings_tf"].replace("\n", " ")
    # What was printed is the config that was written.
    assert 'name: "mixed_onnx"' in outputs["mixed_onnx"]


@pytest.mark.parametrize("name", ["mixed_onnx", "strings_tf"])
def test_printed_examples_call_the_model(added, server, name):
    """Someone who never read Triton's docs copies the printed Python and curl lines."""
    printed = added[1][name]
    python = printed.split("Call it from Python")[1].split("or with curl:")[0]
    code = python.split("\n", 1)[1].replace("127.0.0.1:8000", server.config.http_url)
    scope: dict = {}
    exec(compile(code, "printed-example", "exec"), scope)  # the printed example, as a user runs it
    assert set(scope["outputs"]) == {t["name"] for t in read_config(
        added[0] / name / "config.pbtxt")["output"]}  # fmt: skip
    curl = printed.split("or with curl:")[1]
    body_text = curl.split("-d ")[1].strip()
    if body_text.startswith("@"):
        body = Path(body_text[1:].split()[0]).read_bytes()
    else:
        body = body_text.strip("'").encode()
    answer = urllib.request.urlopen(
        f"http://{server.config.http_url}/v2/models/{name}/infer", data=body, timeout=30
    )
    assert answer.status == 200
    assert {o["name"] for o in json.loads(answer.read())["outputs"]} == set(scope["outputs"])


def _request(repository: Path, artifact: Path, name: str, **settings) -> AddRequest:
    return AddRequest(artifact=artifact, name=name, repository=repository, runtime="local",
                      **settings)  # fmt: skip


@pytest.mark.parametrize(
    ("artifact", "name", "settings", "said"),
    [
        ("truncated.onnx", "cut", {}, "not a valid ONNX model"),
        ("really_onnx.pt", "ext", {}, "not a TorchScript archive"),
        ("unsigned", "unsigned", {}, "no signature 'serving_default'"),
        ("fixed_batch.onnx", "fixed", {}, "--max-batch-size 0"),
        ("named.pt", "undeclared", {}, "pass --input ids:DTYPE:DIMS"),
        ("mixed.onnx", "mixed_onnx", {"version": 1}, "versions are never overwritten"),
        ("wider.onnx", "mixed_onnx", {}, "input 'x': FP32 [3] -> FP32 [4]"),
        ("mixed.onnx", "mixed_onnx", {"max_batch_size": 8}, "which all its versions share"),
        ("mixed.onnx", "bad/name", {}, "--name"),
        ("gram.pt", "gram", {"inputs": ["x:FP32:3"]}, "does not follow the batch"),
        ("centre.pt", "centre", {"inputs": ["x:FP32:3"]}, "the model mixes rows"),
        ("positional.pt", "npy", {"example": "plain.npy"}, "one array (.npy)"),
    ],
)
def test_refused_with_the_repository_unchanged(added, made, artifact, name, settings, said):
    repository = added[0]
    before = snapshot(repository)
    if "example" in settings:
        settings = {**settings, "example": made / settings["example"]}
    with pytest.raises(AddModelError) as refused:
        add_model(_request(repository, made / artifact, name, **settings), log=lambda _: None)
    assert said in str(refused.value)
    assert snapshot(repository) == before


def test_refusal_is_one_line_and_exit_code_1(added, made):
    result = maas("add-model", str(made / "really_onnx.pt"), "--name", "x",
                  "--repository", str(added[0]), "--runtime", "local")  # fmt: skip
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "not a TorchScript archive" in result.stderr
    assert "protobuf (ONNX's format)" in result.stderr  # the hint at what it really is


def test_ngc_runtime_proves_it_with_the_images_onnxruntime(made, tmp_path):
    request = AddRequest(
        artifact=made / "mixed.onnx", name="m", repository=tmp_path, runtime="ngc-24.10",
        dry_run=True, max_batch_size=2,  # smaller than the generated batches: they shrink to it
    )  # fmt: skip
    result = add_model(request, log=lambda _: None)
    checks = dict(result.checks)
    assert "same outputs as local" in checks["ngc-24.10 onnxruntime"]
    assert "onnxruntime 1.19.2" in checks["ngc-24.10 onnxruntime"]
    assert not any(tmp_path.iterdir())  # a dry run writes nothing
    assert result.config["max_batch_size"] == 2


def _five_rows(folder: Path) -> Path:
    example = folder / "five.npz"
    rng = np.random.default_rng(3)
    np.savez(example, INPUT__0=rng.random((5, 4)).astype(np.float32),
             INPUT__1=rng.integers(0, 9, (5, 4)).astype(np.int32))  # fmt: skip
    return example


def test_a_model_serves_its_own_five_row_example(made, tmp_path):
    """Triton's auto-complete minimum (4) once made the served model refuse this example."""
    repository = tmp_path / "repo"
    repository.mkdir()
    example = _five_rows(tmp_path)
    request = _request(repository, made / "positional.pt", "p", example=example)
    result = add_model(request, log=lambda _: None)
    assert result.config["max_batch_size"] >= 5
    assert all(len(v) == 5 for v in result.inputs.values())  # validated with every row
    assert any("measured in-process" in note for note in result.notes)
    with TritonServer(server_config(repository, tmp_path / "logs")) as running:
        client = httpclient.InferenceServerClient(f"127.0.0.1:{running.config.http_port}")
        try:
            inputs = dict(np.load(example))
            served = infer(client, "p", inputs)
        finally:
            client.close()
    expected = reference("positional_torch", inputs)
    for key, want in expected.items():
        np.testing.assert_allclose(served[key], want, rtol=1e-6, err_msg=key)


def test_an_example_larger_than_a_given_batch_limit_is_refused(made, tmp_path):
    example = _five_rows(tmp_path)
    request = _request(tmp_path, made / "positional.pt", "p", example=example,
                       max_batch_size=4, dry_run=True)  # fmt: skip
    with pytest.raises(AddModelError) as refused:
        add_model(request, log=lambda _: None)
    assert "5 rows but max_batch_size is 4 (--max-batch-size)" in str(refused.value)


def test_the_batch_rule_stops_where_doubling_stops_paying():
    """Calls cost a fixed 2 ms, plus 1 ms a row beyond 8 rows: rows/s doubles up to 8 rows and
    falls at 16, so the rule keeps 8 (and never less than the rows it was checked with)."""
    import time

    from maas.add_model.batch_size import choose_max_batch_size

    def run(inputs):
        rows = len(inputs["x"])
        time.sleep(0.002 + 0.001 * max(0, rows - 8))

    choice = choose_max_batch_size(run, {"x": np.zeros((1, 2), np.float32)}, floor=3)
    assert choice.size == 8, choice
    assert "rows/s at 1" in choice.why
    assert choose_max_batch_size(run, {"x": np.zeros((1, 2), np.float32)}, floor=40).size == 40


class Players:
    """Closed-loop load on the game's models while the repository changes under it."""

    def __init__(self, url: str, threads: int = 3) -> None:
        self.url = url
        self.stop = threading.Event()
        self.counts = {"ok": 0, "failed": 0}
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.play, args=(i,)) for i in range(threads)]

    def play(self, index: int) -> None:
        client = httpclient.InferenceServerClient(self.url, network_timeout=120)
        rng = np.random.default_rng(index)
        try:
            while not self.stop.is_set():
                try:
                    if index % 2 == 0:
                        image = rng.random((1, 28, 28)).astype(np.float32)
                        infer(client, "mnist", {"IMAGE": image})
                    else:
                        infer(client, "npc_dialogue", {
                            "QUERY": np.array([[b"a room for the night?"]], dtype=object),
                            "CANDIDATE": np.array([[b"rooms are two silver"]], dtype=object),
                        })  # fmt: skip
                    outcome, detail = "ok", ""
                except Exception as error:
                    outcome, detail = "failed", str(error)
                with self.lock:
                    self.counts[outcome] += 1
                    if detail:
                        self.failures.append(detail)
        finally:
            client.close()

    def __enter__(self) -> Players:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join()


def test_hot_load_new_version_and_rollback_under_load(server, added, made, quick_repository):
    repository = added[0]
    url = server.config.http_url
    client = httpclient.InferenceServerClient(url)
    mnist_artifact = quick_repository[0] / "mnist" / "1" / "model.savedmodel"
    try:
        with Players(url) as players:
            new = add_model(_request(repository, made / "mixed.onnx", "live_new", url=url),
                            log=lambda _: None)  # fmt: skip
            assert new.live and client.is_model_ready("live_new", "1")
            version = add_model(_request(repository, mnist_artifact, "mnist", url=url),
                                log=lambda _: None)  # fmt: skip
            assert version.version == 2 and client.is_model_ready("mnist", "2")
            answer = client.infer("mnist", [_image_input()])
            assert answer.get_response()["model_version"] == "2"
            rolled = maas("rollback-model", "mnist", "--repository", str(repository), "--url", url)
            assert rolled.returncode == 0, rolled.stderr
            assert "version 2 retired, version 1 serves" in rolled.stdout
            answer = client.infer("mnist", [_image_input()])
            assert answer.get_response()["model_version"] == "1"
            again = add_model(_request(repository, made / "mixed_v2.onnx", "live_new", url=url),
                              log=lambda _: None)  # fmt: skip
            assert again.version == 2
        print(f"hot load, new version and rollback under load: {players.counts}")
        assert players.counts["failed"] == 0, players.failures[:3]
        assert players.counts["ok"] >= 20, players.counts
    finally:
        client.close()
    assert (repository / "mnist" / "retired" / "2" / "model.savedmodel").is_dir()
    # Version numbers are never reused: the next mnist version is 3, not 2 again.
    dry = add_model(_request(repository, mnist_artifact, "mnist", dry_run=True), log=print)
    assert dry.version == 3


def _image_input():
    tensor = httpclient.InferInput("IMAGE", [1, 28, 28], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 28, 28), np.float32))
    return tensor


def test_unload_and_load_commands(server, added):
    url = server.config.http_url
    client = httpclient.InferenceServerClient(url)
    try:
        result = maas("unload-model", "positional_torch", "--url", url)
        assert result.returncode == 0, result.stderr
        assert not client.is_model_ready("positional_torch")
        result = maas("load-model", "positional_torch", "--url", url)
        assert result.returncode == 0, result.stderr
        assert "ready, version(s) 1" in result.stdout
        assert client.is_model_ready("positional_torch")
        missing = maas("unload-model", "no_such_model", "--url", url)
        assert missing.returncode == 1 and "no model 'no_such_model'" in missing.stderr
    finally:
        client.close()


def test_a_server_without_model_control_is_told_how(added, made, tmp_path):
    config = server_config(tmp_path / "repo", tmp_path)
    (tmp_path / "repo").mkdir()
    import dataclasses

    config = dataclasses.replace(config, model_control=False)
    with TritonServer(config) as plain:
        request = _request(tmp_path / "repo", made / "mixed.onnx", "m", url=plain.config.http_url)
        with pytest.raises(AddModelError) as refused:
            add_model(request, log=lambda _: None)
    assert "maas serve --model-control" in str(refused.value)
    assert not (tmp_path / "repo" / "m").exists()
