#!/usr/bin/env bash
# Regenerates edgerm/v1/*_pb2.py(i) from proto/ with the pinned grpcio-tools.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m grpc_tools.protoc -Iproto --python_out=. --pyi_out=. proto/edgerm/v1/*.proto
