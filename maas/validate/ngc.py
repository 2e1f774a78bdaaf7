"""The framework versions inside nvcr.io/nvidia/tritonserver:24.10-py3, in isolated virtualenvs.

We cannot run the image here, so each native backend's framework is installed at the image's
version into a virtualenv of its own (cached under ~/.cache/maas/runtimes/), with the image's
Python where this machine has it, and the artifact is run there by `ngc_probe.py`.

Sources (triton-inference-server/server at tag v2.51.0 = branch r24.10, commit e0f0734d):
- build.py:76 TRITON_VERSION_MAP["2.51.0"]: ONNX Runtime 1.19.2.
- build.py:637-641: libtorch is taken from nvcr.io/nvidia/pytorch:24.10-py3, PyTorch
  2.5.0a0+e000cf0ad9 (docs/introduction/compatibility.md of v2.53.0, line 40, lists that build
  as 2.5.0a0+e000cf0ad9.nv24.10). PyPI's nearest release is torch 2.5.0 (CUDA 12.4 build only;
  it runs on a CPU machine).
- build.py:786-799: the TensorFlow backend is built from nvcr.io/nvidia/tensorflow:24.10-tf2-py3,
  TF2 only (tensorflow_backend r24.10 CMakeLists.txt:39). Its version, 2.16.1, is inferred: the
  24.08 container reports 2.16.1+nv24.8 and 2.17.0 first appears as 2.17.0+nv24.12 (NVIDIA's
  TensorFlow release notes, rel-24-10.html, is the page to confirm it). PyPI: tensorflow-cpu.
- python_backend r24.10 README.md (stub for Python 3.10) and CMakeLists.txt:88-95 (pybind11
  v2.10.0, which predates NumPy 2); build.py:1404 installs "numpy<2" unpinned, which in
  October 2024 resolved to 1.26.4. The image is Ubuntu 22.04 (build.py:1574-1578).
"""

from __future__ import annotations

import fcntl
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from maas.errors import MaasError
from maas.paths import PROJECT_ROOT, cache_root

RUNTIME = "ngc-24.10"
IMAGE_PYTHON = "3.10"
NUMPY = "numpy==1.26.4"
DOCKERFILE = PROJECT_ROOT / "docker" / "Dockerfile"
PROBE = Path(__file__).with_name("ngc_probe.py")
PROBE_TIMEOUT_S = 600


# Each native backend's framework as PyPI stand-ins at the image's versions (sources above).
FRAMEWORKS: dict[str, tuple[str, ...]] = {
    "pytorch": ("torch==2.5.0", NUMPY),
    "tensorflow": ("tensorflow-cpu==2.16.1", "keras==3.12.4", NUMPY),
    "onnxruntime": ("onnxruntime==1.19.2", NUMPY),
    "python": (NUMPY,),  # plus docker/Dockerfile's pip installs, read at run time
}


class RuntimeSetupError(MaasError):
    """An NGC twin virtualenv could not be created."""


def dockerfile_packages(path: Path = DOCKERFILE) -> tuple[str, ...]:
    """The `pip install` requirements that docker/Dockerfile adds to the image."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return ()
    text = text.replace("\\\n", " ")
    found: list[str] = []
    for match in re.finditer(r"pip3? install ([^\n&;]+)", text):
        found += [word for word in match.group(1).split() if not word.startswith("-")]
    return tuple(found)


def requirements(framework: str) -> tuple[str, ...]:
    base = FRAMEWORKS[framework]
    if framework != "python":
        return base
    extra = dockerfile_packages()
    pinned_numpy = any(r.split("=")[0].split("<")[0] == "numpy" for r in extra)
    return (*extra, *(() if pinned_numpy else base))


@functools.cache
def image_python() -> str:
    """The image's Python (3.10) if this machine has it, else this one (said in the table).
    Found once per process: it is asked for every artifact validated."""
    override = os.environ.get("MAAS_NGC_PYTHON")
    if override:
        return override
    candidates = [
        shutil.which(f"python{IMAGE_PYTHON}"),
        *sorted(
            str(p)
            for p in (Path.home() / ".pyenv" / "versions").glob(f"{IMAGE_PYTHON}.*/bin/python3")
        ),
    ]
    for candidate in candidates:
        if candidate and _runs(candidate):
            return candidate
    return sys.executable


def _runs(python: str) -> bool:
    try:
        return (
            subprocess.run([python, "-c", "pass"], capture_output=True, timeout=30).returncode == 0
        )
    except (OSError, subprocess.TimeoutExpired):
        return False


def venv_dir(framework: str) -> Path:
    return cache_root() / "runtimes" / RUNTIME / framework


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_venv(framework: str, log=print) -> Path:
    """The framework's virtualenv, created once; re-created when its requirements change."""
    folder = venv_dir(framework)
    wanted = {"python": image_python(), "requirements": list(requirements(framework))}
    stamp = folder / "maas-runtime.json"
    with _locked(folder.parent / f".{framework}.lock"):
        try:
            if json.loads(stamp.read_text()) == wanted:
                return folder / "bin" / "python"
        except (OSError, ValueError):
            pass
        shutil.rmtree(folder, ignore_errors=True)
        log(
            f"Creating the {RUNTIME} {framework} runtime in {folder} "
            f"({', '.join(wanted['requirements'])}); once, then cached"
        )
        try:
            subprocess.run([wanted["python"], "-m", "venv", str(folder)], check=True)
            pip = [str(folder / "bin" / "python"), "-m", "pip"]
            subprocess.run(
                [*pip, "install", "--progress-bar", "on", *wanted["requirements"]],
                check=True,
                stdout=sys.stderr,  # pip's own progress, out of the way of the table
            )
        except (OSError, subprocess.CalledProcessError) as error:
            shutil.rmtree(folder, ignore_errors=True)
            raise RuntimeSetupError(
                f"could not create the {RUNTIME} {framework} runtime: {error}"
            ) from None
        stamp.write_text(json.dumps(wanted))
    return folder / "bin" / "python"


@dataclass
class ProbeResult:
    ok: bool
    error: str
    versions: dict[str, str]
    outputs: dict[str, np.ndarray]


def run_probe(
    framework: str,
    artifact: Path,
    config: dict[str, Any] | None = None,
    inputs: dict[str, np.ndarray] | None = None,
    log=print,
) -> ProbeResult:
    """Run `artifact` with the image's framework version; outputs for the given inputs."""
    python = ensure_venv(framework, log)
    with tempfile.TemporaryDirectory(prefix="maas-ngc-") as scratch:
        folder = Path(scratch)
        request = {
            "framework": framework,
            "artifact": str(artifact),
            "config": config or {},
            "inputs": str(folder / "inputs.npz"),
            "outputs": str(folder / "outputs.npz"),
        }
        np.savez(folder / "inputs.npz", **(inputs or {}))
        (folder / "request.json").write_text(json.dumps(request))
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("PYTHON", "VIRTUAL_ENV"))
        }
        env.update(PYTHONPATH=str(PROJECT_ROOT), PYTHONNOUSERSITE="1", CUDA_VISIBLE_DEVICES="")
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        try:
            done = subprocess.run(
                [str(python), str(PROBE), str(folder / "request.json")],
                capture_output=True,
                text=True,
                env=env,
                timeout=PROBE_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            return ProbeResult(False, f"no answer within {PROBE_TIMEOUT_S} s", {}, {})
        lines = done.stdout.strip().splitlines()
        try:
            answer = json.loads(lines[-1])
        except (IndexError, ValueError):
            tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
            return ProbeResult(False, f"probe exited {done.returncode}: {' | '.join(tail)}", {}, {})
        outputs: dict[str, np.ndarray] = {}
        if answer["ok"] and (folder / "outputs.npz").exists():
            with np.load(folder / "outputs.npz", allow_pickle=True) as data:
                outputs = {name: data[name] for name in data.files}
        return ProbeResult(answer["ok"], answer["error"], answer["versions"], outputs)
