"""The config an artifact needs: names, dtypes and dims from the artifact where it records
them, else from `--input/--output`, else measured by running it (on `--example` or on inputs
generated from the declared dims), as NVIDIA's Model Navigator does. Never guessed silently:
every source is noted, and what none of them tells is an error naming the option to use.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from maas.add_model.artifact import Artifact, ArtifactTensor, Reference
from maas.add_model.batch_size import choose_max_batch_size, rows_of
from maas.add_model.declarations import AddModelError, Declared, numpy_triton_type
from maas.validate.samples import sample_tensor
from maas_backends.common import (
    ModelSpec,
    TensorSpec,
    dims_compatible,
    framework_message,
    wire_name,
)

# Where the batch axis is settled, before the measured choice (batch_size.py) replaces it.
DEFAULT_MAX_BATCH_SIZE = 4
RUN_A = (3, 8)  # batch rows and what a -1 dimension becomes, first generated run
RUN_B = (2, 5)  # second run: dimensions that change between the runs vary


@dataclass
class Derived:
    config: dict[str, Any]
    notes: list[str]
    reference: Reference
    inputs: dict[str, np.ndarray]  # what validation sends
    expected: dict[str, np.ndarray] | None  # the reference's outputs; None: they vary by run

    @property
    def spec(self) -> ModelSpec:
        return ModelSpec.from_config(self.config)


def contract(config: dict[str, Any]) -> dict[str, Any]:
    """What clients rely on: tensor names, dtypes, dims, and whether requests carry a batch."""
    spec = ModelSpec.from_config(config)

    def side(tensors: tuple[TensorSpec, ...]) -> dict[str, tuple[str, tuple[int, ...]]]:
        return {t.name: (wire_name(t.triton_type), t.dims) for t in tensors}

    return {"batching": spec.batching, "input": side(spec.inputs), "output": side(spec.outputs)}


def contract_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    before, after = contract(old), contract(new)
    found = []
    if before["batching"] != after["batching"]:
        found.append(
            f"batching {'on' if before['batching'] else 'off'} -> "
            f"{'on' if after['batching'] else 'off'}"
        )
    for side in ("input", "output"):
        for name in sorted(set(before[side]) | set(after[side])):
            was, now = before[side].get(name), after[side].get(name)
            if was == now:
                continue
            shown = [f"{t[0]} {list(t[1])}" if t else "absent" for t in (was, now)]
            found.append(f"{side} '{name}': {shown[0]} -> {shown[1]}")
    return found


def _pick(*candidates: tuple[str, Any]) -> tuple[str, Any]:
    for source, value in candidates:
        if value is not None:
            return source, value
    return "", None


def _input_names(
    artifact: Artifact,
    declared: dict[str, Declared],
    example: dict[str, np.ndarray] | None,
    existing: dict[str, Any] | None,
) -> list[str]:
    recorded = [t.name for t in artifact.inputs]
    if artifact.framework == "pytorch":
        # Config names are forward()'s argument names, or INPUT__<i> by position.
        if len(declared) == len(recorded):
            names = list(declared)
        elif example is not None:
            names = list(example)
        elif existing is not None:
            names = [t["name"] for t in existing.get("input", [])]
        else:
            names = recorded
        if len(names) != len(recorded):
            raise AddModelError(
                f"forward() takes {len(recorded)} inputs ({', '.join(recorded)}); "
                f"{len(names)} given ({', '.join(names)})"
            )
        from maas_backends.torchscript import _indices

        if set(names) != set(recorded) and _indices(names) is None:
            raise AddModelError(
                f"input names {names} are neither forward()'s argument names {recorded} nor "
                "INPUT__0, INPUT__1 ... (the native backend's positional naming)"
            )
        unknown = [n for n in declared if n not in names]
        if unknown:
            raise AddModelError(
                f"--input '{unknown[0]}': the model's inputs are {', '.join(names)}"
            )
        return names
    for name in declared:
        if name not in recorded:
            raise AddModelError(
                f"--input '{name}': the artifact has no input of that name (it has: "
                f"{', '.join(recorded)})"
            )
    return recorded


def _batching(
    artifact: Artifact, names: list[str], max_batch_size: int | None, existing: dict | None
) -> tuple[int | None, str]:
    """max_batch_size and why; None: decided by running the model on the example."""
    if max_batch_size is not None:
        return max_batch_size, "--max-batch-size"
    if existing is not None:
        return int(existing.get("max_batch_size", 0)), "the model's config"
    shapes = {t.name: t.shape for t in artifact.inputs if t.name in names}
    if not shapes or any(s is None for s in shapes.values()):
        return None, ""
    if any(len(s) == 0 for s in shapes.values()):
        return 0, "scalar inputs cannot carry a batch"
    fixed_one = [n for n, s in shapes.items() if s[0] == 1 and len(s) > 1]
    if fixed_one:
        first = fixed_one[0]
        raise AddModelError(
            f"input '{first}' has a fixed first dimension {list(shapes[first])}: an export with "
            "batch size 1, so Triton cannot batch requests. Re-export it with a variable batch "
            f"axis (torch.onnx.export(..., dynamic_axes={{'{first}': {{0: 'batch'}}}}); Keras: "
            "Input(shape=...) without batch_size), or pass --max-batch-size 0 to serve it "
            "one item per request"
        )
    if all(s[0] == -1 for s in shapes.values()):
        return DEFAULT_MAX_BATCH_SIZE, "the artifact's variable first dimension"
    return 0, "the artifact's inputs have a fixed first dimension"


def derive(
    artifact: Artifact,
    *,
    name: str,
    declared_inputs: list[Declared],
    declared_outputs: list[Declared],
    example: dict[str, np.ndarray] | None,
    max_batch_size: int | None,
    instances: int,
    dynamic_batching: bool,
    existing: dict[str, Any] | None,
) -> Derived:
    notes: list[str] = []
    declared = {d.name: d for d in declared_inputs}
    names = _input_names(artifact, declared, example, existing)
    if example is not None and set(example) != set(names):
        raise AddModelError(
            f"--example holds {sorted(example)}; the model's inputs are {sorted(names)}"
        )
    recorded = {t.name: t for t in artifact.inputs}
    old = {t["name"]: t for t in (existing or {}).get("input", [])}
    old_spec = ModelSpec.from_config(existing) if existing else None
    old_dims = {t.name: t.dims for t in old_spec.inputs} if old_spec else {}

    batch, why = _batching(artifact, names, max_batch_size, existing)
    by_example_batch = batch is None and example is not None
    if batch is None and example is None:
        batch, why = DEFAULT_MAX_BATCH_SIZE, "default (checked by running it at two batch sizes)"
    if batch is not None and batch < 0:
        raise AddModelError("--max-batch-size is 0 (no batching) or more")

    inputs: list[TensorSpec] = []
    for position, tensor_name in enumerate(names):
        guess = recorded.get(tensor_name) or (
            artifact.inputs[position] if artifact.framework == "pytorch" else None
        )
        said = declared.get(tensor_name)
        sample = example.get(tensor_name) if example is not None else None
        source, triton = _pick(
            ("--input", said.triton_type if said else None),
            ("artifact", guess.triton_type if guess else None),
            ("--example", numpy_triton_type(sample.dtype) if sample is not None else None),
            ("the model's config", old.get(tensor_name, {}).get("data_type")),
        )
        if triton is None:
            raise AddModelError(
                f"the data type of input '{tensor_name}' is not recorded in a "
                f"{artifact.platform} artifact: pass --input {tensor_name}:DTYPE:DIMS or "
                "--example inputs.npz"
            )
        if said and said.triton_type and guess and guess.triton_type not in (None, triton):
            raise AddModelError(
                f"--input '{tensor_name}' says {wire_name(triton)}; the artifact says "
                f"{wire_name(guess.triton_type)}"
            )
        inputs.append(
            TensorSpec(
                name=tensor_name,
                triton_type=triton,
                dims=_input_dims(tensor_name, said, guess, sample, old_dims, batch),
            )
        )
        notes.append(f"input '{tensor_name}': data type from {source}")

    def make_inputs(rows: int | None, variable: int, seed: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng(seed)
        return {t.name: sample_tensor(t, rows, rng, variable) for t in inputs}

    reference = Reference(artifact, names)
    if example is not None:
        rows = {len(v) for v in example.values() if v.ndim}
        first = dict(example)
        if by_example_batch or (batch or 0) > 0:
            if len(rows) != 1:
                raise AddModelError(
                    "--example arrays differ in their first (batch) dimension: "
                    + ", ".join(f"{k} {list(v.shape)}" for k, v in example.items())
                )
            (count,) = rows
            other = 1 if count > 1 else 2
            second = {k: rows_of(v, other) for k, v in example.items()}
        else:
            second = None
        run_a, run_b = first, second
    else:
        rows_a, rows_b = (min(RUN_A[0], batch), min(RUN_B[0], batch)) if batch else (None, None)
        run_a = make_inputs(rows_a, RUN_A[1], 0)
        run_b = make_inputs(rows_b, RUN_B[1], 1)
    out_a = _run(reference, run_a, "the example" if example is not None else "generated inputs")
    out_b = _run(reference, run_b, "a second batch size") if run_b is not None else None
    if by_example_batch:
        batch_a = len(next(iter(run_a.values())))
        batch_b = len(next(iter(run_b.values())))
        follows = all(
            a.ndim and b.ndim and len(a) == batch_a and len(b) == batch_b
            for a, b in ((out_a[k], out_b[k]) for k in out_a)
        )
        batch = DEFAULT_MAX_BATCH_SIZE if follows else 0
        why = (
            "outputs follow the example's batch size"
            if follows
            else "outputs do not follow the example's batch size"
        )
        if not follows:
            inputs = [
                TensorSpec(
                    name=t.name, triton_type=t.triton_type, dims=tuple(example[t.name].shape)
                )
                for t in inputs
            ]
            out_b = None
    batch_note = len(notes)
    notes.append(f"max_batch_size {batch}: {why}")

    outputs = _outputs(artifact, declared_outputs, existing, out_a, out_b, batch, run_a, run_b)
    flat = [t.name for t in (*inputs, *outputs) if not t.dims]
    if batch and flat and existing is None:
        # Triton's batching needs an item dimension on every tensor (dims may not be empty).
        if max_batch_size:
            raise AddModelError(
                f"{', '.join(flat)} {'has' if len(flat) == 1 else 'have'} no dimension besides "
                "the batch, so Triton cannot batch this model: leave --max-batch-size out, or "
                "give the model an item dimension ([batch, 1])"
            )
        batch = 0
        inputs = [_whole(t) for t in inputs]
        outputs = [_whole(t) for t in outputs]
        notes.append(
            f"max_batch_size 0 after all: {', '.join(flat)} {'has' if len(flat) == 1 else 'have'}"
            " only a batch dimension, which Triton batching cannot express; dims include it (-1)"
        )
    checked_rows = len(next(iter(run_a.values()))) if batch else 0
    if batch and max_batch_size is None and existing is None:
        choice = choose_max_batch_size(reference, run_a, floor=checked_rows)
        batch = choice.size
        notes[batch_note] = f"max_batch_size {batch}: {why}; {choice.why}"
    elif batch and checked_rows > batch:
        source = "--max-batch-size" if max_batch_size is not None else "the model's config"
        raise AddModelError(
            f"--example has {checked_rows} rows but max_batch_size is {batch} ({source}): the "
            f"served model would refuse it. Pass an example of at most {batch} rows"
            + (" or a larger --max-batch-size" if max_batch_size is not None else "")
        )
    reference.output_names = [t.name for t in outputs]
    out_a = _renamed(out_a, reference.output_names)
    if existing is not None:
        config = dict(existing)
        candidate = _config(name, artifact, batch, inputs, outputs, instances, dynamic_batching)
        differences = contract_differences(existing, candidate)
        if differences:
            raise AddModelError(
                f"this version would change the served contract of '{name}': "
                + "; ".join(differences)
                + f". Clients rely on it: add it as a new model (--name {name}_v2) instead"
            )
        if existing.get("platform") != artifact.platform:
            raise AddModelError(
                f"'{name}' is a {existing.get('platform')} model; this artifact is "
                f"{artifact.platform}: add it as a new model instead"
            )
        wanted = artifact.parameters.get("TF_SIGNATURE_DEF", "")
        have = existing.get("parameters", {}).get("TF_SIGNATURE_DEF", {}).get("string_value", "")
        if wanted != have:
            raise AddModelError(
                f"'{name}' calls signature '{have or 'serving_default'}'; this SavedModel was "
                f"described by '{wanted or 'serving_default'}'"
            )
    else:
        config = _config(name, artifact, batch, inputs, outputs, instances, dynamic_batching)
    from maas.validate.pipeline import differences as output_differences

    def rerun(inputs: dict[str, np.ndarray], what: str) -> dict[str, np.ndarray]:
        return _renamed(_run(reference, inputs, what), reference.output_names)

    again = rerun(run_a, "the same inputs again")
    varies = bool(output_differences(again, out_a, "the first run"))
    if varies:
        notes.append("outputs vary between runs on the same inputs: compared by dtype and shape")
    rows = checked_rows
    if batch and rows > 1 and not varies:
        # Dynamic batching merges players' requests: a row must not depend on its neighbours.
        alone = rerun({k: v[:1] for k, v in run_a.items()}, "the first row alone")
        mixed = output_differences(alone, {k: v[:1] for k, v in out_a.items()}, "in a batch")
        if mixed:
            raise AddModelError(
                f"the first row alone gives other outputs than inside a batch of {rows} "
                f"({mixed[0]}): the model mixes rows, so Triton's batching would mix players' "
                "requests. Pass --max-batch-size 0 (the whole tensor is one request)"
            )
    expected = None if varies else out_a
    return Derived(config, notes, reference, run_a, expected)


def _whole(tensor: TensorSpec) -> TensorSpec:
    """A batched tensor as an unbatched model sees it: the batch axis becomes a -1 dim."""
    return TensorSpec(name=tensor.name, triton_type=tensor.triton_type, dims=(-1, *tensor.dims))


def _input_dims(
    name: str,
    said: Declared | None,
    recorded: ArtifactTensor | None,
    sample: np.ndarray | None,
    old_dims: dict[str, tuple[int, ...]],
    batch: int | None,
) -> tuple[int, ...]:
    recorded_dims = None
    if recorded is not None and recorded.shape is not None:
        recorded_dims = recorded.shape[1:] if batch else recorded.shape
    example_dims = None
    if sample is not None:
        example_dims = tuple(sample.shape[1:]) if batch is None or batch else tuple(sample.shape)
    _, dims = _pick(
        ("--input", said.dims if said else None),
        ("artifact", recorded_dims),
        ("--example", example_dims),
        ("config", old_dims.get(name)),
    )
    if dims is None:
        raise AddModelError(
            f"the dims of input '{name}' are not recorded in the artifact: pass --input "
            f"{name}:DTYPE:DIMS (without the batch dimension, -1 where it varies) or --example"
        )
    if (
        said
        and said.dims is not None
        and recorded_dims is not None
        and not dims_compatible(said.dims, recorded_dims)
    ):
        raise AddModelError(
            f"--input '{name}' dims {list(said.dims)} disagree with the artifact's "
            f"{list(recorded_dims)}"
        )
    return tuple(dims)


def _run(reference: Reference, inputs: dict[str, np.ndarray], what: str) -> dict[str, np.ndarray]:
    try:
        outputs = reference(inputs)
    except AddModelError:
        raise
    except Exception as error:  # the framework's reason, in one line
        shapes = ", ".join(f"{k} {v.dtype} {list(v.shape)}" for k, v in inputs.items())
        raise AddModelError(
            f"the model failed on {what} ({shapes}): {framework_message(error)}. Pass --example "
            "with real inputs, or --input with the right dtypes and dims"
        ) from None
    for key, value in list(outputs.items()):
        outputs[key] = np.asarray(value)
    return outputs


def _renamed(outputs: dict[str, np.ndarray], names: list[str]) -> dict[str, np.ndarray]:
    if set(names) <= set(outputs):
        return {n: outputs[n] for n in names}
    return dict(zip(names, outputs.values()))


def _outputs(
    artifact: Artifact,
    declared: list[Declared],
    existing: dict[str, Any] | None,
    out_a: dict[str, np.ndarray],
    out_b: dict[str, np.ndarray] | None,
    batch: int,
    run_a: dict[str, np.ndarray],
    run_b: dict[str, np.ndarray] | None,
) -> list[TensorSpec]:
    said = {d.name: d for d in declared}
    produced = list(out_a)
    if artifact.framework == "pytorch":
        if declared:
            names = [d.name for d in declared]
        elif existing is not None and len(existing.get("output", [])) == len(produced):
            names = [t["name"] for t in existing["output"]]
        else:
            names = [f"OUTPUT__{i}" for i in range(len(produced))]
        if len(names) != len(produced):
            raise AddModelError(
                f"the model returns {len(produced)} tensors; {len(names)} --output given"
            )
        recorded: dict[str, ArtifactTensor] = {}
    else:
        names = produced
        for name in said:
            if name not in names:
                raise AddModelError(
                    f"--output '{name}': the artifact has no output of that name (it has: "
                    f"{', '.join(names)})"
                )
        recorded = {t.name: t for t in artifact.outputs or []}
    rows_a = len(next(iter(run_a.values()))) if batch else None
    rows_b = len(next(iter(run_b.values()))) if batch and run_b is not None else None
    specs = []
    for name, key in zip(names, produced):
        value_a = out_a[key]
        value_b = out_b[key] if out_b is not None else None
        for value, rows in ((value_a, rows_a), (value_b, rows_b)):
            if batch and value is not None and (value.ndim == 0 or len(value) != rows):
                raise AddModelError(
                    f"output '{name}' has shape {list(value.shape)} for {rows} rows in: it does "
                    "not follow the batch. Pass --max-batch-size 0 (the whole tensor is one "
                    "request)"
                )
        known = recorded.get(name)
        if batch and known is not None and known.shape and known.shape[0] != -1:
            raise AddModelError(
                f"output '{name}' has a fixed first dimension {list(known.shape)} in the "
                "artifact: with batching the native backend wants it variable. Re-export it "
                "with a variable batch axis, or pass --max-batch-size 0"
            )
        measured_type = numpy_triton_type(value_a.dtype)
        if measured_type is None:
            raise AddModelError(f"output '{name}' is {value_a.dtype}, which Triton cannot send")
        claim = said.get(name)
        if claim and claim.triton_type and claim.triton_type != measured_type:
            raise AddModelError(
                f"--output '{name}' says {wire_name(claim.triton_type)}; the model returns "
                f"{value_a.dtype}"
            )
        shape_a = value_a.shape[1:] if batch else value_a.shape
        measured = tuple(int(d) for d in shape_a)
        if value_b is not None:
            shape_b = value_b.shape[1:] if batch else value_b.shape
            if len(shape_b) == len(shape_a):
                measured = tuple(a if a == b else -1 for a, b in zip(shape_a, shape_b))
        recorded_dims = None
        if known is not None and known.shape is not None:
            recorded_dims = known.shape[1:] if batch else known.shape
        if claim and claim.dims is not None:
            dims = claim.dims
        elif recorded_dims is not None and dims_compatible(measured, recorded_dims):
            dims = recorded_dims
        else:
            dims = measured
        specs.append(TensorSpec(name=name, triton_type=measured_type, dims=tuple(dims)))
    return specs


def _tensor_config(tensor: TensorSpec) -> dict[str, Any]:
    return {"name": tensor.name, "data_type": tensor.triton_type, "dims": list(tensor.dims)}


def _config(
    name: str,
    artifact: Artifact,
    batch: int,
    inputs: list[TensorSpec],
    outputs: list[TensorSpec],
    instances: int,
    dynamic_batching: bool,
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "name": name,
        "platform": artifact.platform,
        "max_batch_size": batch,
        "input": [_tensor_config(t) for t in inputs],
        "output": [_tensor_config(t) for t in outputs],
        "version_policy": {"latest": {"num_versions": 1}},
        "instance_group": [{"count": instances}],
    }
    if batch > 0 and dynamic_batching:
        config["dynamic_batching"] = {}
    if artifact.parameters:
        config["parameters"] = {k: {"string_value": v} for k, v in artifact.parameters.items()}
    return config
