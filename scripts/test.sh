#!/usr/bin/env bash
# The whole test suite, as CI runs it: install, generated-code drift check, ruff, mypy --strict, pytest.
# On a machine where we are root and Docker is not running (CI), it installs and starts the Docker engine first,
# so the Docker integration tests run for real; likewise it installs mosquitto for the data-plane tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export PATH="$PWD/.venv/bin:$PATH"

# Setup scripts are quiet: their output (apt's included) goes to $SETUP_LOG and is shown only when one fails;
# what each one did (installed, started, built, or found already there) is printed as one line per step.
SETUP_LOG="$PWD/.test-setup.log"
: >"$SETUP_LOG"
setup() {
  local name=$1 script=$2
  if ! bash "$script" >>"$SETUP_LOG" 2>&1; then
    echo "== $name failed; the end of $SETUP_LOG:" >&2
    tail -n 40 "$SETUP_LOG" >&2
    exit 1
  fi
  grep "^$(basename "$script" .sh): " "$SETUP_LOG" | sed "s/^[a-z_]*: /   /" || true
}

if [ -f scripts/setup_docker.sh ] && { [ "${CI:-}" = "true" ] || [ "$(id -u)" = 0 ]; }; then
  echo "== docker engine (output in $SETUP_LOG)"
  setup "docker setup" scripts/setup_docker.sh
fi

if [ -f scripts/build_python_image.sh ] && docker info >/dev/null 2>&1; then
  echo "== python test image (Docker dataflow operators; cached by content hash)"
  bash scripts/build_python_image.sh
fi

if [ -f scripts/setup_mosquitto.sh ] && { [ "${CI:-}" = "true" ] || [ "$(id -u)" = 0 ]; }; then
  echo "== mosquitto, for the data-plane tests (output in $SETUP_LOG)"
  setup "mosquitto setup" scripts/setup_mosquitto.sh
fi

if [ -f scripts/setup_chromium.sh ] && { [ "${CI:-}" = "true" ] || [ "$(id -u)" = 0 ]; }; then
  echo "== chromium (the dashboard tests load every page in it, headless)"
  bash scripts/setup_chromium.sh
fi

echo "== generated protobuf code is up to date"
tmp=$(mktemp -d)
python -m grpc_tools.protoc -Iproto --python_out="$tmp" --pyi_out="$tmp" proto/edgerm/v1/*.proto
for f in "$tmp"/edgerm/v1/*; do
  if ! cmp -s "$f" "edgerm/v1/$(basename "$f")"; then
    echo "edgerm/v1/$(basename "$f") differs from what proto/ generates: run scripts/gen_proto.sh" >&2
    exit 1
  fi
done
rm -rf "$tmp"

echo "== ruff"
paths=(); for d in edgerm tests bench examples; do [ -d "$d" ] && paths+=("$d"); done
ruff check "${paths[@]}"
ruff format --check "${paths[@]}"
echo "== mypy --strict"
mypy edgerm
echo "== pytest"
python -m pytest -q "$@"
