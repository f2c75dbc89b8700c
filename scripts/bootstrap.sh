#!/usr/bin/env bash
# Creates .venv (once) and installs edgerm with its dev tools into it.
# Sourced by demo.sh and test.sh; safe to run again (it only installs what changed).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.edgerm-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[dev]" 2>&1 | grep -v "^WARNING: Location" || true
  .venv/bin/python -c "import edgerm, aiohttp, wasmtime, google.protobuf" # fail loudly if the install did not work
  touch "$stamp"
fi
