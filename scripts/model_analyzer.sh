#!/usr/bin/env bash
# Triton Model Analyzer 1.58 (local launch mode) on mnist with the wheel's Triton and our
# Python-based backends, and a side-by-side perf_analyzer check of the picks
# (docs/benchmarks.md, "Triton Model Analyzer against maas tune-batching (mnist)").
#
#   scripts/model_analyzer.sh profile            # Model Analyzer search; model-repository API open
#   scripts/model_analyzer.sh profile --restrict # maas's full restriction: fails with 403, see docs
#   scripts/model_analyzer.sh compare 1000 ...   # committed config vs the same with each delay (us)
#
# Model Analyzer gets its own venv (MA_VENV, default /tmp/ma-venv), works in MA_WORK (default
# /tmp/ma-work) on a copy of model_repository/mnist, and binds Triton to 127.0.0.1 on free ports.
# Its Triton client sends no headers, so `profile` leaves the model-repository API without the
# admin key (statistics, trace, logging and shared memory keep it; perf_analyzer sends it).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
PY="$ROOT/.venv/bin/python"
MA_VENV=${MA_VENV:-/tmp/ma-venv}
WORK=${MA_WORK:-/tmp/ma-work}
KEY=$(cat "${MAAS_ADMIN_KEY_FILE:-$HOME/.cache/maas/admin.key}")
SITE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
ports() { "$PY" -c 'from maas.server.config import free_ports; print(*free_ports(3))'; }
umask 077  # the generated files hold the admin key

profile() {
  local apis=statistics,trace,logging,shared-memory
  [ "${1:-}" = --restrict ] && apis=model-repository,$apis
  [ -x "$MA_VENV/bin/model-analyzer" ] || {
    python3.11 -m venv "$MA_VENV" && "$MA_VENV/bin/pip" install -q triton-model-analyzer==1.58.0; }
  mkdir -p "$WORK/bin"
  rm -rf "$WORK/repo" "$WORK/output_repo" "$WORK/results" "$WORK/checkpoints"
  mkdir -p "$WORK/repo" && cp -r "$ROOT/model_repository/mnist" "$WORK/repo/"
  printf '#!/usr/bin/env bash\nexec %q "$@"\n' "$ROOT/scripts/perf_analyzer.sh" > "$WORK/bin/perf_analyzer"
  chmod +x "$WORK/bin/perf_analyzer"
  local backends libpython http grpc metrics
  backends=$("$PY" -c 'from maas.server.triton_paths import find_triton
from maas.server.backend_dir import assemble_backend_dir; print(assemble_backend_dir(find_triton()))')
  libpython=$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR") or "")')
  read -r http grpc metrics < <(ports)
  cat > "$WORK/profile.yaml" <<YAML
model_repository: $WORK/repo
output_model_repository_path: $WORK/output_repo
override_output_model_repository: true
export_path: $WORK/results
checkpoint_directory: $WORK/checkpoints
triton_launch_mode: local
triton_server_path: $SITE/pytriton/tritonserver/bin/tritonserver
triton_output_path: $WORK/triton.log
triton_http_endpoint: 127.0.0.1:$http
triton_grpc_endpoint: 127.0.0.1:$grpc
triton_metrics_url: http://127.0.0.1:$metrics/metrics
client_protocol: http
perf_analyzer_path: $WORK/bin/perf_analyzer
perf_output: true
perf_output_path: $WORK/perf_output.log
triton_server_flags:
  backend-directory: $backends
  exit-on-error: "false"
  strict-readiness: "true"
  http-address: 127.0.0.1
  grpc-address: 127.0.0.1
  metrics-address: 127.0.0.1
  allow-gpu-metrics: "false"
  http-restricted-api: "$apis:maas-admin-key=$KEY"
  grpc-restricted-protocol: "$apis:maas-admin-key=$KEY"
triton_server_environment:
  PATH: $ROOT/.venv/bin:$PATH
  LD_LIBRARY_PATH: $SITE/nvidia_pytriton.libs:$libpython
perf_analyzer_flags:
  http-header: "maas-admin-key:$KEY"
  measurement-interval: 2000
  stability-percentage: 25
  max-trials: 6
run_config_search_disable: true
profile_models:
  mnist:
    model_config_parameters:
      instance_group:
        - kind: KIND_CPU
          count: [1, 2]
      dynamic_batching:
        preferred_batch_size: [[16, 32]]
        max_queue_delay_microseconds: [0, 500, 1000]
    parameters:
      concurrency: [16, 32]
YAML
  (cd "$WORK" && "$MA_VENV/bin/model-analyzer" profile -f "$WORK/profile.yaml")
  cat "$WORK/results/results/metrics-model-inference.csv"
}

compare() {  # one maas serve holding mnist_committed and mnist_q<DELAY> per argument
  local rounds=${ROUNDS:-3} dir="$WORK/compare" http grpc metrics  # serve: global, for the trap
  rm -rf "$dir" && mkdir -p "$dir/repo"
  variant() {
    mkdir -p "$dir/repo/$1" && cp -r "$ROOT/model_repository/mnist/1" "$ROOT/model_repository/mnist/labels.txt" "$dir/repo/$1/"
    local edits=(-e "s/^name: \"mnist\"/name: \"$1\"/")
    [ -n "${2:-}" ] && edits+=(-e "s/max_queue_delay_microseconds: [0-9]*/max_queue_delay_microseconds: $2/")
    sed "${edits[@]}" "$ROOT/model_repository/mnist/config.pbtxt" > "$dir/repo/$1/config.pbtxt"
  }
  local models=(mnist_committed)
  variant mnist_committed
  for delay in "$@"; do variant "mnist_q$delay" "$delay"; models+=("mnist_q$delay"); done
  read -r http grpc metrics < <(ports)
  "$ROOT/.venv/bin/maas" serve --repository "$dir/repo" --model-control --http-port "$http" \
    --grpc-port "$grpc" --metrics-port "$metrics" --log-file "$dir/triton.log" > "$dir/serve.out" 2>&1 &
  serve=$!
  trap 'kill -TERM $serve; wait $serve || true' EXIT
  for _ in $(seq 90); do curl -sf "127.0.0.1:$http/v2/health/ready" && break; sleep 2; done
  for r in $(seq "$rounds"); do
    for m in "${models[@]}"; do
      "$ROOT/scripts/perf_analyzer.sh" -m "$m" -u "127.0.0.1:$http" -i http -H "maas-admin-key:$KEY" \
        --concurrency-range 32 --measurement-interval 4000 --stability-percentage 50 --max-trials 5 \
        -f "$dir/$m-r$r.csv" > "$dir/$m-r$r.log" 2>&1 || echo "perf_analyzer failed: $dir/$m-r$r.log"
    done
  done
  "$PY" - "$dir" "${models[@]}" <<'PYEOF'
import csv, glob, statistics, sys
folder, models = sys.argv[1], sys.argv[2:]
print("model             rounds  infer/s (median)  p50 ms  p99 ms   (perf_analyzer, concurrency 32)")
for m in models:
    rows = [next(csv.DictReader(open(f))) for f in sorted(glob.glob(f"{folder}/{m}-r*.csv"))]
    med = lambda key, scale=1.0: statistics.median(float(r[key]) / scale for r in rows)
    print(f"{m:<17} {len(rows):>6}  {med('Inferences/Second'):>16.0f}  {med('p50 latency', 1e3):>6.1f}"
          f"  {med('p99 latency', 1e3):>6.1f}")
PYEOF
}

case "${1:-}" in
  profile) shift; profile "$@" ;;
  compare) shift; compare "$@" ;;
  *) echo "usage: $0 profile [--restrict] | compare DELAY_US..." >&2; exit 2 ;;
esac
