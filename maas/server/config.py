"""Typed settings for one tritonserver process, turned into its command line."""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path

from maas_client.admin_key import ADMIN_APIS, HEADER, INFERENCE_APIS

DEFAULT_HTTP_PORT = 8000
DEFAULT_GRPC_PORT = 8001
DEFAULT_METRICS_PORT = 8002
DEFAULT_STARTUP_TIMEOUT_S = 300.0
DEFAULT_EXIT_TIMEOUT_S = 30


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    repository: Path
    host: str = "127.0.0.1"
    http_port: int = DEFAULT_HTTP_PORT
    grpc_port: int = DEFAULT_GRPC_PORT
    metrics_port: int = DEFAULT_METRICS_PORT
    log_file: Path | None = None  # None: a timestamped file under the cache's logs/
    verbose: bool = False
    startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S
    exit_timeout_s: int = DEFAULT_EXIT_TIMEOUT_S
    extra_args: tuple[str, ...] = field(default=())
    # False: start even when some models fail to load (maas validate reports each one).
    require_all_models: bool = True
    # The admin APIs (model load/unload, index, statistics, trace, logging, shared memory) answer
    # only requests carrying this key; None: TritonServer finds or creates the user's key file.
    admin_key: str | None = field(default=None, repr=False)
    restrict_inference: bool = False  # inference, model config and metadata need the key too
    # Model load/unload through the API (explicit mode), for tune-batching, bench and add-model.
    # Off by default: Triton takes the key only on its command line, which local users can read
    # in /proc, so with model control on the key guards against the network, not local users.
    model_control: bool = False
    # Seconds between Triton's scans of the repository (poll mode): a model whose version
    # folder appears later is loaded then, without the admin API (the game's background builds).
    poll_s: int | None = None
    metrics_host: str = "127.0.0.1"  # metrics have no key: this host only unless asked

    def __post_init__(self) -> None:
        ports = (self.http_port, self.grpc_port, self.metrics_port)
        for port in ports:
            if not 0 < port < 65536:
                raise ValueError(f"port {port} is outside 1..65535")
        if len(set(ports)) != len(ports):
            raise ValueError(f"HTTP, gRPC and metrics ports must differ, got {ports}")

    @property
    def http_url(self) -> str:
        return f"{self.host}:{self.http_port}"

    @classmethod
    def on_free_ports(cls, repository: Path, **settings: object) -> ServerConfig:
        """A config on three ports that are free right now (tests, bench, validate)."""
        http, grpc, metrics = free_ports(3)
        return cls(
            repository=repository,
            http_port=http,
            grpc_port=grpc,
            metrics_port=metrics,
            **settings,  # type: ignore[arg-type]
        )

    def restricted_apis(self) -> tuple[str, ...]:
        return ADMIN_APIS + (INFERENCE_APIS if self.restrict_inference else ())

    def arguments(self, backend_dir: Path) -> list[str]:
        # Every model loads at start either way; explicit mode also lets the admin API (re)load
        # models without a restart. exit-on-error off: we read each failed model's reason from
        # the repository index and stop the server ourselves, so the user gets a message
        # instead of a half-started server.
        if self.model_control:
            control = ["--model-control-mode=explicit", "--load-model=*"]
        elif self.poll_s is not None:
            control = ["--model-control-mode=poll", f"--repository-poll-secs={self.poll_s}"]
        else:
            control = ["--model-control-mode=none"]
        return [
            f"--model-repository={self.repository.resolve()}",
            f"--backend-directory={backend_dir}",
            *control,
            "--exit-on-error=false",
            "--strict-readiness=true",
            f"--exit-timeout-secs={self.exit_timeout_s}",
            f"--http-address={self.host}",
            f"--http-port={self.http_port}",
            f"--grpc-address={self.host}",
            f"--grpc-port={self.grpc_port}",
            f"--metrics-address={self.metrics_host}",
            f"--metrics-port={self.metrics_port}",
            "--allow-gpu-metrics=false",
            *self.restriction_arguments(),
            "--log-verbose=1" if self.verbose else "--log-verbose=0",
            *self.extra_args,
        ]

    def restriction_arguments(self) -> list[str]:
        if not self.admin_key:
            raise ValueError("an admin key is required: Triton's admin APIs load and run code")
        rule = f"{','.join(self.restricted_apis())}:{HEADER}={self.admin_key}"
        return [f"--http-restricted-api={rule}", f"--grpc-restricted-protocol={rule}"]


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """`count` distinct ports free right now: all sockets stay bound until every port is known."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sockets.append(sock)
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
