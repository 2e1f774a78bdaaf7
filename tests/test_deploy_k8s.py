"""deploy/k8s rendered offline: every variant builds with kustomize, every built-in kind is valid
against Kubernetes' own schemas, and the settings that matter in production hold (non-root,
read-only root, health probes, GPU or not, Triton 24.10, compose's admin-key rules, metrics
port closed, the HPA's metric defined by a prometheus-adapter rule). Nothing here needs a
cluster; what only a cluster proves (the NGC entrypoint on a read-only root, KServe's merge of
the runtime) is not claimed."""

from __future__ import annotations

import re
from typing import Any

import kubernetes_validate
import pytest
import yaml

from maas.paths import PROJECT_ROOT
from maas_client.admin_key import ADMIN_APIS, HEADER
from tests.deploy_files import (
    ADAPTER_TEMPLATE,
    TRITON_VARIANTS,
    VARIANTS,
    adapter_rules,
    k8s_promql,
    kubectl,
)
from tests.deploy_files import render as _render

KUBERNETES = "1.31.0"  # a release kubernetes_validate has schemas for, supported by clouds today
TRITON_TAG = "24.10"  # NGC's release with Triton 2.51, the server inside nvidia-pytriton
GPU_VARIANTS = ["overlays/gpu", "overlays/minio", "kserve"]
# Custom resources kubernetes_validate has no schema for: checked field by field below.
CRDS = {
    "ServiceMonitor": "monitoring.coreos.com/v1",
    "PrometheusRule": "monitoring.coreos.com/v1",
    "InferenceService": "serving.kserve.io/v1beta1",
    "ServingRuntime": "serving.kserve.io/v1alpha1",
}
COMPOSE = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
COMPOSE_LINE = COMPOSE["services"]["triton"]["command"][0]
HEALTH = {"/v2/health/live", "/v2/health/ready"}
REGISTRY = "registry.example.com"  # the overlays' `images:` placeholder, to be replaced


def render(variant: str) -> tuple[dict[str, Any], ...]:
    if not kubectl():
        pytest.skip("kubectl is not on PATH (its built-in kustomize renders deploy/k8s)")
    return _render(variant)


def of_kind(docs: tuple[dict[str, Any], ...], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


def pod_specs(docs: tuple[dict[str, Any], ...]) -> list[tuple[str, dict[str, Any]]]:
    """(name, pod spec) of every workload, KServe's runtime and predictor merged as KServe does."""
    specs = [
        (doc["metadata"]["name"], doc["spec"]["template"]["spec"])
        for doc in docs
        if doc["kind"] in ("Deployment", "Job")
    ]
    for isvc in of_kind(docs, "InferenceService"):
        predictor = isvc["spec"]["predictor"]
        runtime = next(
            r for r in of_kind(docs, "ServingRuntime")
            if r["metadata"]["name"] == predictor["model"]["runtime"]
        )  # fmt: skip
        container = {**runtime["spec"]["containers"][0], **predictor["model"]}
        pod = {k: v for k, v in predictor.items() if k not in ("model", "minReplicas")}
        pod |= {"containers": [container], "volumes": runtime["spec"]["volumes"]}
        specs.append((isvc["metadata"]["name"], pod))
    return specs


def triton_containers(docs: tuple[dict[str, Any], ...]) -> list[dict[str, Any]]:
    return [
        container
        for name, spec in pod_specs(docs)
        for container in spec["containers"]
        if name != "minio"
    ]


def shell_line(container: dict[str, Any]) -> str:
    """The `sh -c` line as the shell sees it: Kubernetes turns $$ into $, like compose."""
    assert container["command"][-2:] == ["/bin/sh", "-c"], container["command"]
    (line,) = container["args"]
    return line.replace("$$", "$")


@pytest.mark.parametrize("variant", VARIANTS)
def test_builtin_kinds_are_valid_kubernetes_and_custom_ones_have_their_fields(variant):
    docs = render(variant)
    assert docs, f"{variant} renders nothing"
    for doc in docs:
        name = f"{variant}: {doc['kind']}/{doc['metadata']['name']}"
        if doc["kind"] in CRDS:
            assert doc["apiVersion"] == CRDS[doc["kind"]], name
            assert isinstance(doc["spec"], dict) and doc["spec"], name
            continue
        try:
            kubernetes_validate.validate(doc, KUBERNETES, strict=True)
        except kubernetes_validate.ValidationError as error:
            pytest.fail(f"{name}: {error.message} at {list(error.absolute_path)}")


def test_custom_resources_say_what_their_operators_need():
    docs = render("overlays/gpu")
    (monitor,) = of_kind(docs, "ServiceMonitor")
    (service,) = of_kind(docs, "Service")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    assert service["metadata"]["labels"][monitor["spec"]["jobLabel"]] == "triton"  # job="triton"
    (rules,) = of_kind(docs, "PrometheusRule")
    alerts = [rule for group in rules["spec"]["groups"] for rule in group["rules"]]
    assert len(alerts) >= 4
    for alert in alerts:
        assert alert["alert"] and alert["expr"] and alert["labels"]["severity"], alert
        assert alert["annotations"]["summary"], alert
    kserve = render("kserve")
    (isvc,) = of_kind(kserve, "InferenceService")
    model = isvc["spec"]["predictor"]["model"]
    assert model["modelFormat"]["name"] == "triton"
    assert model["storageUri"] == "pvc://maas-model-repository"
    (runtime,) = of_kind(kserve, "ServingRuntime")
    assert runtime["metadata"]["name"] == model["runtime"]
    assert {"name": "triton", "version": "2", "autoSelect": True} in runtime["spec"][
        "supportedModelFormats"
    ]
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"
    (monitor,) = of_kind(kserve, "ServiceMonitor")  # the HPA's metric needs the scrape
    (service,) = [
        s for s in of_kind(kserve, "Service") if s["metadata"]["name"].endswith("metrics")
    ]
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert service["spec"]["selector"] == {"serving.kserve.io/inferenceservice": "maas"}
    assert [(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [
        ("metrics", 8002, 8002)
    ]


def test_no_service_is_scraped_by_two_service_monitors():
    """base/ and kserve/ both label their metrics Service app.kubernetes.io/name: triton (for
    job="triton"); deployed side by side, each ServiceMonitor must select its own Service only,
    or Prometheus scrapes the same pods twice and every rate doubles."""
    docs = render("base") + render("kserve")
    services = [
        s for s in of_kind(docs, "Service") if {p["port"] for p in s["spec"]["ports"]} & {8002}
    ]
    monitors = of_kind(docs, "ServiceMonitor")
    assert len(services) == len(monitors) == 2
    for monitor in monitors:
        selector = monitor["spec"]["selector"]["matchLabels"].items()
        selected = [s for s in services if selector <= s["metadata"]["labels"].items()]
        assert len(selected) == 1, (monitor["metadata"]["name"], selected)


@pytest.mark.parametrize("variant", TRITON_VARIANTS)
def test_every_variant_has_a_disruption_budget_and_the_alerts_on_its_pods(variant):
    docs = render(variant)
    (pdb,) = of_kind(docs, "PodDisruptionBudget")
    assert pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"]
    selector = pdb["spec"]["selector"]["matchLabels"].items()
    if variant == "kserve":  # KServe labels the predictor pods with the InferenceService's name
        (isvc,) = of_kind(docs, "InferenceService")
        assert dict(selector) == {"serving.kserve.io/inferenceservice": isvc["metadata"]["name"]}
    else:
        (triton,) = [d for d in of_kind(docs, "Deployment") if d["metadata"]["name"] == "triton"]
        assert selector <= triton["spec"]["template"]["metadata"]["labels"].items()
    (rules,) = of_kind(docs, "PrometheusRule")
    (monitor,) = of_kind(docs, "ServiceMonitor")
    (service,) = [
        s for s in of_kind(docs, "Service")
        if monitor["spec"]["selector"]["matchLabels"].items() <= s["metadata"]["labels"].items()
    ]  # fmt: skip
    job = service["metadata"]["labels"][monitor["spec"]["jobLabel"]]
    exprs = [r["expr"] for g in rules["spec"]["groups"] for r in g["rules"]]
    assert exprs and all(f'job="{job}"' in expr for expr in exprs)
    # The claim the pods read the repository from (storage/, shared by base/ and kserve/);
    # the minio variant reads the bucket instead.
    claims = [c["metadata"]["name"] for c in of_kind(docs, "PersistentVolumeClaim")]
    assert ("maas-model-repository" in claims) == (variant != "overlays/minio"), claims


@pytest.mark.parametrize("variant", [*TRITON_VARIANTS, "base"])
def test_every_pod_runs_non_root_on_a_read_only_root_with_health_probes(variant):
    for name, spec in pod_specs(render(variant)):
        assert spec["automountServiceAccountToken"] is False, name
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] > 0, name
        assert pod["seccompProfile"]["type"] == "RuntimeDefault", name
        mounts = {}
        for container in spec["containers"]:
            security = container["securityContext"]
            assert security["runAsNonRoot"] is True and security["runAsUser"] > 0, name
            assert security["allowPrivilegeEscalation"] is False, name
            assert security["readOnlyRootFilesystem"] is True, name
            assert security["capabilities"]["drop"] == ["ALL"], name
            assert security["seccompProfile"]["type"] == "RuntimeDefault", name
            assert "memory" in container["resources"]["limits"], name
            mounts |= {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            if name == "minio":
                continue
            ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
            http = 8080 if variant == "kserve" else 8000
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                get = container[probe]["httpGet"]
                assert get["path"] in HEALTH and ports.get(get["port"], get["port"]) == http
            assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
            assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert "emptyDir" in volumes[mounts["/tmp"]], name  # writable scratch on a read-only root
        if name != "minio":  # uid 1000 has no home in NVIDIA's image: caches need a place
            for container in spec["containers"]:
                env = {e["name"]: e.get("value") for e in container.get("env", [])}
                assert env.get("HOME") == "/tmp", (name, container["name"])
        if name != "minio":
            assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory", name


@pytest.mark.parametrize("variant", TRITON_VARIANTS)
def test_gpu_variants_take_one_gpu_and_the_cpu_variant_none(variant):
    for container in triton_containers(render(variant)):
        resources = container["resources"]
        if variant in GPU_VARIANTS:
            assert resources["limits"]["nvidia.com/gpu"] == "1"
        else:
            assert "nvidia.com/gpu" not in str(resources)


def test_triton_images_are_the_24_10_release_compose_and_the_dockerfile_use():
    """The images compose builds, under the placeholder registry every variant names: a bare
    name would be pulled from docker.io (imagePullPolicy Always), where it does not exist."""
    dockerfile = (PROJECT_ROOT / "docker" / "Dockerfile").read_text()
    assert f"nvcr.io/nvidia/tritonserver:{TRITON_TAG}-py3" in dockerfile
    assert COMPOSE["services"]["triton"]["image"] == f"maas-triton:{TRITON_TAG}"
    images = [c["image"] for v in GPU_VARIANTS for c in triton_containers(render(v))]
    assert images and all(image == f"{REGISTRY}/maas-triton:{TRITON_TAG}" for image in images)
    (cpu,) = triton_containers(render("overlays/cpu"))
    assert cpu["image"] == f"{REGISTRY}/{COMPOSE['services']['triton-cpu']['image']}"
    assert cpu["image"] == f"{REGISTRY}/maas-triton-cpu:0.1.0"
    for variant in TRITON_VARIANTS:
        for container in triton_containers(render(variant)):
            assert container["imagePullPolicy"] == "Always", variant


@pytest.mark.parametrize("variant", ["overlays/gpu", "overlays/minio", "kserve"])
def test_triton_runs_composes_command_line(variant):
    """The same shell line as docker-compose.yml: key from the Secret's file, the same
    restricted APIs for HTTP and gRPC, no model control; only paths, ports and (minio) the
    bucket's credentials differ."""
    (container,) = triton_containers(render(variant))
    assert container["command"][0] == COMPOSE["services"]["triton"]["entrypoint"][0]
    line = shell_line(container)
    compose = COMPOSE_LINE.replace("$$", "$")
    admin = re.search(r"ADMIN=([\w,-]+)", compose)[1]
    assert f"ADMIN={admin} &&" in line
    assert admin.split(",") == list(ADMIN_APIS)
    for flag in ("--http-restricted-api", "--grpc-restricted-protocol"):
        assert f'{flag}="$ADMIN:{HEADER}=$KEY"' in line and f'{flag}="$ADMIN:' in compose
    assert 'KEY="$(cat /run/secrets/maas_admin_key)"' in line
    assert "--model-control-mode" not in line and "--load-model" not in line
    expected = {
        "overlays/gpu": compose,
        "overlays/minio": "find /var/cache/models -mindepth 1 -delete && "
        + compose.replace("/models", "s3://minio:9000/models").replace(
            "exec tritonserver",
            'export AWS_ACCESS_KEY_ID="$(cat /run/model-store/AWS_ACCESS_KEY_ID)" && '
            'export AWS_SECRET_ACCESS_KEY="$(cat /run/model-store/AWS_SECRET_ACCESS_KEY)" && '
            "exec tritonserver",
        ),
        "kserve": compose.replace(
            "--model-repository=/models",
            "--model-repository=/mnt/models --http-port=8080 --grpc-port=9000",
        ),
    }[variant]
    assert line == expected
    assert "env" not in container or "KEY" not in {e["name"] for e in container["env"]}


def test_cpu_variant_serves_with_maas_serve_and_the_key_from_the_secret_file():
    docs = render("overlays/cpu")
    ((_, spec),) = pod_specs(docs)
    (container,) = spec["containers"]
    line = shell_line(container)
    assert 'export MAAS_ADMIN_KEY="$(cat /run/secrets/maas_admin_key)"' in line
    assert "exec maas serve --repository=/models --host=0.0.0.0 --metrics-host=0.0.0.0" in line
    assert "--model-control" not in line and "--restrict-inference" not in line
    volumes = {v["name"]: v for v in spec["volumes"]}
    key = next(m for m in container["volumeMounts"] if m["mountPath"] == "/run/secrets")
    secret = volumes[key["name"]]["secret"]
    assert secret["secretName"] == "maas-admin-key"
    assert secret["items"] == [{"key": "key", "path": "maas_admin_key"}]
    assert "tolerations" not in spec


@pytest.mark.parametrize("variant", ["overlays/gpu", "overlays/cpu", "overlays/minio"])
def test_services_point_at_the_containers_ports(variant):
    docs = render(variant)
    pods = {
        doc["metadata"]["name"]: doc["spec"]["template"]
        for doc in of_kind(docs, "Deployment")
    }  # fmt: skip
    for service in of_kind(docs, "Service"):
        name = service["metadata"]["name"]
        template = pods[name]
        assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
        ports = {p["name"]: p["containerPort"] for c in template["spec"]["containers"]
                 for p in c["ports"]}  # fmt: skip
        for port in service["spec"]["ports"]:
            target = port["targetPort"]
            assert ports.get(target, target) == port["port"], f"{name} {port}"
    (triton,) = [s for s in of_kind(docs, "Service") if s["metadata"]["name"] == "triton"]
    assert {p["name"]: p["port"] for p in triton["spec"]["ports"]} == {
        "http": 8000, "grpc": 8001, "metrics": 8002,
    }  # fmt: skip


@pytest.mark.parametrize("variant", TRITON_VARIANTS)
def test_network_policies_never_open_the_metrics_port_to_everyone(variant):
    docs = render(variant)
    policies = of_kind(docs, "NetworkPolicy")
    assert policies
    metrics_open_to = []
    for policy in policies:
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        for rule in policy["spec"]["ingress"]:
            ports = {p["port"] for p in rule.get("ports", [])}
            peers = rule.get("from", [])
            assert ports, f"a rule without ports opens every port: {rule}"
            assert peers, f"a rule without `from` opens {ports} to everyone: {rule}"
            assert not any("ipBlock" in peer for peer in peers), rule
            if 8002 in ports or "metrics" in ports:
                assert ports == {8002}, rule
                for peer in peers:
                    assert peer["namespaceSelector"]["matchLabels"] == {
                        "kubernetes.io/metadata.name": "monitoring"
                    }, rule
                metrics_open_to += peers
    assert metrics_open_to, "Prometheus cannot scrape the metrics port"


@pytest.mark.parametrize("variant", ["overlays/gpu", "kserve"])
def test_hpa_scales_on_the_queue_time_metric_the_adapter_defines(variant):
    docs = render(variant)
    (hpa,) = of_kind(docs, "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    (metric,) = hpa["spec"]["metrics"]
    assert metric["type"] == "Pods" and metric["pods"]["target"]["type"] == "AverageValue"
    name = metric["pods"]["metric"]["name"]
    assert 1 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
    behavior = hpa["spec"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] >= 300
    assert behavior["scaleUp"]["stabilizationWindowSeconds"] < 300
    rules = adapter_rules()
    assert rules["values.yaml"] == rules["config.yaml"], "the two adapter files differ"
    (rule,) = [r for r in rules["values.yaml"] if r["name"]["as"] == name]
    assert "nv_inference_queue_duration_us" in rule["metricsQuery"]
    assert "nv_inference_request_success" in rule["metricsQuery"]
    assert rule["resources"]["overrides"]["pod"] == {"resource": "pod"}
    assert set(re.findall(r"<<\.\w+>>", rule["metricsQuery"])) <= set(ADAPTER_TEMPLATE)
    target = hpa["spec"]["scaleTargetRef"]
    if variant == "kserve":  # KServe names the predictor's Deployment <name>-predictor
        (isvc,) = of_kind(docs, "InferenceService")
        assert target["name"] == f"{isvc['metadata']['name']}-predictor"
        assert isvc["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "external"
    else:
        assert target["name"] in {d["metadata"]["name"] for d in of_kind(docs, "Deployment")}


def test_base_pod_keeps_the_repository_read_only_and_the_minio_variant_reads_the_bucket():
    ((_, base),) = pod_specs(render("base"))
    volumes = {v["name"]: v for v in base["volumes"]}
    (models,) = [m for m in base["containers"][0]["volumeMounts"] if m["mountPath"] == "/models"]
    assert models["readOnly"] is True
    claim = volumes[models["name"]]["persistentVolumeClaim"]
    (pvc,) = of_kind(render("base"), "PersistentVolumeClaim")
    assert claim["claimName"] == pvc["metadata"]["name"] == "maas-model-repository"
    assert pvc["spec"]["accessModes"] == ["ReadOnlyMany"]
    minio = render("overlays/minio")
    assert "maas-model-repository" not in str(minio)
    (triton,) = triton_containers(minio)
    assert "/models" not in {m["mountPath"] for m in triton["volumeMounts"]}
    env = {e["name"]: e.get("value") for e in triton["env"]}
    assert env["AWS_DEFAULT_REGION"] and env["TRITON_AWS_MOUNT_DIRECTORY"] == "/var/cache/models"


@pytest.mark.parametrize("variant", TRITON_VARIANTS)
def test_no_secret_value_is_committed_or_rendered(variant):
    docs = render(variant)
    assert not of_kind(docs, "Secret")
    text = yaml.safe_dump_all(docs)
    assert "secretKeyRef" not in text  # keys travel as files, read by the shell line


def test_the_promql_helper_returns_filled_in_queries():
    queries = k8s_promql()
    assert len(queries) >= 6
    for query in queries:
        assert "<<" not in query and query.count("(") == query.count(")"), query
        assert re.search(r"\bnv_[a-z_]+", query), query


def test_cpu_variant_flags_are_ones_maas_serve_accepts_on_the_container_ports():
    """The overlay's `maas serve ...` parsed by the real command (an unknown or misspelt flag
    raises, as it would in the pod), its ports those the container and Service declare."""
    import shlex

    import typer

    from maas.cli import app

    ((_, spec),) = pod_specs(render("overlays/cpu"))
    (container,) = spec["containers"]
    words = shlex.split(shell_line(container).split("exec maas serve", 1)[1])
    serve = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
    params = serve.make_context("serve", words).params
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert (params["http_port"], params["grpc_port"], params["metrics_port"]) == (
        ports["http"], ports["grpc"], ports["metrics"],
    )  # fmt: skip
    assert params["host"] == params["metrics_host"] == "0.0.0.0"
    assert not params["model_control"]


def test_kserve_says_its_version_floor_and_exposes_grpc():
    """`autoscalerClass: external` needs KServe 0.12; its predictor Service is HTTP only."""
    docs = render("kserve")
    (isvc,) = of_kind(docs, "InferenceService")
    assert isvc["metadata"]["annotations"]["serving.kserve.io/autoscalerClass"] == "external"
    text = (PROJECT_ROOT / "deploy" / "k8s" / "kserve" / "kustomization.yaml").read_text()
    assert "v0.12 or newer" in text and "v0.11" not in text
    services = of_kind(docs, "Service")
    (service,) = [s for s in services if any(p["port"] == 9000 for p in s["spec"]["ports"])]
    assert service["spec"]["selector"] == {"serving.kserve.io/inferenceservice": "maas"}
    (policy,) = of_kind(docs, "NetworkPolicy")
    admitted = {p["port"] for rule in policy["spec"]["ingress"] for p in rule["ports"]}
    assert 9000 in admitted
