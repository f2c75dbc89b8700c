"""Load a DAG file (YAML or JSON), validate all of it, and say where each problem is.

File format (YAML; JSON with the same structure)::

    name: temperature-alerts
    operators:
      read:                              # operator name
        kind: source                     # source | operator | sink
        wasm: modules/read.wasm          # or  wasm: sha256:<64 hex>  or  docker: image:tag
        args: [--every, 1s]
        env: {UNIT: celsius}
        resources: {cpus: 0.1, mem: 32}  # or "cpus:0.1;mem:32"; ports: "[8080-8080]"
        devices: [temperature]           # claimed whole on the chosen agent
        replicas: 2
        quality: [error_rate above 0.5 for 2s]   # switch this operator to its next fallback when broken
        constraints:
          - os == linux
          - {attribute: zone, op: "=~", value: "^eu-"}
        fallbacks:                       # tried in order when `main` cannot be placed
          - name: lite
            docker: edgerm/read-lite:1   # any omitted field is inherited from main
            resources: {cpus: 0.05, mem: 16}
    edges:
      - read -> smooth -> alert          # a chain, or
      - {from: smooth, to: archive}
    quality:                             # the whole DAG (edgerm.scheduler.quality)
      - sink_rate below 5 for 3s
      - p99_latency above 250ms for 5s

An optional list or mapping left empty (``edges:``) counts as empty.

Rules: every problem is collected (unknown fields, wrong types, impossible
resources, bad constraints, unknown operators in edges, cycles, kind rules)
and raised together as one :class:`DagError` whose ``problems`` each carry
``file:line:column``. Locations come from PyYAML's composed node marks; JSON
is checked with :mod:`json` first (syntax errors keep json's position) and
composed by the YAML reader only to find positions. Module paths are not
checked for existence here: the framework resolves them with
:meth:`Dag.module_path` when it launches.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from edgerm.errors import ConfigError
from edgerm.resources import Resources
from edgerm.scheduler.constraints import Constraint

if TYPE_CHECKING:
    import yaml
from edgerm.scheduler.dag import (
    MAIN,
    Dag,
    DockerExecutor,
    Edge,
    Executor,
    Operator,
    OperatorKind,
    Variant,
    WasmExecutor,
    structure_problems,
)
from edgerm.scheduler.quality import Quality, parse_quality

Path = tuple[str | int, ...]

_TOP = {"name", "operators", "edges", "quality"}
_VARIANT_FIELDS = {"wasm", "docker", "args", "env", "resources", "constraints", "devices"}
_OPERATOR_FIELDS = _VARIANT_FIELDS | {"kind", "replicas", "fallbacks", "quality"}
_FALLBACK_FIELDS = _VARIANT_FIELDS | {"name"}
_CONSTRAINT_FIELDS = {"attribute", "op", "value"}
_EDGE_FIELDS = {"from", "to"}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_ENV = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SHA256 = re.compile(r"sha256:([0-9a-f]{64})")


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem in a DAG file; ``line``/``column`` are 1-based (0: unknown)."""

    source: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}:{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class DagError(ConfigError):
    """A DAG file is invalid; ``problems`` lists every problem found, in file order."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(sorted(problems, key=lambda p: (p.line, p.column)))
        super().__init__("\n".join(str(p) for p in self.problems))


# -- entry points -------------------------------------------------------------------


def load_dag(path: str | os.PathLike[str]) -> Dag:
    """Read and validate a DAG file; the format follows the suffix (``.json`` or YAML)."""
    name = os.fspath(path)
    try:
        with open(name, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise DagError([Problem(name, 0, 0, "", f"cannot read: {e.strerror or e}")]) from None
    fmt = "json" if name.lower().endswith(".json") else "yaml"
    return loads_dag(text, source=name, fmt=fmt, base_dir=os.path.dirname(os.path.abspath(name)))


def loads_dag(text: str, *, source: str = "<string>", fmt: str = "yaml", base_dir: str = "") -> Dag:
    """Validate DAG text (``fmt`` is ``"yaml"`` or ``"json"``); raise :class:`DagError`."""
    if fmt not in ("yaml", "json"):
        raise ValueError(f"unknown DAG format {fmt!r}")
    marks = _Marks(source)
    data: Any
    if fmt == "json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise DagError([Problem(source, e.lineno, e.colno, "", f"invalid JSON: {e.msg}")]) from None
        # JSON forbids raw tabs inside strings, so outside them they are plain
        # whitespace; swapping them for spaces keeps columns and lets the YAML
        # reader (which rejects tabs) find positions.
        marks.scan(text.replace("\t", " "))
    else:
        import yaml  # here, not at the top: PyYAML loads datetime, and the scheduler is a pure core

        try:
            data = yaml.safe_load(text)
        except yaml.MarkedYAMLError as e:
            mark = e.problem_mark or e.context_mark
            line, col = (mark.line + 1, mark.column + 1) if mark else (0, 0)
            raise DagError([Problem(source, line, col, "", f"invalid YAML: {e.problem or e}")]) from None
        except yaml.YAMLError as e:
            raise DagError([Problem(source, 0, 0, "", f"invalid YAML: {e}")]) from None
        marks.scan(text)
    return _Reader(marks, base_dir, default_name=_stem(source)).dag(data)


def dag_from_data(data: object, *, source: str = "<data>", base_dir: str = "") -> Dag:
    """Validate already-parsed data (dicts and lists); problems carry no line numbers."""
    return _Reader(_Marks(source), base_dir, default_name=_stem(source)).dag(data)


def _stem(source: str) -> str:
    base = os.path.basename(source)
    stem = base.split(".", 1)[0]
    return stem if _NAME.fullmatch(stem) else "dag"


# -- locations ----------------------------------------------------------------------


class _Marks:
    """Positions of every value and mapping key, by path, from a composed YAML tree."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.values: dict[Path, tuple[int, int]] = {}
        self.keys: dict[Path, tuple[int, int]] = {}
        self.problems: list[Problem] = []

    def scan(self, text: str) -> None:
        import yaml

        try:
            root = yaml.compose(text, Loader=yaml.SafeLoader)
        except yaml.YAMLError:
            return  # already reported by the parser that produced the data
        if root is not None:
            self._walk(root, ())

    def _walk(self, node: yaml.Node, path: Path) -> None:
        import yaml

        self.values[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key, value in node.value:
                name = str(key.value)
                at = (key.start_mark.line + 1, key.start_mark.column + 1)
                if name in seen and name != "<<":
                    self.problems.append(Problem(self.source, *at, _dotted(path), f"duplicate key {name!r}"))
                seen.add(name)
                self.keys.setdefault((*path, name), at)
                self._walk(value, (*path, name))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                self._walk(item, (*path, i))

    def at(self, path: Path, *, key: bool = False) -> tuple[int, int]:
        """The position of ``path`` (its key when ``key``), else of its nearest ancestor."""
        if key and path in self.keys:
            return self.keys[path]
        p = path
        while True:
            if p in self.values:
                return self.values[p]
            if not p:
                return (0, 0)
            p = p[:-1]


def _dotted(path: Path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# -- validation ---------------------------------------------------------------------


class _Reader:
    """Turns parsed data into a :class:`Dag`, collecting every problem with its place."""

    def __init__(self, marks: _Marks, base_dir: str, default_name: str) -> None:
        self.marks = marks
        self.base_dir = base_dir
        self.default_name = default_name
        self.problems: list[Problem] = list(marks.problems)

    def error(self, path: Path, message: str, *, key: bool = False) -> None:
        line, col = self.marks.at(path, key=key)
        self.problems.append(Problem(self.marks.source, line, col, _dotted(path), message))

    # -- shapes --

    def mapping(self, value: object, path: Path, what: str) -> dict[str, Any] | None:
        if not isinstance(value, dict):
            self.error(path, f"{what} must be a mapping, not {_kind(value)}")
            return None
        return {str(k): v for k, v in value.items()}

    def fields(self, value: Mapping[str, Any], path: Path, allowed: set[str], required: Sequence[str] = ()) -> None:
        for k in value:
            if k not in allowed:
                self.error((*path, k), f"unknown field {k!r} (expected one of {', '.join(sorted(allowed))})", key=True)
        for k in required:
            if k not in value:
                self.error(path, f"missing required field {k!r}")

    def text(self, value: object, path: Path, what: str) -> str | None:
        if isinstance(value, bool) or value is None or isinstance(value, dict | list):
            self.error(path, f"{what} must be text, not {_kind(value)}")
            return None
        return str(value)

    def text_list(self, value: object, path: Path, what: str) -> list[str] | None:
        if not isinstance(value, list):
            self.error(path, f"{what} must be a list, not {_kind(value)}")
            return None
        out = [self.scalar_text(v, (*path, i), what) for i, v in enumerate(value)]
        return None if any(v is None for v in out) else [v for v in out if v is not None]

    def scalar_text(self, value: object, path: Path, what: str) -> str | None:
        if isinstance(value, bool):
            return "true" if value else "false"
        if value is None or isinstance(value, dict | list):
            self.error(path, f"{what} items must be text or numbers, not {_kind(value)}")
            return None
        return str(value)

    # -- the document --

    def dag(self, data: object) -> Dag:
        if data is None:
            self.error((), "the document is empty")
            raise DagError(self.problems)
        top = self.mapping(data, (), "the document")
        if top is None:
            raise DagError(self.problems)
        self.fields(top, (), _TOP, required=("operators",))
        name = self.default_name
        if "name" in top:
            got = self.text(top["name"], ("name",), "name")
            if got is not None and not _NAME.fullmatch(got):
                self.error(("name",), f"bad name {got!r}: letters, digits, '_', '-', '.'")
            elif got is not None:
                name = got
        operators: list[Operator] = []
        kinds: dict[str, OperatorKind | None] = {}
        raw_ops = top.get("operators", {})
        ops = self.mapping(raw_ops, ("operators",), "operators")
        if ops is not None and not ops and "operators" in top:
            self.error(("operators",), "a DAG needs at least one operator")
        quality = self.quality(_or(top.get("quality"), []), ("quality",), None)
        for op_name, spec in (ops or {}).items():
            op, kind = self.operator(op_name, spec, ("operators", op_name))
            kinds[op_name] = kind
            if op is not None:
                operators.append(op)
            if isinstance(spec, dict) and "quality" in spec:
                quality += self.quality(_or(spec["quality"], []), ("operators", op_name, "quality"), op_name)
        edges, edge_paths = self.edges(_or(top.get("edges"), []))
        for p in structure_problems(kinds, edges):
            if p.edge is not None:
                self.error(edge_paths[p.edge], p.message)
            else:
                self.error(("operators", p.operator or ""), p.message, key=True)
        if self.problems:
            raise DagError(self.problems)
        return Dag(name, tuple(operators), tuple(edges), self.base_dir, tuple(quality))

    def quality(self, value: object, path: Path, operator: str | None) -> list[Quality]:
        """Quality conditions: a list of ``<figure> below|above <value> for <period>`` texts."""
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            self.error(path, f"quality must be a list of conditions, not {_kind(value)}")
            return []
        out: list[Quality] = []
        for i, item in enumerate(value):
            if not isinstance(item, str):
                self.error(
                    (*path, i), f"a quality condition is text like `sink_rate below 5 for 3s`, not {_kind(item)}"
                )
                continue
            try:
                out.append(parse_quality(item, operator))
            except ValueError as e:
                self.error((*path, i), str(e))
        return out

    def operator(self, name: str, spec: object, path: Path) -> tuple[Operator | None, OperatorKind | None]:
        if not _NAME.fullmatch(name):
            self.error(path, f"bad operator name {name!r}: letters, digits, '_', '-', '.'", key=True)
        body = self.mapping(spec, path, f"operator {name!r}")
        if body is None:
            return None, None
        self.fields(body, path, _OPERATOR_FIELDS, required=("kind", "resources"))
        kind: OperatorKind | None = None
        if "kind" in body:
            raw = body["kind"]
            kind = next((k for k in OperatorKind if k.value == raw), None)
            if kind is None:
                self.error((*path, "kind"), f"unknown kind {raw!r} (expected source, operator or sink)")
        replicas = 1
        if "replicas" in body:
            raw = body["replicas"]
            if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
                self.error((*path, "replicas"), f"replicas must be a whole number of at least 1, not {raw!r}")
            else:
                replicas = raw
        main = self.variant(MAIN, body, path, None)
        variants = [main]
        names = {MAIN}
        fallbacks = _or(body.get("fallbacks"), [])
        if not isinstance(fallbacks, list):
            self.error((*path, "fallbacks"), f"fallbacks must be a list, not {_kind(fallbacks)}")
            fallbacks = []
        for i, fb in enumerate(fallbacks):
            fpath = (*path, "fallbacks", i)
            fbody = self.mapping(fb, fpath, "a fallback")
            if fbody is None:
                continue
            self.fields(fbody, fpath, _FALLBACK_FIELDS)
            fname = f"fallback{i + 1}"
            if "name" in fbody:
                got = self.text(fbody["name"], (*fpath, "name"), "a fallback's name")
                if got is not None and (not _NAME.fullmatch(got) or got in names):
                    why = "is taken" if got in names else "is not a valid name"
                    self.error((*fpath, "name"), f"fallback name {got!r} {why}")
                elif got is not None:
                    fname = got
            names.add(fname)
            variants.append(self.variant(fname, fbody, fpath, main))
        if kind is None or any(v is None for v in variants):
            return None, kind
        return Operator(name, kind, tuple(v for v in variants if v is not None), replicas), kind

    def variant(self, name: str, body: Mapping[str, Any], path: Path, base: Variant | None) -> Variant | None:
        ok = True
        executor: Executor | None = base.executor if base else None
        given = [k for k in body if k in ("wasm", "docker")]
        if len(given) > 1:
            self.error((*path, given[1]), "give one executor: wasm or docker, not both", key=True)
            ok = False
        elif given:
            executor = self.executor(given[0], body[given[0]], (*path, given[0]))
            ok = executor is not None
        elif base is None:
            self.error(path, "missing executor: give `wasm: <module path or sha256:...>` or `docker: <image>`")
            ok = False
        resources = base.resources if base else None
        if "resources" in body:
            resources = self.resources(body["resources"], (*path, "resources"))
        args: tuple[str, ...] = base.args if base else ()
        if "args" in body:
            got = self.text_list(_or(body["args"], []), (*path, "args"), "args")
            ok = ok and got is not None
            args = tuple(got or ())
        env: Mapping[str, str] = base.env if base else {}
        if "env" in body:
            got_env = self.env(_or(body["env"], {}), (*path, "env"))
            ok = ok and got_env is not None
            env = got_env or {}
        constraints: tuple[Constraint, ...] = base.constraints if base else ()
        if "constraints" in body:
            got_c = self.constraints(_or(body["constraints"], []), (*path, "constraints"))
            ok = ok and got_c is not None
            constraints = tuple(got_c or ())
        devices: tuple[str, ...] = base.devices if base else ()
        if "devices" in body:
            got_d = self.devices(_or(body["devices"], []), (*path, "devices"))
            ok = ok and got_d is not None
            devices = tuple(got_d or ())
        if not ok or executor is None or resources is None:
            return None
        return Variant(name, executor, resources, args, env, constraints, devices)

    def executor(self, kind: str, value: object, path: Path) -> Executor | None:
        ref = self.text(value, path, f"the {kind} executor")
        if ref is None:
            return None
        ref = ref.strip()
        if not ref:
            self.error(path, f"the {kind} executor is empty")
            return None
        if kind == "docker":
            return DockerExecutor(ref)
        if ref.startswith("sha256:"):
            m = _SHA256.fullmatch(ref)
            if not m:
                self.error(path, "a module hash is sha256: followed by 64 lowercase hex digits")
                return None
            return WasmExecutor(sha256=m.group(1))
        return WasmExecutor(module=ref)

    def resources(self, value: object, path: Path) -> Resources | None:
        parts: list[tuple[str, str, Path]] = []
        if isinstance(value, str):
            parts = [(p.partition(":")[0].strip(), p.strip(), path) for p in value.split(";") if p.strip()]
        elif isinstance(value, dict):
            for k, v in value.items():
                vpath = (*path, str(k))
                if isinstance(v, bool) or v is None or isinstance(v, dict | list):
                    self.error(vpath, f"resource {k!r} must be a number or text, not {_kind(v)}")
                    return None
                parts.append((str(k), f"{k}:{v}", vpath))
        else:
            self.error(path, f"resources must be a mapping or text like 'cpus:1;mem:256', not {_kind(value)}")
            return None
        ok = True
        for name, part, ppath in parts:
            try:
                one = Resources.parse(part)
            except ValueError as e:
                self.error(ppath, str(e))
                ok = False
                continue
            amount = part.partition(":")[2].strip()
            if one.devices:
                self.error(ppath, f"device {name!r} belongs in `devices: [{name}]`, not in resources")
                ok = False
            elif not amount.startswith(("[", "{")) and not math.isfinite(float(amount)):
                self.error(ppath, f"resource {name!r} must be a finite number")
                ok = False
        if not ok:
            return None
        res = Resources.parse(";".join(p for _, p, _ in parts))
        if res.cpus <= 0 and res.mem <= 0:
            self.error(
                path, "resources must ask for some cpus or mem (an operator that needs nothing cannot be placed)"
            )
            return None
        return res

    def env(self, value: object, path: Path) -> dict[str, str] | None:
        body = self.mapping(value, path, "env")
        if body is None:
            return None
        out: dict[str, str] = {}
        for k, v in body.items():
            if not _ENV.fullmatch(k):
                self.error((*path, k), f"bad environment variable name {k!r}", key=True)
                continue
            got = self.scalar_text(v, (*path, k), "env")
            if got is not None:
                out[k] = got
        return out if len(out) == len(body) else None

    def constraints(self, value: object, path: Path) -> list[Constraint] | None:
        if not isinstance(value, list):
            self.error(path, f"constraints must be a list, not {_kind(value)}")
            return None
        out: list[Constraint] = []
        for i, item in enumerate(value):
            cpath = (*path, i)
            try:
                if isinstance(item, str):
                    out.append(Constraint.parse(item))
                    continue
                body = self.mapping(item, cpath, "a constraint")
                if body is None:
                    continue
                self.fields(body, cpath, _CONSTRAINT_FIELDS, required=("attribute", "op", "value"))
                if not body.keys() >= _CONSTRAINT_FIELDS:
                    continue
                raw = body["value"]
                val: str | list[str] = [str(v) for v in raw] if isinstance(raw, list) else str(raw)
                out.append(Constraint.build(str(body["attribute"]), str(body["op"]), val))
            except ValueError as e:
                self.error(cpath, str(e))
        return out if len(out) == len(value) else None

    def devices(self, value: object, path: Path) -> list[str] | None:
        names = self.text_list(value, path, "devices")
        if names is None:
            return None
        ok = True
        for i, n in enumerate(names):
            if not _NAME.fullmatch(n):
                self.error((*path, i), f"bad device name {n!r}")
                ok = False
            elif n in names[:i]:
                self.error((*path, i), f"device {n!r} is listed twice")
                ok = False
        return names if ok else None

    def edges(self, value: object) -> tuple[list[Edge], list[Path]]:
        path: Path = ("edges",)
        if not isinstance(value, list):
            self.error(path, f"edges must be a list, not {_kind(value)}")
            return [], []
        edges: list[Edge] = []
        paths: list[Path] = []
        for i, item in enumerate(value):
            epath = (*path, i)
            if isinstance(item, str):
                names = [n.strip() for n in item.split("->")]
                if len(names) < 2 or not all(names):
                    self.error(epath, f"bad edge {item!r}: expected 'a -> b' (or a chain 'a -> b -> c')")
                    continue
                for a, b in pairwise(names):
                    edges.append(Edge(a, b))
                    paths.append(epath)
                continue
            body = self.mapping(item, epath, "an edge")
            if body is None:
                continue
            self.fields(body, epath, _EDGE_FIELDS, required=("from", "to"))
            src = self.text(body["from"], (*epath, "from"), "an edge's from") if "from" in body else None
            dst = self.text(body["to"], (*epath, "to"), "an edge's to") if "to" in body else None
            if src is not None and dst is not None:
                edges.append(Edge(src, dst))
                paths.append(epath)
        return edges, paths


def _or(value: object, empty: object) -> object:
    """``empty`` for a field left blank (YAML null), else the value as given."""
    return empty if value is None else value


def _kind(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, int | float):
        return "a number"
    return "text"
