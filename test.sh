#!/usr/bin/env bash
# The test suite: lint, then every test against real Triton servers on free ports.
set -euo pipefail
cd "$(dirname "$0")"
scripts/bootstrap.sh
# The policy scanner's own virtualenv installs while lint and the first tests run.
scripts/checkov.sh --version >/dev/null 2>&1 &
echo "==> ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "==> pytest"
exec .venv/bin/python -m pytest "$@"
