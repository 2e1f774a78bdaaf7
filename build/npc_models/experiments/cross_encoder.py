"""Issue 4 experiment, kept to reproduce the figures in build/npc_models/README.md.

Run: .venv/bin/python build/npc_models/experiments/cross_encoder.py ARGS (see sys.argv below). Not a recipe, not tested.
"""

# ruff: noqa
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
import sys, time, random, glob, importlib.util
import numpy as np, torch, yaml

spec = importlib.util.spec_from_file_location("x", str(ROOT / "build/_npc_export.py"))
X = importlib.util.module_from_spec(spec)
spec.loader.exec_module(X)
from transformers import AutoTokenizer, AutoModel

torch.set_num_threads(2)
path = str(X.base_encoder_path())
tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
train = yaml.safe_load(open(ROOT / "build/data/npc/train_dialogue.yaml"))["npcs"]
if (ROOT / "build/data/npc/train_dialogue_more.yaml").exists():
    train += yaml.safe_load(open(ROOT / "build/data/npc/train_dialogue_more.yaml"))["npcs"]
held = yaml.safe_load(open(ROOT / "build/data/npc/heldout_dialogue.yaml"))["npcs"]


def evaluate(score):
    top1 = rr = n = 0
    for npc in held:
        lines = [l["text"] for l in npc["lines"]]
        for i, l in enumerate(npc["lines"]):
            for p in l["player"]:
                s = np.asarray(score(p, lines)).ravel()
                rank = 1 + int((s > s[i]).sum())
                top1 += rank == 1
                rr += 1 / rank
                n += 1
    return top1 / n, rr / n, n


# base: mean pooled cosine
enc = AutoModel.from_pretrained(path, local_files_only=True).eval()


def embed(texts):
    b = tok(texts, padding=True, truncation=True, return_tensors="pt")
    with torch.inference_mode():
        h = enc(**b).last_hidden_state
    m = b["attention_mask"].unsqueeze(-1).float()
    e = (h * m).sum(1) / m.sum(1)
    return torch.nn.functional.normalize(e, dim=-1).numpy()


def base_score(q, lines):
    e = embed([q] + lines)
    return e[1:] @ e[0]


t = time.time()
print("base bi-encoder", evaluate(base_score), round(time.time() - t, 1), "s", flush=True)

# training pairs
rng = random.Random(0)
pos = []
for npc in train:
    lines = [l["text"] for l in npc["lines"]]
    for i, l in enumerate(npc["lines"]):
        for p in l["player"]:
            pos.append((p, lines[i], lines))
import chatterbot_corpus, os

cb = []
for f in glob.glob(os.path.join(os.path.dirname(chatterbot_corpus.__file__), "data/english/*.yml")):
    for conv in (yaml.safe_load(open(f)) or {}).get("conversations", []):
        for a, b in zip(conv, conv[1:]):
            if isinstance(a, str) and isinstance(b, str):
                cb.append((a, b))
print("game positives", len(pos), "chatterbot pairs", len(cb), flush=True)
NEG = int(sys.argv[1]) if len(sys.argv) > 1 else 3
CB = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
EPOCHS = int(sys.argv[3]) if len(sys.argv) > 3 else 1
examples = []
for p, right, lines in pos:
    examples.append((p, right, 1.0))
    for wrong in rng.sample([l for l in lines if l != right], NEG):
        examples.append((p, wrong, 0.0))
cbs = rng.sample(cb, min(CB, len(cb)))
replies = [b for _, b in cb]
for a, b in cbs:
    examples.append((a, b, 1.0))
    examples.append((a, rng.choice(replies), 0.0))
print("examples", len(examples), flush=True)
model = X.make_cross_encoder(Path(sys.argv[4]) if len(sys.argv) > 4 else None, seed=0)
model.train()
opt = torch.optim.AdamW(model.parameters(), lr=3e-5, weight_decay=0.01)
BS = 32
steps = EPOCHS * ((len(examples) + BS - 1) // BS)
sched = torch.optim.lr_scheduler.LambdaLR(
    opt, lambda s: min(1.0, (s + 1) / (0.1 * steps)) * max(0.0, (steps - s) / steps)
)
loss_fn = torch.nn.BCELoss()
t = time.time()
step = 0
for epoch in range(EPOCHS):
    rng.shuffle(examples)
    for k in range(0, len(examples), BS):
        chunk = examples[k : k + BS]
        b = tok(
            [c[0] for c in chunk],
            [c[1] for c in chunk],
            padding=True,
            truncation=True,
            max_length=128,
            return_tensors="pt",
        )
        y = torch.tensor([[c[2]] for c in chunk])
        out = model(b["input_ids"], b["attention_mask"], b["token_type_ids"])
        loss = loss_fn(out, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        if step % 50 == 0:
            print(step, steps, round(loss.item(), 3), round(time.time() - t), "s", flush=True)
model.eval()
print("train time", round(time.time() - t), flush=True)


def cross_score(q, lines):
    b = tok(
        [q] * len(lines), lines, padding=True, truncation=True, max_length=128, return_tensors="pt"
    )
    with torch.inference_mode():
        return model(b["input_ids"], b["attention_mask"], b["token_type_ids"]).numpy()


print("cross-encoder", evaluate(cross_score), flush=True)
