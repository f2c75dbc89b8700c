"""The DAG model: structural rules, order, instances, variants."""

from __future__ import annotations

import pytest

from edgerm.resources import Resources
from edgerm.scheduler.dag import (
    Dag,
    DockerExecutor,
    Edge,
    Instance,
    Operator,
    OperatorKind,
    Variant,
    WasmExecutor,
    find_cycle,
    structure_problems,
)

RES = Resources.parse("cpus:0.1;mem:32")


def op(name: str, kind: OperatorKind = OperatorKind.OPERATOR, replicas: int = 1) -> Operator:
    return Operator(name, kind, (Variant("main", WasmExecutor(module=f"{name}.wasm"), RES),), replicas)


def test_order_is_topological_with_declaration_ties() -> None:
    dag = Dag(
        "d",
        (op("sink", OperatorKind.SINK), op("b"), op("a"), op("src", OperatorKind.SOURCE)),
        (Edge("src", "a"), Edge("src", "b"), Edge("a", "sink"), Edge("b", "sink")),
    )
    assert dag.order() == ("src", "b", "a", "sink")
    assert dag.upstream("sink") == ("a", "b")
    assert dag.downstream("src") == ("a", "b")


def test_instances_follow_order_and_replicas() -> None:
    dag = Dag("d", (op("s", OperatorKind.SOURCE, replicas=2), op("k", OperatorKind.SINK)), (Edge("s", "k"),))
    assert dag.instances() == [Instance("s", 0), Instance("s", 1), Instance("k", 0)]
    assert str(Instance("s", 1)) == "s#1"


@pytest.mark.parametrize(
    ("ops", "edges", "message"),
    [
        ([op("s", OperatorKind.SOURCE)], [Edge("s", "x")], "unknown operator 'x'"),
        (
            [op("s", OperatorKind.SOURCE), op("k", OperatorKind.SINK)],
            [Edge("s", "k"), Edge("s", "k")],
            "duplicate edge",
        ),
        ([op("s", OperatorKind.SOURCE), op("a")], [Edge("s", "a"), Edge("a", "a")], "self-loop"),
        ([op("s", OperatorKind.SOURCE), op("t", OperatorKind.SOURCE)], [Edge("s", "t")], "enters source 't'"),
        (
            [op("s", OperatorKind.SOURCE), op("k", OperatorKind.SINK), op("a")],
            [Edge("s", "k"), Edge("k", "a")],
            "leaves sink 'k'",
        ),
        ([op("s", OperatorKind.SOURCE), op("a")], [], "operator 'a' has no input edge"),
        (
            [op("s", OperatorKind.SOURCE), op("a"), op("b")],
            [Edge("s", "a"), Edge("a", "b"), Edge("b", "a")],
            "cycle a -> b -> a",
        ),
        ([op("s", OperatorKind.SOURCE), op("s", OperatorKind.SOURCE)], [], "duplicate operator"),
    ],
)
def test_structure_rules(ops: list[Operator], edges: list[Edge], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Dag("d", tuple(ops), tuple(edges))


def test_structure_problems_point_at_edges_and_operators() -> None:
    kinds = {"s": OperatorKind.SOURCE, "a": OperatorKind.OPERATOR, "b": None}
    problems = structure_problems(kinds, [Edge("s", "a"), Edge("a", "zz"), Edge("a", "s")])
    assert [(p.edge, p.operator) for p in problems] == [(1, None), (2, None), (2, None)]
    assert "unknown operator 'zz'" in problems[0].message
    assert "enters source" in problems[1].message
    assert problems[2].message == "cycle s -> a -> s"
    # an operator of unknown kind is not held to the kind rules
    assert not [p for p in problems if p.operator == "b"]


def test_find_cycle() -> None:
    assert find_cycle(["a", "b", "c"], [Edge("a", "b"), Edge("b", "c")]) is None
    assert find_cycle(["a", "b", "c"], [Edge("a", "b"), Edge("b", "c"), Edge("c", "b")]) == ["b", "c", "b"]


def test_variants_and_executors() -> None:
    main = Variant("main", DockerExecutor("img:1"), RES)
    lite = Variant("lite", WasmExecutor(sha256="ab" * 32), RES)
    o = Operator("x", OperatorKind.SOURCE, (main, lite))
    assert o.main is main and o.fallbacks == (lite,)
    assert o.variant("lite") is lite and o.variant("nope") is None
    assert o.rank_of("lite") == 1 and o.rank_of("nope") == 2
    assert main.executor.kind == "docker" and lite.executor.kind == "wasm"
    assert str(lite.executor) == "wasm:sha256:" + "ab" * 32
    with pytest.raises(ValueError, match="first variant"):
        Operator("x", OperatorKind.SOURCE, (lite,))
    with pytest.raises(ValueError, match="duplicate variant"):
        Operator("x", OperatorKind.SOURCE, (main, main))
    with pytest.raises(ValueError, match="exactly one"):
        WasmExecutor()
    with pytest.raises(ValueError, match="not in resources"):
        Variant("main", main.executor, Resources.parse("cam:device(x)"))
    with pytest.raises(ValueError, match="replicas"):
        Operator("x", OperatorKind.SOURCE, (main,), replicas=0)


def test_same_placement_needs_ignores_args_and_env() -> None:
    a = Variant("main", DockerExecutor("img:1"), RES, args=("-v",))
    b = Variant("main", DockerExecutor("img:1"), RES, env={"X": "1"})
    c = Variant("main", DockerExecutor("img:2"), RES)
    assert a.same_placement_needs(b)
    assert not a.same_placement_needs(c)


def test_module_path_is_relative_to_the_dag_file() -> None:
    dag = Dag("d", (op("s", OperatorKind.SOURCE),), (), base_dir="/srv/flows")
    ex = dag.operator("s").main.executor
    assert isinstance(ex, WasmExecutor)
    assert dag.module_path(ex) == "/srv/flows/s.wasm"
    assert dag.module_path(WasmExecutor(sha256="00" * 32)) == ""
