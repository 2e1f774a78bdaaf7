#!/usr/bin/env bash
# GPU proof: npc_turn + npc_encoder served through the nvidia-pytriton wheel's Triton on cuda:0,
# turns/s, p50, p99 at 1/8/32/128 clients (MiniLM and mpnet sizes, random weights), and the
# served-vs-CPU embedding difference (limit 1e-3). Everything runs on the CPU where torch sees
# no CUDA device (the rehearsal; the output says so). Details: scripts/gpu_proof.py.
#
# 1. Here (pip, registry):  PYTHON=.venv/bin/python bash scripts/gpu_proof.sh --prepare 3.12
#    fills .whl/ (git-ignored) for a device whose Python is 3.12, and prints tree + .whl in MiB
#    (one device run carries at most 64 MiB):
#      nvidia_pytriton-0.7.0-slim-py3.12.zip  the wheel's server, libraries, Python backend and
#                                             3.12 stub only (39 MB instead of 55)
#      numpy-1.26.4-cp312-*.whl               for the stubs, if the device has numpy 2: the
#                                             wheel's stub (pybind11 before NumPy 2) garbles
#                                             npc_turn's string inputs under numpy 2
#      tokenizer.json                         MiniLM's (else a WordPiece is trained there)
#    The whole wheel (.whl/nvidia_pytriton-0.7.0-*.whl) also works where it fits.
# 2. On the device, from the repository root, carrying `.whl`:  bash scripts/gpu_proof.sh
#    The Python is `${PYTHON:-python3}` found on PATH, with torch, transformers (tokenizers) and
#    numpy; nothing else (no tritonclient, pyyaml, typer, rich; this project not installed). Its
#    bin/ goes first on PATH: Triton's Python backend stub runs the first python3 there.
#
# Results in $OUT (default /tmp/gpu_proof_out): gpu_proof.md (the table), gpu_proof.json,
# gpu_proof.txt (this console), triton_<size>.log. Exit status 0 only if every check passed.
# Knobs (environment): GPU_PROOF_SECONDS (6, measured per point), GPU_PROOF_WARMUP_SECONDS (1),
# GPU_PROOF_LEVELS (1,8,32,128), GPU_PROOF_SIZES (minilm,mpnet), GPU_PROOF_NPCS (all 137),
# GPU_PROOF_BUDGET_S (420: points that would end later are skipped), GPU_PROOF_TIMEOUT_S (540:
# hard stop), GPU_PROOF_CLIENT_PROCS (load processes, default cores/4), GPU_PROOF_TOKENIZER.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}

if [ "${1:-}" = --prepare ]; then
    exec "$PYTHON" scripts/gpu_proof.py --prepare "${2:-3.12}"
fi

OUT=${OUT:-${TMPDIR:-/tmp}/gpu_proof_out}
mkdir -p "$OUT"
fail() {
    echo "gpu_proof: $*" | tee -a "$OUT/gpu_proof.txt" >&2
    printf '# GPU proof: not run\n\n%s\n' "$*" > "$OUT/gpu_proof.md"
    exit 2
}

command -v "$PYTHON" >/dev/null || fail "no '$PYTHON' on PATH (set PYTHON=/path/to/python3)"
PYTHON=$(command -v "$PYTHON")
"$PYTHON" -c 'import torch, transformers, tokenizers, numpy' 2>"$OUT/import_error.txt" \
    || fail "$PYTHON lacks torch/transformers/tokenizers/numpy: $(tail -1 "$OUT/import_error.txt")"
rm -f "$OUT/import_error.txt"
shopt -s nullglob
triton=(.whl/nvidia_pytriton-0.7.0-*)
[ ${#triton[@]} -gt 0 ] || fail "no .whl/nvidia_pytriton-0.7.0-*: run the --prepare step (this script's header) and carry .whl"

# The stub runs `python3`: make it this Python (a venv's bin/ has python3; a bare python3.12
# gets a shim folder).
bindir=$(dirname "$PYTHON")
if [ "$(basename "$PYTHON")" != python3 ] && [ ! -x "$bindir/python3" ]; then
    bindir=$(mktemp -d) && ln -s "$PYTHON" "$bindir/python3"
fi
export PATH="$bindir:$PATH"
export PYTHONDONTWRITEBYTECODE=1  # no __pycache__ in the tree or the model folders

echo "gpu_proof: $PYTHON; carried: ${triton[*]}; results in $OUT" | tee "$OUT/gpu_proof.txt"
timeout -k 15 "${GPU_PROOF_TIMEOUT_S:-540}" "$PYTHON" -u scripts/gpu_proof.py --carry .whl \
    --out "$OUT" 2>&1 | tee -a "$OUT/gpu_proof.txt"
status=${PIPESTATUS[0]}
[ "$status" = 124 ] && echo "gpu_proof: stopped after GPU_PROOF_TIMEOUT_S" | tee -a "$OUT/gpu_proof.txt"
exit "$status"
