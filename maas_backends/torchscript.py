"""TorchScript, run the way Triton's native libtorch backend runs it.

Naming rules (libtorch backend, 24.10): config inputs named like the forward() arguments are
passed by name; otherwise inputs named `NAME__<i>` go to argument i; otherwise config order.
Outputs named `NAME__<i>` take element i of the returned tuple; otherwise config order.
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import numpy as np
import torch

from maas_backends.common import BackendError, Inputs, ModelSpec, Outputs, default_intra_op_threads

_INDEXED = re.compile(r"^.+__(\d+)$")

NUMPY_TO_TORCH = {
    np.dtype(np.bool_): torch.bool,
    np.dtype(np.uint8): torch.uint8,
    np.dtype(np.int8): torch.int8,
    np.dtype(np.int16): torch.int16,
    np.dtype(np.int32): torch.int32,
    np.dtype(np.int64): torch.int64,
    np.dtype(np.float16): torch.float16,
    np.dtype(np.float32): torch.float32,
    np.dtype(np.float64): torch.float64,
}


def _indices(names: list[str]) -> list[int] | None:
    """Positions from `NAME__i` names, if every name has one and they form 0..n-1."""
    found = [_INDEXED.match(n) for n in names]
    if not all(found):
        return None
    positions = [int(m.group(1)) for m in found if m]
    return positions if sorted(positions) == list(range(len(names))) else None


def _output_indices(names: list[str]) -> list[int] | None:
    """Outputs `NAME__i` take element i, contiguous or not (a config may expose a subset)."""
    found = [_INDEXED.match(n) for n in names]
    if not all(found):
        return None
    positions = [int(m.group(1)) for m in found if m]
    return positions if len(set(positions)) == len(positions) else None


def argument_order(names: list[str], arguments: list[str]) -> list[str]:
    """Config input names in the order forward() takes them: by name, else by `NAME__i`,
    else in config order."""
    if set(names) == set(arguments):
        return arguments
    positions = _indices(names)
    if positions is not None:
        return [name for _, name in sorted(zip(positions, names))]
    return names


def forward_argument_names(module: torch.jit.ScriptModule) -> list[str]:
    arguments = module.forward.schema.arguments  # type: ignore[attr-defined]
    return [a.name for a in arguments if a.name != "self"]


class TorchScriptRunner:
    """Loads model.pt, maps config tensors to forward() arguments, runs under inference mode."""

    def __init__(
        self,
        path: Path,
        spec: ModelSpec,
        *,
        device: str = "cpu",
        intra_op_threads: int | None = None,
        inter_op_threads: int | None = None,
    ) -> None:
        self.spec = spec
        for tensor in (*spec.inputs, *spec.outputs):
            if tensor.dtype not in NUMPY_TO_TORCH:
                raise BackendError(
                    f"model '{spec.name}': tensor '{tensor.name}' of {tensor.triton_type} is not "
                    "supported by the pytorch backend",
                    client_error=False,
                )
        intra = intra_op_threads or spec.parameter_int("INTRA_OP_THREAD_COUNT")
        inter = inter_op_threads or spec.parameter_int("INTER_OP_THREAD_COUNT")
        torch.set_num_threads(intra or default_intra_op_threads(spec))
        with contextlib.suppress(RuntimeError):  # already set in this process; harmless
            torch.set_num_interop_threads(inter or 1)
        self.device = torch.device(device)
        if not path.exists():
            raise BackendError(f"model '{spec.name}': {path} not found", client_error=False)
        self.module = torch.jit.load(str(path), map_location=self.device).eval()
        self.argument_order = self._map_inputs(forward_argument_names(self.module))
        names = [t.name for t in spec.outputs]
        self.output_positions = _output_indices(names) or list(range(len(names)))

    def _map_inputs(self, arguments: list[str]) -> list[str]:
        """Config input names in the order forward() takes them."""
        names = [t.name for t in self.spec.inputs]
        if len(arguments) != len(names):
            raise BackendError(
                f"unable to load model '{self.spec.name}', configuration expects {len(names)} "
                f"inputs, model provides {len(arguments)} (forward arguments: {arguments})",
                client_error=False,
            )
        return argument_order(names, arguments)

    def run(self, inputs: Inputs) -> Outputs:
        tensors = [
            torch.from_numpy(np.require(inputs[name], requirements=["C", "W"])).to(self.device)
            for name in self.argument_order
        ]
        with torch.inference_mode():
            result = self.module(*tensors)
        if isinstance(result, torch.Tensor):
            result = (result,)
        if not isinstance(result, tuple | list):
            raise BackendError(
                f"model '{self.spec.name}' returned {type(result).__name__}; expected a tensor "
                "or a tuple of tensors",
                client_error=False,
            )
        outputs: Outputs = {}
        for spec, position in zip(self.spec.outputs, self.output_positions):
            if position >= len(result):
                raise BackendError(
                    f"output '{spec.name}' asks for element {position} but the model returned "
                    f"{len(result)}",
                    client_error=False,
                )
            outputs[spec.name] = result[position].detach().cpu().numpy()
        return outputs
