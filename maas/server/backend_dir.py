"""Assemble the backend directory the wheel's Triton gets: its Python backend plus ours.

Triton resolves a model's backend `B` to `<dir>/B/libtriton_B.so` and, failing that, to
`<dir>/B/model.py`, run by the Python backend. The wheel ships only the Python backend, so we
add `pytorch/`, `tensorflow/` and `onnxruntime/` folders holding our model.py adapters: the
same repository then loads here and in the NGC image with its native backends. Files are
copied, not linked: Triton refuses a backend library whose real path leaves the directory.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import shutil
import tempfile
from pathlib import Path

from maas.paths import cache_root
from maas.server.triton_paths import TritonInstall

PYTHON_BASED_BACKENDS = ("pytorch", "tensorflow", "onnxruntime")
ADAPTERS_DIR = Path(__file__).resolve().parent.parent / "backends" / "triton"


def _fingerprint(install: TritonInstall) -> str:
    digest = hashlib.sha256()
    digest.update(str(install.python_backend_dir).encode())
    digest.update(importlib.metadata.version("nvidia-pytriton").encode())
    digest.update(install.python_stub.read_bytes())
    digest.update((install.python_backend_dir / "libtriton_python.so").read_bytes())
    for name in PYTHON_BASED_BACKENDS:
        digest.update((ADAPTERS_DIR / name / "model.py").read_bytes())
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
    try:
        staging.rename(target)
    except OSError:  # another process assembled the same fingerprint first
        shutil.rmtree(staging, ignore_errors=True)
    return target
