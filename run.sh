#!/usr/bin/env bash
# The main job: set up .venv if needed, build missing models, start Triton and open the game.
set -euo pipefail
cd "$(dirname "$0")"
MAAS_EXTRAS=server,game scripts/bootstrap.sh
exec .venv/bin/maas play "$@"
