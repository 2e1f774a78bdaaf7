#!/usr/bin/env bash
# Create or refresh the project's virtualenv (.venv) with everything pinned in pyproject.toml.
# Re-installs only when pyproject.toml changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-}
if [ -z "$PYTHON" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      PYTHON=$candidate; break
    fi
  done
fi
if [ -z "$PYTHON" ]; then
  echo "error: Python 3.11 is required (Debian 12: apt install python3 python3-venv;" \
       "Ubuntu: apt install python3.11 python3.11-venv)" >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  echo "==> creating .venv with $PYTHON"
  if ! "$PYTHON" -m venv .venv; then
    rm -rf .venv
    echo "error: '$PYTHON -m venv' failed; install the venv module (apt install python3.11-venv)" >&2
    exit 1
  fi
fi

# MAAS_EXTRAS picks what to install: run.sh needs the server and the game; test.sh (default)
# everything, tests, load tests and benchmarks included. "dev" includes every other extra.
extras=${MAAS_EXTRAS:-dev}
fresh() { [ -f "$1" ] && [ ! pyproject.toml -nt "$1" ]; }
stamp=".venv/.maas-installed-${extras//,/-}"
if ! fresh "$stamp" && ! fresh .venv/.maas-installed-dev; then
  echo "==> installing pinned dependencies ($extras) into .venv (first time: about 2 minutes, 3 GB)"
  .venv/bin/python -m pip install --quiet --upgrade pip==25.3
  .venv/bin/python -m pip install --progress-bar on -e ".[$extras]"
  touch "$stamp"
fi
