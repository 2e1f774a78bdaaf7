"""What can be checked from the repository's files alone: configs, versions, labels, ensembles."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from maas.model_config import ConfigError, read_config
from maas.paths import version_dirs
from maas_backends.common import BackendError, ModelSpec

DEFAULT_FILENAMES = {
    "pytorch": "model.pt",
    "tensorflow": "model.savedmodel",
    "onnxruntime": "model.onnx",
    "python": "model.py",
}
PLATFORM_BACKENDS = {
    "pytorch_libtorch": "pytorch",
    "tensorflow_savedmodel": "tensorflow",
    "onnxruntime_onnx": "onnxruntime",
}


@dataclass
class ModelEntry:
    """One model folder: its parsed config (or why not), backend and the versions it serves."""

    name: str
    folder: Path
    config: dict[str, Any] = field(default_factory=dict)
    error: str = ""

    @property
    def platform(self) -> str:
        return self.config.get("platform", "")

    @property
    def backend(self) -> str:
        """pytorch, tensorflow, onnxruntime, python, ensemble, or the unknown name itself."""
        if self.platform == "ensemble":
            return "ensemble"
        return PLATFORM_BACKENDS.get(self.platform) or self.config.get("backend", self.platform)

    @property
    def spec(self) -> ModelSpec:
        return ModelSpec.from_config(self.config)

    def artifact(self, version_dir: Path) -> Path:
        filename = self.config.get("default_model_filename") or DEFAULT_FILENAMES.get(
            self.backend, ""
        )
        return version_dir / filename

    def served_versions(self) -> list[Path]:
        """The version folders Triton's version_policy serves (default: the latest one)."""
        found = version_dirs(self.folder)
        policy = self.config.get("version_policy", {})
        if "all" in policy:
            return found
        if "specific" in policy:
            wanted = {str(v) for v in policy["specific"].get("versions", [])}
            return [v for v in found if v.name in wanted]
        count = int(policy.get("latest", {}).get("num_versions", 1))
        return found[-count:] if count > 0 else []


def discover(repository: Path) -> list[ModelEntry]:
    entries = []
    for config_path in sorted(repository.glob("*/config.pbtxt")):
        entry = ModelEntry(name=config_path.parent.name, folder=config_path.parent)
        try:
            entry.config = read_config(config_path)
        except ConfigError as error:
            entry.error = str(error)
            entries.append(entry)
            continue
        declared = entry.config.setdefault("name", entry.name)  # Triton's default: the folder
        if declared != entry.name:
            entry.error = f"config name '{declared}' differs from its folder '{entry.name}'"
        elif not entry.platform and not entry.config.get("backend"):
            entry.error = "the config names neither a platform nor a backend"
        else:
            try:
                ModelSpec.from_config(entry.config)
            except BackendError as error:
                entry.error = str(error)
        entries.append(entry)
    return entries


def check_labels(entry: ModelEntry) -> list[str]:
    """Problems with label files: missing, or not one line per class of the output."""
    problems = []
    for output in entry.config.get("output", []):
        filename = output.get("label_filename")
        if not filename:
            continue
        path = entry.folder / filename
        if not path.is_file():
            problems.append(f"output '{output['name']}': label file {filename} is missing")
            continue
        labels = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        dims = [int(d) for d in output.get("dims", [])]
        if dims and dims[-1] > 0 and len(labels) != dims[-1]:
            problems.append(
                f"output '{output['name']}': {filename} has {len(labels)} labels for "
                f"{dims[-1]} classes"
            )
    return problems


def _tensors(config: dict[str, Any], side: str) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in config.get(side, [])}


def check_ensemble(entry: ModelEntry, models: dict[str, ModelEntry]) -> list[str]:
    """The wiring Triton checks when it loads an ensemble: steps name existing models and
    their tensors, every consumed tensor is produced first, types agree across each wire."""
    problems: list[str] = []
    steps = entry.config.get("ensemble_scheduling", {}).get("step", [])
    if not steps:
        return ["an ensemble needs ensemble_scheduling with at least one step"]
    # tensor name -> (data_type, who produces it)
    available = {
        name: (t["data_type"], "ensemble input")
        for name, t in _tensors(entry.config, "input").items()
    }
    for number, step in enumerate(steps, 1):
        target = models.get(step.get("model_name", ""))
        where = f"step {number} ({step.get('model_name', '?')})"
        if target is None or target.error:
            problems.append(f"{where}: no loadable model of that name in the repository")
            continue
        inputs, outputs = _tensors(target.config, "input"), _tensors(target.config, "output")
        for model_input, ensemble_tensor in step.get("input_map", {}).items():
            if model_input not in inputs:
                problems.append(f"{where}: the model has no input '{model_input}'")
            elif ensemble_tensor not in available:
                problems.append(
                    f"{where}: input '{model_input}' reads '{ensemble_tensor}', which no "
                    "ensemble input or earlier step provides"
                )
            elif available[ensemble_tensor][0] != inputs[model_input]["data_type"]:
                problems.append(
                    f"{where}: '{ensemble_tensor}' is {available[ensemble_tensor][0]} from the "
                    f"{available[ensemble_tensor][1]}, input '{model_input}' wants "
                    f"{inputs[model_input]['data_type']}"
                )
        unmapped = set(inputs) - set(step.get("input_map", {}))
        if unmapped:
            problems.append(f"{where}: inputs {sorted(unmapped)} are not mapped")
        for model_output, ensemble_tensor in step.get("output_map", {}).items():
            if model_output not in outputs:
                problems.append(f"{where}: the model has no output '{model_output}'")
                continue
            available[ensemble_tensor] = (outputs[model_output]["data_type"], where)
    for name, tensor in _tensors(entry.config, "output").items():
        if name not in available:
            problems.append(f"ensemble output '{name}' is produced by no step")
        elif available[name][0] != tensor["data_type"]:
            problems.append(
                f"ensemble output '{name}' is {tensor['data_type']} in the config, "
                f"{available[name][0]} from {available[name][1]}"
            )
    return problems
