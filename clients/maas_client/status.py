"""Server health, model states and the figures from Triton's statistics API, as plain data."""

from __future__ import annotations

import http.client
import re
from dataclasses import dataclass, field
from typing import Any

from maas_client.admin_key import AdminKeyError, default_key_file, headers
from maas_client.errors import MaasClientError, ServerUnavailableError
from maas_client.urls import normalize_url

NS_PER_MS = 1e6


@dataclass(frozen=True, kw_only=True)
class ModelStatus:
    name: str
    version: str
    state: str
    reason: str = ""
    requests: int = 0
    failures: int = 0
    inferences: int = 0
    executions: int = 0
    avg_queue_ms: float | None = None  # per request
    avg_compute_ms: float | None = None  # per request: the compute of the batch it ran in

    @property
    def avg_batch(self) -> float | None:
        return self.inferences / self.executions if self.executions else None


@dataclass(frozen=True, kw_only=True)
class CacheStatus:
    """npc_turn's embedding cache, from the server's Prometheus metrics."""

    model: str
    version: str
    entries: int = 0
    bytes: int = 0
    max_entries: int = 0
    max_bytes: int = 0
    hits: int = 0
    misses: int = 0
    evictions: int = 0

    @property
    def hit_rate(self) -> float | None:
        looked_up = self.hits + self.misses
        return self.hits / looked_up if looked_up else None


@dataclass(frozen=True, kw_only=True)
class ServerStatus:
    url: str
    live: bool
    ready: bool
    version: str
    models: list[ModelStatus] = field(default_factory=list)
    caches: list[CacheStatus] = field(default_factory=list)
    metrics_error: str = ""  # why the cache figures are missing, when they are
    encoders: list[tuple[str, int]] = field(default_factory=list)  # npc_encoder: version, width


ENCODER_NAMES = {384: "MiniLM", 768: "mpnet"}  # embedding width -> the base that gives it


def encoder_widths(client: Any, versions: list[str]) -> list[tuple[str, int]]:
    """Which NPC brain serves: each ready npc_encoder version's embedding width, asked with
    one two-token text ([CLS] [SEP] in both bases' vocabularies). Inference is open."""
    import numpy as np
    import tritonclient.http as httpclient

    found = []
    for version in versions:
        inputs = []
        for name in ("input_ids", "attention_mask"):
            tensor = httpclient.InferInput(name, [1, 2], "INT64")
            tensor.set_data_from_numpy(np.array([[101, 102]] if name == "input_ids" else [[1, 1]]))
            inputs.append(tensor)
        try:
            result = client.infer("npc_encoder", inputs, model_version=version)
            found.append((version, int(result.as_numpy("EMBEDDING__0").shape[-1])))
        except Exception:  # a status page shows what it can
            continue
    return found


CACHE_METRIC = re.compile(r"^maas_npc_cache_(\w+)\{([^}]*)\} ([0-9.eE+-]+)$")
LABEL = re.compile(r'(\w+)="([^"]*)"')


def parse_cache_metrics(text: str) -> list[CacheStatus]:
    """The maas_npc_cache_* samples of a Prometheus text page, one CacheStatus per version.
    Each sample also names its stub process: while a version is reloaded the old and new
    instance both report for a moment, and the newer figures (the larger) are kept."""
    found: dict[tuple[str, str], dict[str, int]] = {}
    names = set(CacheStatus.__dataclass_fields__) - {"model", "version"}
    for line in text.splitlines():
        match = CACHE_METRIC.match(line.strip())
        if match and match[1] in names:
            labels = dict(LABEL.findall(match[2]))
            values = found.setdefault((labels.get("model", ""), labels.get("version", "")), {})
            values[match[1]] = max(values.get(match[1], 0), int(float(match[3])))
    return [CacheStatus(model=m, version=v, **values) for (m, v), values in sorted(found.items())]


def metrics_url_for(url: str | None) -> str:
    """Triton's metrics port is its HTTP port + 2 by default (8000 -> 8002), same host."""
    host, port = normalize_url(url).rsplit(":", 1)
    return f"{host}:{int(port) + 2}"


def fetch_cache_metrics(metrics_url: str, timeout_s: float = 5.0) -> list[CacheStatus]:
    host, port = normalize_url(metrics_url).rsplit(":", 1)
    connection = http.client.HTTPConnection(host.strip("[]"), int(port), timeout=timeout_s)
    try:
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        body = response.read().decode("utf-8", "replace")
    finally:
        connection.close()
    if response.status != 200:
        raise MaasClientError(f"{metrics_url}/metrics answered {response.status}")
    return parse_cache_metrics(body)


def _avg_ms(total_ns: int, count: int) -> float | None:
    return total_ns / count / NS_PER_MS if count else None


def _stats_by_model(stats: dict[str, Any]) -> dict[tuple[str, str], ModelStatus]:
    found = {}
    for entry in stats.get("model_stats", []):
        inference = entry.get("inference_stats", {})
        success = int(inference.get("success", {}).get("count", 0))
        executions = int(entry.get("execution_count", 0))
        compute_ns = sum(
            int(inference.get(part, {}).get("ns", 0))
            for part in ("compute_input", "compute_infer", "compute_output")
        )
        found[(entry["name"], str(entry.get("version", "")))] = ModelStatus(
            name=entry["name"],
            version=str(entry.get("version", "")),
            state="",
            requests=success + int(inference.get("fail", {}).get("count", 0)),
            failures=int(inference.get("fail", {}).get("count", 0)),
            inferences=int(entry.get("inference_count", 0)),
            executions=executions,
            avg_queue_ms=_avg_ms(int(inference.get("queue", {}).get("ns", 0)), success),
            avg_compute_ms=_avg_ms(compute_ns, success),
        )
    return found


def _require_live(client: Any, address: str) -> bool:
    try:
        return bool(client.is_server_live())
    except Exception as error:  # connection refused, DNS, timeout: all mean "not there"
        raise ServerUnavailableError(
            f"no Triton server answers at {address} ({type(error).__name__}); start one "
            "with `maas serve`"
        ) from None


def fetch_status(
    url: str | None = None,
    timeout_s: float = 5.0,
    *,
    admin_key: str | None = None,
    metrics_url: str | None = None,
) -> ServerStatus:
    """Health is open; the repository index and statistics are admin APIs and need the key.
    Cache figures come from the metrics port (`metrics_url`, default HTTP port + 2) when the
    server serves npc_turn; their absence is reported, not raised."""
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    admin = headers(admin_key)
    address = normalize_url(url)
    client = httpclient.InferenceServerClient(
        address, connection_timeout=timeout_s, network_timeout=timeout_s
    )
    try:
        live = _require_live(client, address)
        try:
            ready = client.is_server_ready()
            version = client.get_server_metadata(headers=admin).get("version", "?")
            index = client.get_model_repository_index(headers=admin)
            stats = _stats_by_model(client.get_inference_statistics(headers=admin))
            encoders = encoder_widths(
                client,
                [str(e["version"]) for e in index
                 if e["name"] == "npc_encoder" and e.get("state") == "READY"],
            )  # fmt: skip
        except InferenceServerException as error:
            if error.status() == "403":
                raise AdminKeyError(
                    f"{address} keeps model states and statistics behind its admin key and "
                    f"{'refused the one given' if admin_key else 'none was found'}: set "
                    f"MAAS_ADMIN_KEY or pass --key-file (the server's is in {default_key_file()} "
                    "on the machine running `maas serve`)"
                ) from None
            raise MaasClientError(f"{address}: {error.message()}") from None
        except OSError as error:
            raise ServerUnavailableError(f"{address} stopped answering: {error}") from None
    finally:
        client.close()
    models = []
    for entry in index:
        key = (entry["name"], str(entry.get("version", "")))
        base = stats.get(key) or ModelStatus(name=key[0], version=key[1], state="")
        models.append(
            ModelStatus(
                **{
                    **base.__dict__,
                    "state": entry.get("state", "UNKNOWN"),
                    "reason": entry.get("reason", ""),
                }
            )
        )
    caches, metrics_error = [], ""
    if any(m.name == "npc_turn" and m.state == "READY" for m in models):
        where = metrics_url or metrics_url_for(address)
        try:
            caches = fetch_cache_metrics(where, timeout_s)
        except (OSError, http.client.HTTPException, MaasClientError) as error:
            metrics_error = f"no cache figures: metrics at {where} did not answer ({error})"
    return ServerStatus(
        url=address,
        live=live,
        ready=ready,
        version=version,
        models=models,
        caches=caches,
        metrics_error=metrics_error,
        encoders=encoders,
    )


def models_ready(
    url: str | None, models: list[str] | tuple[str, ...], timeout_s: float = 5.0
) -> dict[str, bool]:
    """Each model's readiness through the health API, which needs no admin key; raises
    ServerUnavailableError when nothing answers at `url`."""
    import tritonclient.http as httpclient

    address = normalize_url(url)
    client = httpclient.InferenceServerClient(
        address, connection_timeout=timeout_s, network_timeout=timeout_s
    )
    try:
        _require_live(client, address)
        return {name: bool(client.is_model_ready(name)) for name in models}
    finally:
        client.close()
