"""Issue 4 experiment, kept to reproduce the figures in build/npc_models/README.md.

Run: .venv/bin/python build/npc_models/experiments/bi_encoder.py ARGS (see sys.argv below). Not a recipe, not tested.
"""

# ruff: noqa
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
import sys, time, random, glob, os, importlib.util
import numpy as np, torch, yaml

spec = importlib.util.spec_from_file_location("x", str(ROOT / "build/_npc_export.py"))
X = importlib.util.module_from_spec(spec)
spec.loader.exec_module(X)
from transformers import AutoTokenizer, AutoModel

torch.set_num_threads(2)
torch.manual_seed(0)
path = str(X.base_encoder_path())
tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
train = yaml.safe_load(open(ROOT / "build/data/npc/train_dialogue.yaml"))["npcs"]
held = yaml.safe_load(open(ROOT / "build/data/npc/heldout_dialogue.yaml"))["npcs"]
enc = AutoModel.from_pretrained(path, local_files_only=True)


def embed(texts, grad=False):
    b = tok(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
    h = enc(**b).last_hidden_state
    m = b["attention_mask"].unsqueeze(-1).float()
    return torch.nn.functional.normalize((h * m).sum(1) / m.sum(1), dim=-1)


def evaluate():
    enc.eval()
    top1 = rr = n = 0
    with torch.inference_mode():
        for npc in held:
            lines = [l["text"] for l in npc["lines"]]
            le = embed(lines)
            for i, l in enumerate(npc["lines"]):
                qe = embed(l["player"])
                s = (qe @ le.T).numpy()
                for row in s:
                    rank = 1 + int((row > row[i]).sum())
                    top1 += rank == 1
                    rr += 1 / rank
                    n += 1
    enc.train()
    return round(top1 / n, 3), round(rr / n, 3)


print("base", evaluate(), flush=True)
rng = random.Random(0)
pairs = [(p, l["text"], npc["name"]) for npc in train for l in npc["lines"] for p in l["player"]]
import chatterbot_corpus

cb = []
for f in glob.glob(os.path.join(os.path.dirname(chatterbot_corpus.__file__), "data/english/*.yml")):
    for conv in (yaml.safe_load(open(f)) or {}).get("conversations", []):
        for a, b in zip(conv, conv[1:]):
            if isinstance(a, str) and isinstance(b, str):
                cb.append((a, b, "cb"))
CB = int(sys.argv[1])
EPOCHS = int(sys.argv[2])
SCALE = 20.0
extra = ROOT / "build/data/npc/train_dialogue_more.yaml"
if extra.exists():
    more = yaml.safe_load(open(extra))["npcs"]
    pairs += [
        (p, l["text"], npc["name"]) for npc in more for l in npc["lines"] for p in l["player"]
    ]
print("game pairs", len(pairs), flush=True)
data = pairs + rng.sample(cb, CB)
opt = torch.optim.AdamW(enc.parameters(), lr=3e-5)
t = time.time()
for epoch in range(EPOCHS):
    # batches grouped by NPC so in-batch negatives are that NPC's other lines (the eval task)
    rng.shuffle(data)
    by = {}
    for d in data:
        by.setdefault(d[2], []).append(d)
    batches = []
    for group in by.values():
        for k in range(0, len(group), 32):
            batches.append(group[k : k + 32])
    rng.shuffle(batches)
    for batch in batches:
        q = embed([b[0] for b in batch])
        a = embed([b[1] for b in batch])
        texts = [b[1] for b in batch]
        logits = SCALE * q @ a.T
        same = torch.tensor(
            [[ti == tj and i != j for j, tj in enumerate(texts)] for i, ti in enumerate(texts)]
        )
        logits = logits.masked_fill(same, -1e4)  # duplicate answers in a batch are not negatives
        loss = torch.nn.functional.cross_entropy(logits, torch.arange(len(batch)))
        opt.zero_grad()
        loss.backward()
        opt.step()
    print("epoch", epoch + 1, evaluate(), round(time.time() - t), "s", flush=True)
if len(sys.argv) > 3:  # save the fine-tuned encoder (and tokenizer) for the cross-encoder
    enc.save_pretrained(sys.argv[3])
    tok.save_pretrained(sys.argv[3])
