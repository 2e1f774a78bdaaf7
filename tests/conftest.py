"""A real Triton (the one inside nvidia-pytriton) on free ports, shared by the test session."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from maas.server import ServerConfig, TritonServer
from tests.fixture_models import build_repository
from tests.npc_fixtures import export, hf_tokenizer, npc_repository, npc_server, scorer

__all__ = ["export", "hf_tokenizer", "npc_repository", "npc_server", "scorer"]  # fixtures


def pytest_configure(config: pytest.Config) -> None:
    """The tests' own admin key, never the user's: servers and `maas` subprocesses find it
    through MAAS_ADMIN_KEY_FILE (created on the first server start)."""
    os.environ.pop("MAAS_ADMIN_KEY", None)
    folder = Path(tempfile.mkdtemp(prefix="maas-test-key-"))
    os.environ["MAAS_ADMIN_KEY_FILE"] = str(folder / "admin.key")
    os.environ["MAAS_PLAYTEST_DIR"] = str(folder / "playtest")  # never the player's own logs


def server_config(repository: Path, log_dir: Path) -> ServerConfig:
    config = ServerConfig.on_free_ports(
        repository,
        startup_timeout_s=240,
        model_control=True,  # the tests load, upload and reload models through the API
    )
    return dataclasses.replace(config, log_file=log_dir / f"triton-{config.http_port}.log")


@pytest.fixture(scope="session")
def backend_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_repository(tmp_path_factory.mktemp("backend_repository"))


@pytest.fixture(scope="session")
def triton(
    backend_repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TritonServer]:
    server = TritonServer(server_config(backend_repository, tmp_path_factory.mktemp("logs")))
    with server:
        yield server


@pytest.fixture
def http_client(triton: TritonServer):
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(triton.config.http_url)
    yield client
    client.close()


@pytest.fixture
def grpc_client(triton: TritonServer):
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(f"127.0.0.1:{triton.config.grpc_port}")
    yield client
    client.close()


@pytest.fixture(scope="session")
def quick_repository(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """The committed model repository's configs and labels with --quick builds of every recipe
    (mnist, npc) through the CLI; returns the repository and each build's output."""
    import shutil

    from maas.paths import PROJECT_ROOT
    from tests.cli_calls import maas

    repository = tmp_path_factory.mktemp("quick_repo")
    shutil.copytree(
        PROJECT_ROOT / "model_repository",
        repository,
        ignore=shutil.ignore_patterns("[0-9]*", "README.md"),
        dirs_exist_ok=True,
    )
    outputs = {}
    for recipe in ("mnist", "npc"):
        result = maas("build", recipe, "--quick", "--repository", str(repository))
        assert result.returncode == 0, result.stderr[-3000:]
        outputs[recipe] = result.stdout
    return repository, outputs


@pytest.fixture(scope="session")
def quick_server(
    quick_repository: tuple[Path, dict[str, str]], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TritonServer]:
    config = server_config(quick_repository[0], tmp_path_factory.mktemp("quick_logs"))
    with TritonServer(config) as server:
        yield server
