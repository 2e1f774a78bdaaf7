"""Runs one artifact inside an NGC-24.10 virtualenv (the image's Python and framework version).

Started by `maas validate --runtime ngc-24.10` as `python ngc_probe.py REQUEST.json` with the
project root on PYTHONPATH; it needs only numpy and the one framework of that virtualenv, and
must stay valid Python 3.10 (the image's). The runners are the same classes our Python-based
backends use: loading there performs the native backends' config checks; a python-backend
model.py is compiled and imported as the image's stub would import it.
Prints one JSON object: ok, error, versions.
"""

from __future__ import annotations

import importlib.util
import json
import platform
import sys
import types
from pathlib import Path


def _versions(framework: str) -> dict[str, str]:
    import numpy

    found = {"python": platform.python_version(), "numpy": numpy.__version__}
    if framework == "pytorch":
        import torch

        found["torch"] = torch.__version__
    elif framework == "tensorflow":
        import tensorflow

        found["tensorflow"] = tensorflow.__version__
    elif framework == "onnxruntime":
        import onnxruntime

        found["onnxruntime"] = onnxruntime.__version__
    return found


def _runner(framework: str, artifact: Path, spec):
    if framework == "pytorch":
        from maas_backends.torchscript import TorchScriptRunner

        return TorchScriptRunner(artifact, spec)
    if framework == "tensorflow":
        from maas_backends.savedmodel import SavedModelRunner

        return SavedModelRunner(artifact, spec)
    from maas_backends.onnx import OnnxRunner

    return OnnxRunner(artifact, spec)


def import_python_model(model_py: Path) -> None:
    """Compile with this (the image's) Python and import as the stub does; a stand-in for
    triton_python_backend_utils, which exists only inside the stub."""
    source = model_py.read_text(encoding="utf-8")
    compile(source, str(model_py), "exec")
    sys.modules.setdefault("triton_python_backend_utils", types.ModuleType("pb_utils_stand_in"))
    # No __pycache__ in the version folder: a server polling the repository would reload the model
    sys.dont_write_bytecode = True
    spec = importlib.util.spec_from_file_location("model", model_py)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    model_class = getattr(module, "TritonPythonModel", None)
    if model_class is None or not callable(getattr(model_class, "execute", None)):
        raise RuntimeError(f"{model_py} has no class TritonPythonModel with an execute method")


def probe(request: dict) -> dict:
    framework = request["framework"]
    result: dict = {"ok": False, "error": "", "versions": {}}
    try:
        result["versions"] = _versions(framework)
        artifact = Path(request["artifact"])
        if framework == "python":
            import_python_model(artifact)
            result["ok"] = True
            return result
        import numpy as np

        from maas_backends.common import BackendError, ModelSpec, execute_batched

        spec = ModelSpec.from_config(request["config"])
        runner = _runner(framework, artifact, spec)
        with np.load(request["inputs"], allow_pickle=True) as data:
            inputs = {name: data[name] for name in data.files}
        (outputs,) = execute_batched(spec, [inputs], runner.run)
        if isinstance(outputs, BackendError):
            raise outputs
        np.savez(request["outputs"], **outputs)
        result["ok"] = True
    except Exception as error:  # reported to the caller, who prints it in its table
        from maas_backends.common import BackendError, framework_message

        result["error"] = (
            str(error) if isinstance(error, BackendError) else framework_message(error)
        )
    return result


def main() -> None:
    request = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    print(json.dumps(probe(request)))


if __name__ == "__main__":
    main()
