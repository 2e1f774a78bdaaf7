"""What all our Python-based backends share: the model config, dtypes, batching, threads."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

TRITON_TO_NUMPY: dict[str, type] = {
    "TYPE_BOOL": np.bool_,
    "TYPE_UINT8": np.uint8,
    "TYPE_UINT16": np.uint16,
    "TYPE_UINT32": np.uint32,
    "TYPE_UINT64": np.uint64,
    "TYPE_INT8": np.int8,
    "TYPE_INT16": np.int16,
    "TYPE_INT32": np.int32,
    "TYPE_INT64": np.int64,
    "TYPE_FP16": np.float16,
    "TYPE_FP32": np.float32,
    "TYPE_FP64": np.float64,
    "TYPE_STRING": np.object_,
}


class BackendError(Exception):
    """A request or model that does not fit the config; `client_error` decides 400 or 500."""

    def __init__(self, message: str, *, client_error: bool = True) -> None:
        super().__init__(message)
        self.client_error = client_error


def wire_name(triton_type: str) -> str:
    """TYPE_FP32 -> FP32, the spelling clients see in the KServe protocol."""
    return triton_type.removeprefix("TYPE_").replace("STRING", "BYTES")


@dataclass(frozen=True, kw_only=True)
class TensorSpec:
    name: str
    triton_type: str
    dims: tuple[int, ...]

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(TRITON_TO_NUMPY[self.triton_type])

    def full_shape(self, batching: bool) -> tuple[int, ...]:
        return (-1, *self.dims) if batching else self.dims


def _tensor_specs(entries: Sequence[Mapping[str, Any]]) -> tuple[TensorSpec, ...]:
    specs = []
    for entry in entries:
        triton_type = entry["data_type"]
        if triton_type not in TRITON_TO_NUMPY:
            raise BackendError(f"tensor '{entry['name']}': unsupported data type {triton_type}")
        dims = tuple(int(d) for d in entry.get("dims", []))
        reshape = entry.get("reshape")
        if reshape is not None:
            dims = tuple(int(d) for d in reshape.get("shape", []))
        specs.append(TensorSpec(name=entry["name"], triton_type=triton_type, dims=dims))
    return tuple(specs)


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """The parts of config.pbtxt (as Triton hands it over, in JSON) that a backend acts on."""

    name: str
    max_batch_size: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    parameters: Mapping[str, str] = field(default_factory=dict)
    instance_count: int = 1
    default_model_filename: str = ""

    @property
    def batching(self) -> bool:
        return self.max_batch_size > 0

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> ModelSpec:
        parameters = {
            key: str(value.get("string_value", ""))
            for key, value in config.get("parameters", {}).items()
        }
        groups = config.get("instance_group", []) or [{"count": 1}]
        return cls(
            name=config["name"],
            max_batch_size=int(config.get("max_batch_size", 0)),
            inputs=_tensor_specs(config.get("input", [])),
            outputs=_tensor_specs(config.get("output", [])),
            parameters=parameters,
            instance_count=max(1, sum(int(g.get("count", 1)) for g in groups)),
            default_model_filename=config.get("default_model_filename", ""),
        )

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        return cls.from_config(json.loads(text))

    def parameter_int(self, *names: str) -> int | None:
        """The first of `names` set in the config's parameters, as an int."""
        for name in names:
            raw = self.parameters.get(name, "").strip()
            if raw:
                try:
                    return int(raw)
                except ValueError:
                    raise BackendError(
                        f"model '{self.name}': parameter {name}={raw!r} is not an integer",
                        client_error=False,
                    ) from None
        return None


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def default_intra_op_threads(spec: ModelSpec) -> int:
    """Cores shared among the model's instances, unless MAAS_FRAMEWORK_THREADS says otherwise.

    Each instance is its own stub process; letting every one of them start a thread per core
    oversubscribes the machine as soon as two instances work at once.
    """
    override = os.environ.get("MAAS_FRAMEWORK_THREADS", "").strip()
    if override:
        if not override.isdigit():
            raise BackendError(
                f"MAAS_FRAMEWORK_THREADS={override!r} is not a whole number", client_error=False
            )
        return max(1, int(override))
    return max(1, available_cpus() // spec.instance_count)


def dims_compatible(actual: Sequence[int | None], expected: Sequence[int]) -> bool:
    """Shapes match where both sides are known; -1 and None are wildcards."""
    if len(actual) != len(expected):
        return False
    return all(a is None or e == -1 or a == -1 or a == e for a, e in zip(actual, expected))


def check_input(spec: TensorSpec, array: np.ndarray, batching: bool, model: str) -> None:
    """Triton's core checks this already; repeated here because the runners rely on it."""
    if array.dtype != spec.dtype and not (
        spec.triton_type == "TYPE_STRING" and array.dtype.kind in "OSU"
    ):
        raise BackendError(
            f"inference input '{spec.name}' data-type is '{array.dtype}', but model '{model}' "
            f"expects '{wire_name(spec.triton_type)}'"
        )
    expected = spec.full_shape(batching)
    if not dims_compatible(array.shape, expected):
        raise BackendError(
            f"unexpected shape for input '{spec.name}' for model '{model}'. "
            f"Expected {list(expected)}, got {list(array.shape)}"
        )


def check_output(spec: TensorSpec, array: np.ndarray, batch: int | None, model: str) -> None:
    if array.dtype != spec.dtype and not (
        spec.triton_type == "TYPE_STRING" and array.dtype.kind in "OSU"
    ):
        raise BackendError(
            f"model '{model}' produced output '{spec.name}' as {array.dtype}, but its config "
            f"says {spec.triton_type}",
            client_error=False,
        )
    expected = (batch, *spec.dims) if batch is not None else spec.dims
    if not dims_compatible(array.shape, expected):
        raise BackendError(
            f"model '{model}' produced output '{spec.name}' of shape {list(array.shape)}, but its "
            f"config says {[d if d is not None else -1 for d in expected]}",
            client_error=False,
        )


Inputs = dict[str, np.ndarray]
Outputs = dict[str, np.ndarray]
RunFn = Callable[[Inputs], Outputs]


def _run_checked(spec: ModelSpec, run: RunFn, inputs: Inputs, batch: int | None) -> Outputs:
    outputs = run(inputs)
    for out in spec.outputs:
        if out.name not in outputs:
            raise BackendError(
                f"model '{spec.name}' did not produce output '{out.name}'", client_error=False
            )
        check_output(out, outputs[out.name], batch, spec.name)
    return outputs


def execute_batched(
    spec: ModelSpec, requests: Sequence[Inputs], run: RunFn
) -> list[Outputs | BackendError]:
    """Run what the dynamic batcher handed over as few framework calls as shapes allow.

    Requests whose non-batch shapes agree are concatenated along the batch axis and run once;
    the outputs are split back by each request's batch size. If a merged call fails, its
    requests are retried one by one so that one bad request cannot fail its neighbours.
    """
    results: list[Outputs | BackendError | None] = [None] * len(requests)
    groups: dict[tuple[Any, ...], list[int]] = {}
    for index, inputs in enumerate(requests):
        try:
            for tensor in spec.inputs:
                if tensor.name not in inputs:
                    raise BackendError(f"expected input '{tensor.name}' is missing")
                check_input(tensor, inputs[tensor.name], spec.batching, spec.name)
            if spec.batching and len({len(inputs[t.name]) for t in spec.inputs}) > 1:
                raise BackendError("all inputs of a request must have the same batch size")
        except BackendError as error:
            results[index] = error
            continue
        key = tuple(inputs[t.name].shape[1:] for t in spec.inputs) if spec.batching else (index,)
        groups.setdefault(key, []).append(index)

    for indices in groups.values():
        if not spec.batching or len(indices) == 1:
            for index in indices:
                results[index] = _run_one(spec, run, requests[index])
            continue
        sizes = [len(requests[i][spec.inputs[0].name]) for i in indices]
        merged = {
            t.name: np.concatenate([requests[i][t.name] for i in indices]) for t in spec.inputs
        }
        try:
            outputs = _run_checked(spec, run, merged, sum(sizes))
        except Exception:
            for index in indices:
                results[index] = _run_one(spec, run, requests[index])
            continue
        offsets = np.cumsum([0, *sizes])
        for index, start, stop in zip(indices, offsets[:-1], offsets[1:]):
            results[index] = {name: value[start:stop] for name, value in outputs.items()}
    return [r if r is not None else BackendError("request was not executed") for r in results]


def framework_message(error: BaseException, limit: int = 300) -> str:
    """A framework error in one line: its type and the sentence that says what went wrong,
    without TensorFlow's "Graph execution error" preamble, node traces and stack dumps."""
    text = str(getattr(error, "message", "") or error)
    kept = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(
            ("Graph execution error", "Detected at node", "[[", "File ")
        ):
            continue
        kept.append(line)
    message = " ".join(kept)
    if len(message) > limit:
        message = message[: limit - 3] + "..."
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def _run_one(spec: ModelSpec, run: RunFn, inputs: Inputs) -> Outputs | BackendError:
    batch = len(inputs[spec.inputs[0].name]) if spec.batching and spec.inputs else None
    try:
        return _run_checked(spec, run, inputs, batch)
    except BackendError as error:
        return error
    except Exception as error:  # the framework's own message is the useful part
        return BackendError(
            f"model '{spec.name}' failed to execute: {framework_message(error)}",
            client_error=False,
        )
