"""The builtin dataflow operators: WASI command modules shipped with edgerm.

A DAG names one as ``executor: {wasm: builtin:<name>}``; :func:`load_builtin`
gives its bytes. Each reads a micro-batch of records on stdin and writes
records on stdout (docs/dataflow.md):

=========  ================================================  ==========================
name       does                                              args
=========  ================================================  ==========================
sensor     drops non-finite / out-of-range readings,         ``--min --max --scale
           then calibrates (value * scale + offset)          --offset``
map        value * scale + offset                            ``--scale --offset``
filter     keeps records with value above and/or below       ``--above --below``
aggregate  tumbling window of N records -> mean/min/max/     ``--window N --agg mean``
           sum/count, one record per window
sink       formats records (records, csv, json lines)        ``--format --precision``
=========  ================================================  ==========================

Sources are in ``src/`` (C, built by ``scripts/build_operators.sh`` with
Debian's clang for wasm32-wasi); the built ``.wasm`` files are package data.
"""

from __future__ import annotations

from importlib import resources

from edgerm.errors import ConfigError

BUILTINS = ("sensor", "map", "filter", "aggregate", "sink")
PREFIX = "builtin:"


def is_builtin(ref: str) -> bool:
    """Whether a module reference names a builtin operator (``builtin:map``)."""
    return ref.startswith(PREFIX)


def load_builtin(name: str) -> bytes:
    """The module bytes of a builtin operator, by name (``map``) or reference (``builtin:map``)."""
    bare = name[len(PREFIX) :] if is_builtin(name) else name
    if bare not in BUILTINS:
        raise ConfigError(f"no builtin operator {bare!r} (there are: {', '.join(BUILTINS)})")
    return resources.files(__name__).joinpath(f"{bare}.wasm").read_bytes()
