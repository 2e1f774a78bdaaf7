#!/usr/bin/env bash
# checkov, the policy scanner the deployment tests run, in a virtualenv of its own (it pins
# boto3, an old packaging and more, which would fight the project's pins): made once in the
# cache (about a minute), then reused. Arguments go to checkov; test.sh starts it early in the
# background so the install overlaps the lint and the first tests.
set -euo pipefail
version=3.3.30
venv="${MAAS_CACHE:-$HOME/.cache/maas}/tools/checkov-$version"
mkdir -p "$(dirname "$venv")"
(
  flock 9  # one install at a time; a second caller waits for the first
  if [ ! -x "$venv/bin/checkov" ]; then
    rm -rf "$venv"
    python3.11 -m venv "$venv" 2>/dev/null || python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet "checkov==$version" ||
      { rm -rf "$venv"; echo "error: installing checkov==$version failed" >&2; exit 1; }
  fi
) 9>"$venv.lock"
exec "$venv/bin/checkov" "$@"
