"""Offline validation of a dataflow DAG file: the scheduler's checks, then the dataflow contract's.

:func:`load` reads and validates a file, :func:`loads` text (YAML or JSON).
Both raise :class:`~edgerm.scheduler.loader.DagError`, whose ``problems``
carry ``file:line:column``, listing every problem at once. On top of the
scheduler loader's checks (fields, types, resources, constraints, edges,
cycles) they check what the data plane needs:

- a source variant claims a device (the one it reads, ``devices: [name]``);
- a WASM module can be found (``builtin:<name>`` or a file next to the DAG);
- a variant's ``env`` does not set the keys the framework fills in, and the
  tunables it sets are well formed (``EDGERM_DF_PERIOD``, ``_BATCH``, ...);
- a quality condition has a fallback to switch to (its operator's, or for
  the DAG's conditions, some operator's).

Rules: no network; files are only read (the DAG, and the modules' existence
is checked). Positions come from composing the YAML (JSON is YAML), pointing
at the field where a variant sets the value, else the nearest parent.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import yaml

from edgerm.frameworks.dataflow.contract import env_problems
from edgerm.frameworks.dataflow.modules import module_problem
from edgerm.scheduler.dag import Dag, OperatorKind
from edgerm.scheduler.loader import DagError, Problem, loads_dag

Path = tuple[str | int, ...]


def detect_format(text: str, name: str = "") -> str:
    """``json`` for a ``.json`` name or text starting with ``{``, else ``yaml``."""
    if name.lower().endswith(".json") or text.lstrip().startswith("{"):
        return "json"
    return "yaml"


def load(path: str | os.PathLike[str]) -> Dag:
    """Read and validate a DAG file (scheduler and dataflow checks)."""
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise DagError([Problem(name, 0, 0, "", f"cannot read: {e.strerror or e}")]) from None
    return loads(text, source=name, base_dir=os.path.dirname(os.path.abspath(name)))


def loads(text: str, *, source: str = "<string>", fmt: str | None = None, base_dir: str = "") -> Dag:
    """Validate DAG text; the format is detected unless given."""
    fmt = fmt or detect_format(text, source)
    dag = loads_dag(text, source=source, fmt=fmt, base_dir=base_dir)
    found = contract_problems(dag)
    if found:
        marks = _Positions(text.replace("\t", " ") if fmt == "json" else text)
        raise DagError([_problem(source, marks, paths, message) for paths, message in found])
    return dag


def contract_problems(dag: Dag) -> list[tuple[Sequence[Path], str]]:
    """The dataflow contract's problems with ``dag``: (candidate paths, message) pairs.

    The paths are tried in order for a position: the variant's own field
    first, then where it inherits from.
    """
    out: list[tuple[Sequence[Path], str]] = []
    for op in dag.operators:
        base: Path = ("operators", op.name)
        for i, v in enumerate(op.variants):
            here: Path = base if i == 0 else (*base, "fallbacks", i - 1)
            label = "" if i == 0 else f"fallback {v.name!r}: "
            if op.kind is OperatorKind.SOURCE and not v.devices:
                out.append(
                    (
                        [(*here, "devices"), (*base, "devices"), here],
                        f"{label}a source reads a device: add devices: [<name>]",
                    )
                )
            problem = module_problem(dag, v.executor)
            if problem is not None and (i == 0 or v.executor != op.main.executor):
                out.append(([(*here, "wasm"), here], f"{label}{problem}"))
            if i == 0 or v.env != op.main.env:
                for message in env_problems(v.env):
                    key = message.split("=", 1)[0].split(" ", 1)[0]
                    out.append(([(*here, "env", key), (*here, "env"), here], f"{label}{message}"))
    out += _quality_problems(dag)
    return out


def _quality_problems(dag: Dag) -> list[tuple[Sequence[Path], str]]:
    """A quality condition needs a fallback to switch to."""
    out: list[tuple[Sequence[Path], str]] = []
    index: dict[str | None, int] = {}
    for q in dag.quality:
        i = index.get(q.operator, 0)
        index[q.operator] = i + 1
        if q.operator is None:
            if not any(op.fallbacks for op in dag.operators):
                out.append(([("quality", i), ("quality",)], f"{q}: no operator has a fallback to switch to"))
        elif not dag.operator(q.operator).fallbacks:
            path: Path = ("operators", q.operator, "quality")
            out.append(([(*path, i), path], f"{q}: operator {q.operator!r} has no fallback to switch to"))
    return out


def _problem(source: str, marks: _Positions, paths: Sequence[Path], message: str) -> Problem:
    for path in paths:
        at = marks.get(path)
        if at is not None:
            return Problem(source, at[0], at[1], _dotted(path), message)
    line, col = marks.nearest(paths[-1])
    return Problem(source, line, col, _dotted(paths[-1]), message)


def _dotted(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _Positions:
    """1-based (line, column) of every value in a YAML/JSON document, by path."""

    def __init__(self, text: str) -> None:
        self._at: dict[Path, tuple[int, int]] = {}
        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError:
            return
        if root is not None:
            self._walk(root, ())

    def _walk(self, node: yaml.Node, path: Path) -> None:
        self._at.setdefault(path, (node.start_mark.line + 1, node.start_mark.column + 1))
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                self._walk(value, (*path, str(key.value)))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._walk(item, (*path, i))

    def get(self, path: Path) -> tuple[int, int] | None:
        return self._at.get(path)

    def nearest(self, path: Path) -> tuple[int, int]:
        p = path
        while p:
            if p in self._at:
                return self._at[p]
            p = p[:-1]
        return self._at.get((), (0, 0))


def problems_json(error: DagError) -> list[dict[str, object]]:
    """A DagError's problems as JSON-ready objects (for the HTTP API)."""
    return [
        {"source": p.source, "line": p.line, "column": p.column, "path": p.path, "message": p.message}
        for p in error.problems
    ]


__all__ = ["DagError", "Problem", "contract_problems", "detect_format", "load", "loads", "problems_json"]
