#!/usr/bin/env bash
# The demo: a master, two agents and a framework running WebAssembly tasks (no Docker needed), then stops them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m edgerm.demo "$@"
