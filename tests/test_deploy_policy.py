"""A policy scan (checkov) of the rendered Kubernetes manifests and the Dockerfiles: no failed
check, and every skipped one says why where it is skipped and in docs/deploy.md.

checkov pins its own dependencies (boto3, an old packaging, ...), so it runs from a virtualenv
of its own in the cache, outside the project's, made once by scripts/checkov.sh.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from maas.paths import PROJECT_ROOT
from tests.deploy_files import TRITON_VARIANTS, kubectl, kustomize

CHECKOV = "checkov==3.3.30"
DOCKERFILES = sorted((PROJECT_ROOT / "docker").glob("*Dockerfile"))


@pytest.fixture(scope="module")
def checkov() -> Path:
    """scripts/checkov.sh: its own virtualenv in the cache (test.sh starts the install early)."""
    script = PROJECT_ROOT / "scripts" / "checkov.sh"
    run = subprocess.run([str(script), "--version"], capture_output=True, text=True, timeout=900)
    assert run.returncode == 0 and run.stdout.strip() == CHECKOV.split("==")[1], run.stderr
    return script


def scan(checkov: Path, framework: str, path: Path) -> dict:
    run = subprocess.run(
        [str(checkov), "--framework", framework, "--file", str(path), "--output", "json",
         "--compact", "--skip-download"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode in (0, 1), run.stderr[-2000:]
    found = json.loads(run.stdout or "{}")
    reports = found if isinstance(found, list) else [found]
    results = {"failed_checks": [], "skipped_checks": [], "passed_checks": []}
    for report in reports:
        for key in results:
            results[key] += report.get("results", {}).get(key, [])
    return results


def rendered(variant: str, folder: Path) -> Path:
    """The variant as kustomize renders it, in a file for checkov."""
    if not kubectl():
        pytest.skip("kubectl (its built-in kustomize renders deploy/k8s) is not installed")
    path = folder / f"{variant.replace('/', '-')}.yaml"
    path.write_text(kustomize(variant))
    return path


def documented_skips() -> set[str]:
    text = (PROJECT_ROOT / "docs" / "deploy.md").read_text()
    return set(re.findall(r"CKV2?_[A-Z0-9]+_\d+", text))


def _failed(results: dict) -> list[str]:
    return [f"{c['check_id']} {c['check_name']} ({c['resource']})"
            for c in results["failed_checks"]]  # fmt: skip


def assert_clean(results: dict) -> None:
    """Checks ran, none failed, and every skip says why, inline and in docs/deploy.md."""
    assert results["passed_checks"], "checkov checked nothing"
    assert not _failed(results), "\n".join(_failed(results))
    for skipped in results["skipped_checks"]:
        assert len(skipped["check_result"].get("suppress_comment", "").strip()) > 10, skipped
        assert skipped["check_id"] in documented_skips(), f"{skipped['check_id']} not in docs"


@pytest.mark.parametrize("variant", TRITON_VARIANTS)
def test_manifests_pass_the_policy_scan(checkov, variant, tmp_path):
    assert_clean(scan(checkov, "kubernetes", rendered(variant, tmp_path)))


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfiles_pass_the_policy_scan(checkov, dockerfile):
    assert_clean(scan(checkov, "dockerfile", dockerfile))
