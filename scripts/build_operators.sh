#!/usr/bin/env bash
# Build the dataflow operators (edgerm/dataflow_ops/src/*.c) into WASI command
# modules (edgerm/dataflow_ops/*.wasm) with Debian's clang and wasi-libc.
#
#   bash scripts/build_operators.sh           build and write the .wasm files
#   bash scripts/build_operators.sh --check   build into a temporary directory and
#                                             fail if a committed .wasm differs
#
# The built modules are committed, so CI and users need no C toolchain; this
# script is how they were made. Needs (Debian 12):
#   apt-get install --no-install-recommends clang lld wasi-libc libclang-rt-dev-wasm32
# The target is wasm32-wasi (WASI preview 1); --target=wasm32-wasip1 does not
# work with Debian's wasi-libc. No --sysroot: the headers are in /usr/include/wasm32-wasi.
set -euo pipefail
cd "$(dirname "$0")/.."

SRC=edgerm/dataflow_ops/src
OUT=edgerm/dataflow_ops
OPERATORS=(sensor map filter aggregate sink)
CC="${CC:-clang}"
CFLAGS=(--target=wasm32-wasi -O2 -s -std=c11 -D_POSIX_C_SOURCE=200809L -Wall -Wextra -Werror)

check=0
case "${1:-}" in
    --check) check=1 ;;
    "") ;;
    *) echo "usage: $0 [--check]" >&2; exit 2 ;;
esac

if ! command -v "$CC" >/dev/null 2>&1; then
    echo "build_operators: $CC not found; install: apt-get install --no-install-recommends clang lld wasi-libc libclang-rt-dev-wasm32" >&2
    exit 1
fi

dest="$OUT"
if [ "$check" = 1 ]; then
    dest="$(mktemp -d)"
    trap 'rm -rf "$dest"' EXIT
fi

for op in "${OPERATORS[@]}"; do
    "$CC" "${CFLAGS[@]}" -o "$dest/$op.wasm" "$SRC/$op.c" -lm
    echo "built $dest/$op.wasm ($(wc -c <"$dest/$op.wasm") bytes)"
done

if [ "$check" = 1 ]; then
    status=0
    for op in "${OPERATORS[@]}"; do
        if ! cmp -s "$dest/$op.wasm" "$OUT/$op.wasm"; then
            echo "build_operators: $OUT/$op.wasm differs from what $SRC/$op.c builds: run scripts/build_operators.sh" >&2
            status=1
        fi
    done
    exit "$status"
fi
