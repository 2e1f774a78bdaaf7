#!/usr/bin/env bash
# The test suite: lint, then every test against real Triton servers on free ports.
set -euo pipefail
cd "$(dirname "$0")"
scripts/bootstrap.sh
echo "==> ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "==> pytest"
exec .venv/bin/python -m pytest "$@"
