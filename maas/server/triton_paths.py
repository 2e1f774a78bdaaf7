"""Where the wheel keeps Triton's binary, libraries and Python backend (see shared FACTS)."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path

from maas.errors import TritonNotInstalledError


@dataclass(frozen=True, kw_only=True)
class TritonInstall:
    binary: Path
    library_dir: Path
    python_backend_dir: Path
    python_stub: Path


def find_triton() -> TritonInstall:
    spec = importlib.util.find_spec("pytriton")
    if spec is None or spec.origin is None:
        raise TritonNotInstalledError(
            "Triton is not installed: install the server extra (pip install -e '.[server]'), "
            "which brings the tritonserver binary inside nvidia-pytriton."
        )
    package = Path(spec.origin).parent
    root = package / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    install = TritonInstall(
        binary=root / "bin" / "tritonserver",
        library_dir=package.parent / "nvidia_pytriton.libs",
        python_backend_dir=root / "backends" / "python",
        python_stub=root / "python_backend_stubs" / version / "triton_python_backend_stub",
    )
    for path in (install.binary, install.python_backend_dir, install.python_stub):
        if not path.exists():
            raise TritonNotInstalledError(f"nvidia-pytriton is incomplete: {path} is missing")
    return install
