#!/usr/bin/env bash
# Build the Rust example operator (examples/operators/rust/scale.rs) into a WASI
# command module (examples/operators/rust/scale.wasm) with Debian's rustc.
#
#   bash scripts/build_rust_operator.sh [OUT.wasm]
#
# Needs (Debian 12): apt-get install --no-install-recommends rustc libstd-rust-dev-wasm32
# rustup cannot add wasm targets here; Debian's rustc (1.63) knows wasm32-wasi
# (WASI preview 1) once libstd-rust-dev-wasm32 is installed. No crates, no cargo.
# The built module is committed, so tests and users need no Rust toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
RUSTC="${RUSTC:-/usr/bin/rustc}"
OUT="${1:-examples/operators/rust/scale.wasm}"
if ! [ -x "$RUSTC" ]; then
    echo "build_rust_operator: $RUSTC not found; install: apt-get install --no-install-recommends rustc libstd-rust-dev-wasm32" >&2
    exit 1
fi
"$RUSTC" --edition 2021 --target wasm32-wasi -O -C strip=symbols -o "$OUT" examples/operators/rust/scale.rs
echo "build_rust_operator: built $OUT ($(wc -c <"$OUT") bytes)" >&2
