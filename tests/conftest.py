"""A real Triton (the one inside nvidia-pytriton) on free ports, shared by the test session."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from maas.server import ServerConfig, TritonServer
from tests.fixture_models import build_repository


def free_ports(count: int) -> list[int]:
    sockets = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sockets.append(sock)
    ports = [s.getsockname()[1] for s in sockets]
    for sock in sockets:
        sock.close()
    return ports


def server_config(repository: Path, log_dir: Path) -> ServerConfig:
    http, grpc, metrics = free_ports(3)
    return ServerConfig(
        repository=repository,
        http_port=http,
        grpc_port=grpc,
        metrics_port=metrics,
        log_file=log_dir / f"triton-{http}.log",
        startup_timeout_s=240,
    )


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
