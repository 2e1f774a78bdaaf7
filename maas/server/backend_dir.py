"""Assemble the backend directory the wheel's Triton gets: its Python backend plus ours.

Triton resolves a model's backend `B` to `<dir>/B/libtriton_B.so` and, failing that, to
`<dir>/B/model.py`, run by the Python backend. The wheel ships only the Python backend, so we
add `pytorch/`, `tensorflow/` and `onnxruntime/` folders holding our model.py adapters: the
same repository then loads here and in the NGC image with its native backends. The adapters'
package, `maas_backends`, is copied whole beside them, so the server's Python needs only the
frameworks, not this project. Files are copied, not linked: Triton refuses a backend library
whose real path leaves the directory.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import shutil
import tempfile
from pathlib import Path

import maas_backends
from maas.paths import cache_root
from maas.server.triton_paths import TritonInstall

PYTHON_BASED_BACKENDS = ("pytorch", "tensorflow", "onnxruntime")
PACKAGE_DIR = Path(maas_backends.__file__).resolve().parent
ADAPTERS_DIR = PACKAGE_DIR / "triton"


def _package_files() -> list[Path]:
    return sorted(p for p in PACKAGE_DIR.rglob("*.py") if "__pycache__" not in p.parts)


def _fingerprint(install: TritonInstall) -> str:
    digest = hashlib.sha256()
    digest.update(str(install.python_backend_dir).encode())
    digest.update(importlib.metadata.version("nvidia-pytriton").encode())
    digest.update(install.python_stub.read_bytes())
    digest.update((install.python_backend_dir / "libtriton_python.so").read_bytes())
    for path in _package_files():
        digest.update(str(path.relative_to(PACKAGE_DIR)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def assemble_backend_dir(install: TritonInstall, root: Path | None = None) -> Path:
    """Return a ready backend directory, building it once per content fingerprint."""
    root = root or cache_root() / "triton-backends"
    target = root / _fingerprint(install)
    if (target / "python" / "triton_python_backend_stub").exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=root))
    python_dir = staging / "python"
    python_dir.mkdir()
    for item in install.python_backend_dir.iterdir():
        if item.is_file():
            shutil.copy2(item, python_dir / item.name)
    shutil.copy2(install.python_stub, python_dir / "triton_python_backend_stub")
    for name in PYTHON_BASED_BACKENDS:
        (staging / name).mkdir()
        shutil.copy2(ADAPTERS_DIR / name / "model.py", staging / name / "model.py")
    for path in _package_files():  # what the adapters import, found beside them
        copy = staging / "maas_backends" / path.relative_to(PACKAGE_DIR)
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, copy)
    try:
        staging.rename(target)
    except OSError:  # another process assembled the same fingerprint first
        shutil.rmtree(staging, ignore_errors=True)
    return target
