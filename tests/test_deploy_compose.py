"""docker-compose.yml and its profiles' files, checked offline (there is no Docker engine here):
the file against the Compose Specification's own JSON schema, then what the schema cannot know:
each profile's services, ports published on 127.0.0.1, commands that the real `maas serve` and
Locust accept, Prometheus's targets and Grafana's provisioning pointing at what exists.

The images themselves are not built here; tests/test_compose.py runs the GPU service's Triton
command for real.
"""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import tomllib
from importlib.resources import files
from pathlib import Path, PurePosixPath
from typing import Any

import jsonschema
import pytest
import typer
import yaml

from maas.cli import app
from maas.paths import PROJECT_ROOT
from tests.deploy_files import DASHBOARDS, OBSERVABILITY, dashboard_targets, observability_promql

COMPOSE = yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
PROFILES = {
    "cpu": {"triton-cpu"},
    "observability": {"prometheus", "alertmanager", "grafana"},
    "load": {"locust-master", "locust-worker"},
}
TRITONS = ("triton", "triton-cpu")
OPEN_PORTS = {8000, 8001}  # Triton's HTTP and gRPC: inference open, admin APIs need the key
DOCKERFILES = {
    "triton-cpu": PROJECT_ROOT / "docker" / "cpu.Dockerfile",
    "locust-master": PROJECT_ROOT / "docker" / "loadtest.Dockerfile",
}


def compose_schema() -> dict[str, Any]:
    """The Compose Specification's schema (compose-spec/compose-spec, schema/compose-spec.json),
    as check-jsonschema vendors it for its check-compose-spec hook: a PyPI package, so the
    test needs no network."""
    vendor = files("check_jsonschema.builtin_schemas.vendor")
    return json.loads((vendor / "compose-spec.json").read_text())


def interpolate(value: str) -> str:
    """Compose's interpolation with no variable set: ${NAME:-default} becomes its default."""
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*:-([^}]*)\}", r"\1", value).replace("$$", "$")


def command(service: str) -> list[str]:
    return [interpolate(arg) for arg in SERVICES[service]["command"]]


def published(service: str) -> list[tuple[str | None, int, int]]:
    """(host address or None for all, host port, container port) of each short-syntax port."""
    found = []
    for entry in SERVICES[service].get("ports", []):
        *address, host, container = str(entry).split(":")
        found.append((address[0] if address else None, int(host), int(container)))
    return found


def host_path(service: str, container_path: str) -> Path:
    """The file or folder on this machine that a service sees at container_path, through its
    bind mounts (./relative:/absolute[:ro])."""
    wanted = PurePosixPath(container_path)
    for volume in SERVICES[service].get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith(".") and wanted.is_relative_to(target):
            return PROJECT_ROOT / source / wanted.relative_to(target)
    raise AssertionError(f"{service} mounts nothing at {container_path}")


def serve_params(args: list[str]) -> dict[str, Any]:
    """`maas serve`'s parameters from args, parsed by the real Typer command without running it
    (an unknown or malformed flag raises, as on the command line)."""
    serve = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
    return serve.make_context("serve", list(args)).params


def dockerfile_json(path: Path, instruction: str) -> list[str]:
    """The exec-form (JSON) arguments of a Dockerfile's last `instruction` (CMD, ENTRYPOINT)."""
    text = path.read_text().replace("\\\n", " ")
    lines = [line for line in text.splitlines() if line.startswith(f"{instruction} ")]
    assert lines, f"no {instruction} in {path.name}"
    return json.loads(lines[-1][len(instruction) :])


def test_the_compose_file_follows_the_compose_specification():
    schema = compose_schema()
    assert "profiles" in json.dumps(schema["$defs"]["service"])  # a schema that knows profiles
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
              for e in validator.iter_errors(COMPOSE)]  # fmt: skip
    assert not errors, "\n".join(errors)
    broken = copy.deepcopy(COMPOSE)
    broken["services"]["grafana"]["port"] = ["3000:3000"]  # a typo the schema must catch
    assert list(validator.iter_errors(broken))


def test_each_profile_has_its_services_and_the_gpu_service_none():
    for profile, names in PROFILES.items():
        assert {n for n, s in SERVICES.items() if profile in s.get("profiles", [])} == names
    assert "profiles" not in SERVICES["triton"]  # `docker compose up` still starts it alone


def test_metrics_and_web_uis_are_published_on_this_host_only():
    for name in SERVICES:
        assert "network_mode" not in SERVICES[name], name
        for address, host, container in published(name):
            if name in TRITONS and container in OPEN_PORTS:
                assert host == container, (name, host)
            else:
                assert address == "127.0.0.1", f"{name} publishes {container} beyond this host"
    assert not published("locust-worker"), "--scale needs workers without host ports"
    # Both Tritons publish the same host ports: clients keep one URL, one runs at a time.
    assert set(published("triton")) == set(published("triton-cpu"))


def test_every_secret_a_service_reads_is_declared():
    for name, service in SERVICES.items():
        for secret in service.get("secrets", []):
            assert secret in COMPOSE["secrets"], (name, secret)
    assert SERVICES["triton-cpu"]["secrets"] == ["maas_admin_key"]


def test_the_cpu_service_command_is_one_maas_serve_accepts():
    args = command("triton-cpu")
    assert args[:2] == ["maas", "serve"]
    params = serve_params(args[2:])
    assert params["host"] == params["metrics_host"] == "0.0.0.0"  # reachable by Prometheus
    assert not params["model_control"], "models must not be loadable through the API"
    assert str(params["key_file"]) == "/run/secrets/maas_admin_key"
    assert host_path("triton-cpu", str(params["repository"])) == PROJECT_ROOT / "model_repository"
    ports = {container for *_, container in published("triton-cpu")}
    assert ports == {params["http_port"], params["grpc_port"], params["metrics_port"]}
    # The image's own CMD is a command `maas serve` accepts too.
    image_cmd = dockerfile_json(DOCKERFILES["triton-cpu"], "CMD")
    assert image_cmd[:2] == ["maas", "serve"]
    serve_params(image_cmd[2:])
    health = " ".join(SERVICES["triton-cpu"]["healthcheck"]["test"])
    assert f"localhost:{params['http_port']}/v2/health/ready" in health


def test_the_gpu_image_is_triton_24_10():
    """24.10 holds Triton 2.51, the core inside nvidia-pytriton 0.7.0 that the tests run."""
    dockerfile = (PROJECT_ROOT / SERVICES["triton"]["build"] / "Dockerfile").read_text()
    (image,) = re.findall(r"^FROM\s+(\S+)", dockerfile, flags=re.MULTILINE)
    assert image == "nvcr.io/nvidia/tritonserver:24.10-py3"


def test_the_project_images_install_the_cpu_torch_the_server_extra_pins():
    extras = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    (torch,) = [r for r in extras["optional-dependencies"]["server"] if r.startswith("torch==")]
    cpu = DOCKERFILES["triton-cpu"].read_text()
    assert f"--index-url https://download.pytorch.org/whl/cpu {torch}+cpu" in cpu
    assert 'pip install ".[server]"' in cpu
    assert 'pip install ".[loadtest]"' in DOCKERFILES["locust-master"].read_text()
    for path in DOCKERFILES.values():
        text = path.read_text()
        assert re.search(r"^FROM python:3\.11-slim", text, flags=re.MULTILINE), path.name
        users = re.findall(r"^USER\s+(\S+)", text, flags=re.MULTILINE)
        assert users and not users[-1].startswith(("0", "root")), path.name
        assert re.search(r"^HEALTHCHECK ", text, flags=re.MULTILINE), path.name


def test_the_build_context_lets_in_only_what_the_dockerfiles_copy():
    rules = (PROJECT_ROOT / ".dockerignore").read_text().split("\n")
    rules = [r.strip() for r in rules if r.strip() and not r.startswith("#")]
    assert rules[0] == "*", "an allow-list: .venv, model_repository/ and keys stay out"
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    for path in DOCKERFILES.values():
        for line in re.findall(r"^COPY\s+(.+)$", path.read_text(), flags=re.MULTILINE):
            for source in line.split()[:-1]:
                assert source in allowed, f"{path.name} copies {source}, which .dockerignore drops"
                assert (PROJECT_ROOT / source).exists(), source
    assert not allowed & {".venv", "model_repository", ".git", "reports"}


def locust_options(args: list[str]) -> dict[str, Any]:
    """Locust's own parser on args, in a child process: importing locust monkey-patches the
    standard library (gevent), which this test process must not get."""
    script = (
        "import json, sys\n"
        "from locust.argument_parser import get_parser\n"
        "options = get_parser(default_config_files=()).parse_args(sys.argv[1:])\n"
        "print(json.dumps({k: v for k, v in vars(options).items()"
        " if isinstance(v, (str, int, bool, type(None)))}))\n"
    )
    run = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True,
                         timeout=60, cwd=PROJECT_ROOT / "loadtest")  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    return json.loads(run.stdout.splitlines()[-1])


def test_the_locust_services_run_the_locustfile_against_triton():
    master_args, worker_args = command("locust-master"), command("locust-worker")
    assert master_args[0] == worker_args[0] == "locust"
    master, worker = locust_options(master_args[1:]), locust_options(worker_args[1:])
    assert master["master"] and worker["worker"]
    assert master["host"] == "http://triton:8000"
    assert worker["master_host"] == "locust-master"
    assert published("locust-master") == [("127.0.0.1", 8089, master["web_port"])]
    for options in (master, worker):
        assert (PROJECT_ROOT / options["locustfile"]).is_file()
    for key in ("image", "build"):
        assert SERVICES["locust-worker"][key] == SERVICES["locust-master"][key], key
    assert "container_name" not in SERVICES["locust-worker"]


def test_prometheus_scrapes_the_metrics_port_of_both_tritons():
    config = yaml.safe_load((OBSERVABILITY / "prometheus.yml").read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "triton"]
    targets = {t for group in job["static_configs"] for t in group["targets"]}
    metrics_port = {"triton": 8002}  # NVIDIA's default, which compose's command keeps
    metrics_port["triton-cpu"] = serve_params(command("triton-cpu")[2:])["metrics_port"]
    assert targets == {f"{name}:{metrics_port[name]}" for name in TRITONS}
    for name in TRITONS:
        assert ("127.0.0.1", metrics_port[name], metrics_port[name]) in published(name)
    for rule_file in config["rule_files"]:
        assert host_path("prometheus", rule_file) == OBSERVABILITY / "alerts.yml"
    assert host_path("prometheus", "/etc/prometheus/prometheus.yml").is_file()


def test_prometheus_sends_its_alerts_to_alertmanager_which_routes_them():
    """Alerts with no alerting section reached nobody: Prometheus sends them to the compose
    Alertmanager, whose route ends at a receiver the file tells how to point at a team."""
    config = yaml.safe_load((OBSERVABILITY / "prometheus.yml").read_text())
    (manager,) = config["alerting"]["alertmanagers"]
    (target,) = [t for group in manager["static_configs"] for t in group["targets"]]
    host, port = target.split(":")
    assert host == "alertmanager" and "observability" in SERVICES[host]["profiles"]
    assert ("127.0.0.1", int(port), int(port)) in published(host)
    routes = yaml.safe_load(host_path(host, "/etc/alertmanager/alertmanager.yml").read_text())
    receivers = {r["name"] for r in routes["receivers"]}
    assert routes["route"]["receiver"] in receivers
    rules = yaml.safe_load((OBSERVABILITY / "alerts.yml").read_text())
    names = {r["alert"] for group in rules["groups"] for r in group["rules"]}
    for rule in routes.get("inhibit_rules", []):  # inhibitions name alerts that exist
        for matcher in rule["source_matchers"]:
            key, value = (part.strip() for part in matcher.split("="))
            assert key != "alertname" or value in names, matcher


def test_grafana_provisioning_points_at_files_that_exist():
    provisioning = host_path("grafana", "/etc/grafana/provisioning")
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    (source,) = datasources["datasources"]
    assert source["url"] == "http://prometheus:9090"  # the service, inside the network
    assert any(c == 9090 for *_, c in published("prometheus"))
    providers = yaml.safe_load((provisioning / "dashboards" / "maas.yml").read_text())
    for provider in providers["providers"]:
        assert host_path("grafana", provider["options"]["path"]) == DASHBOARDS
    dashboards = sorted(DASHBOARDS.glob("*.json"))
    assert [p.name for p in dashboards] == ["triton.json"]
    for path in dashboards:
        dashboard = json.loads(path.read_text())
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids)), path.name
        for panel in dashboard["panels"]:
            if panel["type"] != "row":
                assert panel["datasource"]["uid"] == source["uid"], panel["title"]
    assert len(dashboard_targets()) >= 12


def test_grafana_has_no_anonymous_access_and_no_committed_password():
    grafana = SERVICES["grafana"]
    env = grafana["environment"]
    assert env["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert "GF_SECURITY_ADMIN_PASSWORD" not in env
    secret = PurePosixPath(env["GF_SECURITY_ADMIN_PASSWORD__FILE"])
    assert secret.parent == PurePosixPath("/run/secrets") and secret.name in grafana["secrets"]
    assert "${HOME}" in COMPOSE["secrets"][secret.name]["file"]  # outside the repository


def test_the_dashboard_and_alerts_are_valid_promql():
    promql_parser = pytest.importorskip("promql_parser", reason="the deploy extra's parser")
    queries = observability_promql()
    assert len(queries) >= 20
    for query in queries:
        promql_parser.parse(query)  # ValueError with the position on a syntax error
    used = " ".join(queries)
    for name in ("nv_inference_queue_duration_us", "nv_inference_exec_count",
                 "nv_gpu_utilization", "nv_cpu_utilization", "maas_npc_cache_hits"):  # fmt: skip
        assert name in used, name
