#!/usr/bin/env bash
# The demo: a master, three agents and the temperature dataflow pipeline (no Docker, no broker needed), then stops them.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m edgerm.demo "$@"
