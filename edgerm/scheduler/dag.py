"""The dataflow DAG: operators (source, operator, sink), their variants, and edges.

An :class:`Operator` runs as ``replicas`` instances. Each instance runs one
:class:`Variant`: the main one (``variants[0]``, named ``main``) or, when the
main one cannot be placed, one of its declared fallbacks, tried in order. A
variant says what to run (:class:`WasmExecutor` or :class:`DockerExecutor`),
with which args/env, resources, attribute constraints and named devices (a
source reads a sensor, a sink drives an actuator). Devices are named, not
addressed: the scheduler claims the agent's device of that name.

Rules enforced when a :class:`Dag` is built (programmatic construction
raises ``ValueError``; :mod:`edgerm.scheduler.loader` reports the same
problems with file locations, all at once):

- operator names are unique; edges name known operators; no self-loops, no
  duplicate edges, no cycles;
- a source has no incoming edge, a sink no outgoing edge, and every
  operator or sink has at least one input;
- variant names are unique per operator and the first is ``main``.

The DAG keeps declaration order; :meth:`Dag.order` is a stable topological
order (upstream first), which is the order instances are placed in.
"""

from __future__ import annotations

import enum
import heapq
import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from edgerm.resources import Resources
from edgerm.scheduler.constraints import Constraint
from edgerm.scheduler.quality import Quality

MAIN = "main"


class OperatorKind(enum.Enum):
    SOURCE = "source"
    OPERATOR = "operator"
    SINK = "sink"


@dataclass(frozen=True, slots=True)
class WasmExecutor:
    """A WASI command module: a file path (relative to the DAG file) or a content hash."""

    module: str = ""
    sha256: str = ""

    def __post_init__(self) -> None:
        if bool(self.module) == bool(self.sha256):
            raise ValueError("a wasm executor names exactly one of a module path or a sha256")

    @property
    def kind(self) -> str:
        return "wasm"

    def __str__(self) -> str:
        return f"wasm:{self.module or 'sha256:' + self.sha256}"


@dataclass(frozen=True, slots=True)
class DockerExecutor:
    """A Docker image reference."""

    image: str

    def __post_init__(self) -> None:
        if not self.image:
            raise ValueError("a docker executor needs an image")

    @property
    def kind(self) -> str:
        return "docker"

    def __str__(self) -> str:
        return f"docker:{self.image}"


Executor = WasmExecutor | DockerExecutor


@dataclass(frozen=True, slots=True)
class Variant:
    """One way to run an operator: executor, arguments, needs."""

    name: str
    executor: Executor
    resources: Resources
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    constraints: tuple[Constraint, ...] = ()
    devices: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.resources.devices:
            raise ValueError(f"variant {self.name!r}: devices go in `devices`, not in resources")
        if len(set(self.devices)) != len(self.devices):
            raise ValueError(f"variant {self.name!r}: a device is listed twice")

    def same_placement_needs(self, other: Variant) -> bool:
        """True when ``other`` needs exactly what this variant needs (placement stays valid)."""
        return (
            self.executor == other.executor
            and self.resources == other.resources
            and self.constraints == other.constraints
            and self.devices == other.devices
        )


@dataclass(frozen=True, slots=True)
class Operator:
    """A named step of the dataflow, run as ``replicas`` instances."""

    name: str
    kind: OperatorKind
    variants: tuple[Variant, ...]
    replicas: int = 1

    def __post_init__(self) -> None:
        if not self.variants:
            raise ValueError(f"operator {self.name!r} has no executor")
        if self.variants[0].name != MAIN:
            raise ValueError(f"operator {self.name!r}: the first variant must be named {MAIN!r}")
        names = [v.name for v in self.variants]
        if len(set(names)) != len(names):
            raise ValueError(f"operator {self.name!r}: duplicate variant names")
        if self.replicas < 1:
            raise ValueError(f"operator {self.name!r}: replicas must be at least 1")

    @property
    def main(self) -> Variant:
        return self.variants[0]

    @property
    def fallbacks(self) -> tuple[Variant, ...]:
        return self.variants[1:]

    def variant(self, name: str) -> Variant | None:
        return next((v for v in self.variants if v.name == name), None)

    def rank_of(self, name: str) -> int:
        """The variant's position (0 = main); ``len(variants)`` if unknown."""
        return next((i for i, v in enumerate(self.variants) if v.name == name), len(self.variants))


@dataclass(frozen=True, slots=True, order=True)
class Instance:
    """One replica of an operator; ``str`` is ``name#replica``."""

    operator: str
    replica: int = 0

    def __str__(self) -> str:
        return f"{self.operator}#{self.replica}"


@dataclass(frozen=True, slots=True)
class Edge:
    """Data flows from ``source`` to ``target`` (one MQTT topic per edge)."""

    source: str
    target: str

    def __str__(self) -> str:
        return f"{self.source} -> {self.target}"


def find_cycle(names: list[str], edges: list[Edge]) -> list[str] | None:
    """Operator names along one cycle (first repeated at the end), or ``None``."""
    out: dict[str, list[str]] = {n: [] for n in names}
    for e in edges:
        out.setdefault(e.source, []).append(e.target)
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    for root in names:
        if state.get(root):
            continue
        stack: list[tuple[str, Iterator[str]]] = [(root, iter(out.get(root, ())))]
        path = [root]
        state[root] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                stack.pop()
                path.pop()
                state[node] = 2
            elif state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append((nxt, iter(out.get(nxt, ()))))
    return None


@dataclass(frozen=True, slots=True)
class Dag:
    """A validated dataflow graph; see the module docstring for its rules."""

    name: str
    operators: tuple[Operator, ...]
    edges: tuple[Edge, ...] = ()
    base_dir: str = ""  # directory of the file it was loaded from; module paths are relative to it
    quality: tuple[Quality, ...] = ()  # conditions over live figures (edgerm.scheduler.quality)
    _by_name: dict[str, Operator] = field(default_factory=dict, init=False, repr=False, compare=False)
    _up: dict[str, tuple[str, ...]] = field(default_factory=dict, init=False, repr=False, compare=False)
    _down: dict[str, tuple[str, ...]] = field(default_factory=dict, init=False, repr=False, compare=False)
    _order: tuple[str, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by_name = {op.name: op for op in self.operators}
        problems = [p.message for p in structure_problems({op.name: op.kind for op in self.operators}, self.edges)]
        if len(by_name) != len(self.operators):
            problems.insert(0, "duplicate operator names")
        problems += [
            f"quality condition {q} names no operator {q.operator!r}"
            for q in self.quality
            if q.operator is not None and q.operator not in by_name
        ]
        if problems:
            raise ValueError("; ".join(problems))
        up: dict[str, list[str]] = {n: [] for n in by_name}
        down: dict[str, list[str]] = {n: [] for n in by_name}
        for e in self.edges:
            up[e.target].append(e.source)
            down[e.source].append(e.target)
        object.__setattr__(self, "_by_name", by_name)
        object.__setattr__(self, "_up", {k: tuple(v) for k, v in up.items()})
        object.__setattr__(self, "_down", {k: tuple(v) for k, v in down.items()})
        object.__setattr__(self, "_order", _topological(self.operators, down, up))

    def operator(self, name: str) -> Operator:
        """The operator called ``name``; ``KeyError`` if there is none."""
        return self._by_name[name]

    def get(self, name: str) -> Operator | None:
        return self._by_name.get(name)

    def upstream(self, name: str) -> tuple[str, ...]:
        return self._up[name]

    def downstream(self, name: str) -> tuple[str, ...]:
        return self._down[name]

    def order(self) -> tuple[str, ...]:
        """Operator names, upstream before downstream, ties in declaration order."""
        return self._order

    def instances(self) -> list[Instance]:
        """Every operator instance, in placement order."""
        return [Instance(n, r) for n in self._order for r in range(self._by_name[n].replicas)]

    def module_path(self, executor: WasmExecutor) -> str:
        """The module's path resolved against the DAG file's directory."""
        return os.path.join(self.base_dir, executor.module) if executor.module else ""


@dataclass(frozen=True, slots=True)
class StructureProblem:
    """A problem with the graph's shape; ``edge`` indexes the edge list, else ``operator`` is named."""

    message: str
    edge: int | None = None
    operator: str | None = None


def structure_problems(kinds: Mapping[str, OperatorKind | None], edges: Sequence[Edge]) -> list[StructureProblem]:
    """Every problem with the graph's shape, in edge order; empty if none.

    ``kinds`` maps each operator name to its kind (``None`` when unknown, which
    skips the kind rules for it).
    """
    problems: list[StructureProblem] = []
    seen: set[tuple[str, str]] = set()
    has_input: set[str] = set()
    good: list[tuple[int, Edge]] = []
    for i, e in enumerate(edges):
        bad = [n for n in (e.source, e.target) if n not in kinds]
        if bad:
            problems.extend(StructureProblem(f"edge {e} names unknown operator {n!r}", edge=i) for n in bad)
            continue
        if e.source == e.target:
            problems.append(StructureProblem(f"edge {e} is a self-loop", edge=i))
            continue
        if (e.source, e.target) in seen:
            problems.append(StructureProblem(f"duplicate edge {e}", edge=i))
            continue
        seen.add((e.source, e.target))
        if kinds[e.target] is OperatorKind.SOURCE:
            problems.append(StructureProblem(f"edge {e} enters source {e.target!r}", edge=i))
        if kinds[e.source] is OperatorKind.SINK:
            problems.append(StructureProblem(f"edge {e} leaves sink {e.source!r}", edge=i))
        has_input.add(e.target)
        good.append((i, e))
    for name, kind in kinds.items():
        if kind is not None and kind is not OperatorKind.SOURCE and name not in has_input:
            problems.append(StructureProblem(f"{kind.value} {name!r} has no input edge", operator=name))
    cycle = find_cycle(list(kinds), [e for _, e in good])
    if cycle:
        closing = next(i for i, e in good if (e.source, e.target) == (cycle[-2], cycle[-1]))
        problems.append(StructureProblem(f"cycle {' -> '.join(cycle)}", edge=closing))
    return problems


def _topological(
    operators: tuple[Operator, ...], down: dict[str, list[str]], up: dict[str, list[str]]
) -> tuple[str, ...]:
    """Kahn's algorithm; among ready operators the earliest declared goes first."""
    index = {op.name: i for i, op in enumerate(operators)}
    indegree = {n: len(up[n]) for n in index}
    ready = [(i, n) for n, i in index.items() if indegree[n] == 0]
    heapq.heapify(ready)
    out: list[str] = []
    while ready:
        _, n = heapq.heappop(ready)
        out.append(n)
        for m in down[n]:
            indegree[m] -= 1
            if indegree[m] == 0:
                heapq.heappush(ready, (index[m], m))
    return tuple(out)
