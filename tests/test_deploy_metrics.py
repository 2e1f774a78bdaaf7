"""Every metric that a dashboard, an alert or the autoscaler reads is one Triton exports.

A misspelt metric name fails silently in Prometheus (an empty panel, an alert that never
fires, an HPA stuck at its minimum), so the names are checked against the /metrics page of a
real Triton 2.51 (the NGC 24.10 core) serving the NPC models here, after traffic. GPU metrics
cannot appear on this CPU machine: their names are checked against the same 2.51 library's
bytes instead (its first 16 bytes: the compiler stores longer literals in pieces).
"""

from __future__ import annotations

import json
import re
import urllib.request

import numpy as np
import promql_parser
import pytest
import tritonclient.http as httpclient

from maas.server.triton_paths import find_triton
from tests.deploy_files import k8s_promql, observability_promql

GPU_ONLY = {
    "nv_gpu_utilization",
    "nv_gpu_memory_total_bytes",
    "nv_gpu_memory_used_bytes",
    "nv_gpu_power_usage",
    "nv_gpu_power_limit",
    "nv_energy_consumption",
}
# Labels Prometheus and the Kubernetes service discovery attach to every scraped series.
SCRAPE_LABELS = {"job", "instance", "namespace", "pod", "service", "container", "endpoint"}


def selectors(query: str) -> list[tuple[str, set[str]]]:
    """(metric name, label names matched) of every series selector in a PromQL expression,
    from its syntax tree: names in strings, comments or function names are not metrics."""
    found: list[tuple[str, set[str]]] = []

    def walk(node: object) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            matchers = node.matchers.matchers + [m for group in node.matchers.or_matchers
                                                 for m in group]  # fmt: skip
            name = node.name or next(m.value for m in matchers if m.name == "__name__")
            found.append((name, {m.name for m in matchers} - {"__name__"}))
            return
        for child in ("lhs", "rhs", "expr", "vector_selector", "param"):
            if hasattr(node, child):
                walk(getattr(node, child))
        for arg in getattr(node, "args", None) or []:
            walk(arg)

    walk(promql_parser.parse(query))
    return found


def all_promql() -> list[str]:
    return [*k8s_promql(), *observability_promql()]


@pytest.fixture(scope="module")
def exported(npc_server) -> str:
    """Triton's /metrics after a few turns, so per-model series and the NPC cache exist."""
    client = httpclient.InferenceServerClient(npc_server.config.http_url)
    try:
        query = httpclient.InferInput("QUERY", [1, 1], "BYTES")
        query.set_data_from_numpy(np.array([[b"any rooms?"]], dtype=np.object_))
        lines = httpclient.InferInput("CANDIDATE", [1, 2], "BYTES")
        lines.set_data_from_numpy(np.array([[b"A bed is 3 silver.", b"Bye."]], dtype=np.object_))
        client.infer("npc_turn", [query, lines])
    finally:
        client.close()
    url = f"http://127.0.0.1:{npc_server.config.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read().decode()


def test_the_deployment_files_have_promql_to_check():
    queries = all_promql()
    assert len(k8s_promql()) >= 3 and len(observability_promql()) >= 8, queries
    for query in queries:
        assert selectors(query), f"no series read by {query!r}"


def test_every_metric_name_is_exported_by_a_real_triton(exported):
    served = {line.split()[2] for line in exported.splitlines() if line.startswith("# TYPE ")}
    used = {name for query in all_promql() for name, _ in selectors(query)}
    for name in ("nv_inference_queue_duration_us", "nv_inference_request_success"):
        assert name in used, f"the autoscaler's {name} is read nowhere"
    unknown = sorted(used - served - GPU_ONLY)
    assert not unknown, f"not in Triton's /metrics: {unknown}"


def test_gpu_metric_names_are_in_the_same_triton_library():
    library = next(find_triton().library_dir.glob("libtritonserver*.so"))
    data = library.read_bytes()
    used = {name for query in all_promql() for name, _ in selectors(query)} & GPU_ONLY
    assert used, "no dashboard shows the GPU"
    for name in used:
        assert name[:16].encode() in data, f"{name} is not in {library.name}"
    assert b"nv_gpu_no_such_m" not in data  # the check can fail


def test_every_label_matched_is_one_triton_or_the_scrape_sets(exported):
    labels = {
        label
        for line in exported.splitlines()
        if not line.startswith("#") and "{" in line
        for label in re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)=\"", line.split("}")[0])
    }
    assert {"model", "version"} <= labels
    for query in all_promql():
        for name, matched in selectors(query):
            unknown = matched - labels - SCRAPE_LABELS - {"gpu_uuid"}
            assert not unknown, f"{sorted(unknown)} on {name} in {query!r}"


def ngc_release(triton_version: str) -> str:
    """NGC's monthly Triton images: 24.10 carries 2.51, and each month adds one minor version."""
    minor = int(triton_version.split(".")[1])
    months = 2024 * 12 + 9 + (minor - 51)  # 24.10 = October 2024
    return f"{months // 12 % 100}.{months % 12 + 1:02d}"


def test_the_image_tag_is_the_ngc_release_of_the_triton_served_here(npc_server):
    from tests.test_deploy_k8s import TRITON_TAG

    assert ngc_release("2.51.0") == "24.10" and ngc_release("2.54.0") == "25.01"
    with urllib.request.urlopen(f"http://{npc_server.config.http_url}/v2", timeout=10) as r:
        served = json.loads(r.read())["version"]
    assert ngc_release(served) == TRITON_TAG, f"the wheel serves Triton {served}"
