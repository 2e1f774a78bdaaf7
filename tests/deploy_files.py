"""The Kubernetes deployment files under deploy/k8s, read the way the tests need them: rendered
by kustomize, and the PromQL they contain (alerts, prometheus-adapter rules), so that other
tests can check every metric name against a real Triton's /metrics. The same for
docker-compose.yml's observability files in deploy/observability (dashboards, alerts)."""

from __future__ import annotations

import functools
import json
import shutil
import subprocess
from typing import Any

import yaml

from maas.paths import PROJECT_ROOT

K8S = PROJECT_ROOT / "deploy" / "k8s"
ADAPTER = K8S / "prometheus-adapter"
# Every kustomization a user renders; the first four deploy Triton.
VARIANTS = [
    "overlays/gpu",
    "overlays/cpu",
    "overlays/minio",
    "kserve",
    "base",
    "prometheus-adapter",
]
TRITON_VARIANTS = VARIANTS[:4]
# What prometheus-adapter's templates become for a request about some pods of one namespace.
ADAPTER_TEMPLATE = {
    "<<.LabelMatchers>>": 'namespace="maas",pod=~"triton-.*"',
    "<<.GroupBy>>": "pod",
}


def kubectl() -> str | None:
    return shutil.which("kubectl")


@functools.cache
def kustomize(variant: str) -> str:
    """`kubectl kustomize deploy/k8s/<variant>`: the manifests as a user applies them."""
    return subprocess.run(
        ["kubectl", "kustomize", str(K8S / variant)],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip


@functools.cache
def render(variant: str) -> tuple[dict[str, Any], ...]:
    """kustomize(variant) as parsed documents (cached: never mutate)."""
    return tuple(doc for doc in yaml.safe_load_all(kustomize(variant)) if doc)


def adapter_rules() -> dict[str, list[dict[str, Any]]]:
    """The custom-metric rules of the Helm values file and of the adapter's own config file."""
    values = yaml.safe_load((ADAPTER / "values.yaml").read_text())
    config = yaml.safe_load((ADAPTER / "config.yaml").read_text())
    return {"values.yaml": values["rules"]["custom"], "config.yaml": config["rules"]}


def _source_documents() -> list[dict[str, Any]]:
    documents = []
    for path in sorted(K8S.rglob("*.yaml")):
        documents += [doc for doc in yaml.safe_load_all(path.read_text()) if isinstance(doc, dict)]
    return documents


def k8s_promql() -> list[str]:
    """Every PromQL expression in deploy/k8s: PrometheusRule expressions, then each adapter
    rule's seriesQuery and metricsQuery with its templates filled in (ADAPTER_TEMPLATE).
    Read from the files, so no kubectl is needed."""
    queries = [
        rule["expr"]
        for doc in _source_documents()
        if doc.get("kind") == "PrometheusRule"
        for group in doc["spec"]["groups"]
        for rule in group["rules"]
    ]
    for rules in adapter_rules().values():
        for rule in rules:
            query = rule["metricsQuery"]
            for template, value in ADAPTER_TEMPLATE.items():
                query = query.replace(template, value)
            queries += [rule["seriesQuery"], query]
    return list(dict.fromkeys(queries))  # once each, in file order


OBSERVABILITY = PROJECT_ROOT / "deploy" / "observability"
DASHBOARDS = OBSERVABILITY / "grafana" / "dashboards"
# What Grafana puts in place of the dashboard's variables: plain PromQL that Prometheus runs.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$model": ".+"}


def dashboard_targets() -> list[tuple[str, str]]:
    """(dashboard file name, expr) of every query target in deploy/observability's Grafana
    dashboards, rows' nested panels included, as written (Grafana variables unreplaced)."""
    found = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        stack = list(json.loads(path.read_text())["panels"])
        while stack:
            panel = stack.pop(0)
            stack += panel.get("panels", [])
            found += [(path.name, t["expr"]) for t in panel.get("targets", []) if "expr" in t]
    return found


def alert_rules() -> list[dict[str, Any]]:
    """The Prometheus alerting rules of docker-compose.yml's observability profile."""
    groups = yaml.safe_load((OBSERVABILITY / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def observability_promql() -> list[str]:
    """Every PromQL expression in deploy/observability: the Grafana dashboards' queries with
    their variables filled in (GRAFANA_VARIABLES), then the alert rules' expressions."""
    queries = []
    for _, expr in dashboard_targets():
        for variable, value in GRAFANA_VARIABLES.items():
            expr = expr.replace(variable, value)
        queries.append(expr)
    queries += [rule["expr"] for rule in alert_rules()]
    return list(dict.fromkeys(queries))  # once each, in file order
