"""Safety invariants of compile_dag and replan, on random clusters and DAGs (Hypothesis).

- a plan never over-commits an agent (resources, and each unshared device once);
- every placement satisfies its variant's executor, constraints and devices;
- an instance is unplaced only if no agent could take it in what is left, and
  a lone operator is unplaced only if no agent of the snapshot could take it;
- re-planning right away changes nothing; after an unrelated agent joins it
  moves nothing; after any agent joins it only places or upgrades; after an
  agent is lost it touches only that agent's instances.

The reference check ``fits`` below is written independently of the
library's chain, so the two must agree.
"""

from __future__ import annotations

from collections import Counter

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgerm.ids import AgentId
from edgerm.resources import EMPTY, Device, Resources
from edgerm.scheduler import (
    DEFAULT_CHECKS,
    LOCALITY,
    PACKED,
    SPREAD,
    AgentView,
    BinPack,
    CandidateLimit,
    ChangeKind,
    Constraint,
    Dag,
    DockerExecutor,
    Edge,
    Operator,
    OperatorKind,
    Plan,
    Policy,
    Snapshot,
    Variant,
    WasmExecutor,
    compile_dag,
    replan,
)

SETTINGS = settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])
DOMAINS = ("a", "b", "c")
EXECUTORS = ("wasm", "docker")
DEVICES = ("temperature", "camera")
CONSTRAINTS = ("os == linux", "domain in [a, b]", "domain != c", "@hostname =~ [02468]$", "os !~ ^z")
FIRST_FIT = Policy("first-fit", DEFAULT_CHECKS, ((BinPack(), 1.0),), CandidateLimit(count=1))
POLICIES = st.sampled_from([PACKED, SPREAD, LOCALITY, FIRST_FIT])


@st.composite
def agent(draw: st.DrawFn, name: str) -> AgentView:
    text = f"cpus:{draw(st.sampled_from([0.5, 1, 2, 4]))};mem:{draw(st.sampled_from([64, 256, 1024]))}"
    if draw(st.booleans()):
        text += ";ports:[8000-8003]"
    shared = draw(st.booleans())
    devices = {d: Device(f"/dev/{d}-{name}", shared and d == "camera") for d in draw(st.sets(st.sampled_from(DEVICES)))}
    attrs = {
        "domain": draw(st.sampled_from(DOMAINS)),
        "os": draw(st.sampled_from(("linux", "zephyr"))),
        "executors": frozenset(draw(st.sets(st.sampled_from(EXECUTORS)))),
    }
    return AgentView(AgentId(name), f"host{name[1:]}", attrs, Resources.parse(text) + Resources(devices=devices))


@st.composite
def agents(draw: st.DrawFn, min_size: int = 1) -> list[AgentView]:
    n = draw(st.integers(min_size, 8))
    return [draw(agent(f"a{i}")) for i in range(n)]


@st.composite
def variant(draw: st.DrawFn, name: str) -> Variant:
    executor = WasmExecutor(module="m.wasm") if draw(st.sampled_from(EXECUTORS)) == "wasm" else DockerExecutor("i:1")
    text = f"cpus:{draw(st.sampled_from([0.1, 0.5, 1, 2]))};mem:{draw(st.sampled_from([16, 64, 256]))}"
    if draw(st.integers(0, 5)) == 0:
        text += ";ports:[8001-8002]"
    constraints = tuple(
        Constraint.parse(c) for c in draw(st.lists(st.sampled_from(CONSTRAINTS), max_size=2, unique=True))
    )
    devices = tuple(draw(st.lists(st.sampled_from(DEVICES), max_size=1)))
    return Variant(name, executor, Resources.parse(text), constraints=constraints, devices=devices)


@st.composite
def dags(draw: st.DrawFn, max_ops: int = 6) -> Dag:
    ops: list[Operator] = []
    edges: list[Edge] = []
    for i in range(draw(st.integers(1, max_ops))):
        kinds = [OperatorKind.SOURCE] if i == 0 else list(OperatorKind)
        kind = draw(st.sampled_from(kinds))
        variants = [draw(variant("main"))] + [draw(variant(f"fb{j}")) for j in range(draw(st.integers(0, 2)))]
        ops.append(Operator(f"o{i}", kind, tuple(variants), draw(st.integers(1, 3))))
        if kind is not OperatorKind.SOURCE:
            inputs = [o.name for o in ops[:-1] if o.kind is not OperatorKind.SINK]
            for src in draw(st.lists(st.sampled_from(inputs), min_size=1, max_size=2, unique=True)):
                edges.append(Edge(src, f"o{i}"))
    return Dag("prop", tuple(ops), tuple(edges))


def fits(v: Variant, a: AgentView, free: Resources) -> bool:
    """Reference feasibility, independent of the library's chain."""
    executors = a.attributes.get("executors", frozenset())
    return (
        v.executor.kind in executors
        and all(c.holds(a.attributes, a.hostname, a.id) for c in v.constraints)
        and all(d in free.devices for d in v.devices)
        and v.resources <= free
    )


def check_capacity(plan: Plan, capacity: dict[AgentId, Resources]) -> None:
    """No agent gives more than it has; no unshared device is claimed twice."""
    for agent_id, used in plan.usage().items():
        assert agent_id in capacity, f"{agent_id} is not in the snapshot"
        assert used <= capacity[agent_id], f"{agent_id} over-committed: {used} > {capacity[agent_id]}"
    claims = Counter(
        (p.agent_id, d) for p in plan.placements for d, dev in p.resources.devices.items() if not dev.shared
    )
    assert all(n == 1 for n in claims.values()), claims


def check_placements(dag: Dag, plan: Plan, views: dict[AgentId, AgentView]) -> None:
    for p in plan.placements:
        v = dag.operator(p.instance.operator).variant(p.variant)
        assert v is not None
        a = views[p.agent_id]
        assert v.executor == p.executor and v.executor.kind in a.attributes["executors"]
        assert all(c.holds(a.attributes, a.hostname, a.id) for c in v.constraints)
        assert set(p.resources.devices) == set(v.devices)
        assert all(a.free.devices[d] == dev for d, dev in p.resources.devices.items())
        held = p.resources
        assert Resources(held.scalars, held.ranges, held.sets) == v.resources


def check_maximal(dag: Dag, plan: Plan, views: dict[AgentId, AgentView], capacity: dict[AgentId, Resources]) -> None:
    """Each unplaced instance fits in no agent's leftovers, and its explanation covers every agent."""
    usage = plan.usage()
    left = {a: capacity[a] - usage.get(a, EMPTY) for a in capacity}
    for u in plan.unplaced:
        op = dag.operator(u.instance.operator)
        assert [x.variant for x in u.variants] == [v.name for v in op.variants]
        for v, why in zip(op.variants, u.variants, strict=True):
            assert sum(n for c in why.classes for _, n in c.reasons) == len(views)
            for a in views.values():
                assert not fits(v, a, left[a.id]), f"{u.instance} [{v.name}] fits on {a.id}"


@SETTINGS
@given(agents(min_size=0), dags(), POLICIES)
def test_compile_invariants(views: list[AgentView], dag: Dag, policy: Policy) -> None:
    plan = compile_dag(dag, Snapshot(tuple(views)), policy)
    by_id = {a.id: a for a in views}
    capacity = {a.id: a.free for a in views}
    assert len(plan.placements) + len(plan.unplaced) == len(dag.instances())
    check_capacity(plan, capacity)
    check_placements(dag, plan, by_id)
    check_maximal(dag, plan, by_id, capacity)


@SETTINGS
@given(agents(min_size=0), st.lists(variant("x"), min_size=1, max_size=3), POLICIES)
def test_a_lone_operator_is_unplaced_only_if_no_agent_could_take_it(
    views: list[AgentView], variants: list[Variant], policy: Policy
) -> None:
    named = tuple(
        Variant("main" if i == 0 else f"fb{i}", v.executor, v.resources, (), {}, v.constraints, v.devices)
        for i, v in enumerate(variants)
    )
    dag = Dag("lone", (Operator("s", OperatorKind.SOURCE, named),))
    plan = compile_dag(dag, Snapshot(tuple(views)), policy)
    possible = any(fits(v, a, a.free) for v in named for a in views)
    assert plan.complete is possible
    if possible:
        (p,) = plan.placements
        # the variant used is the first one that fits somewhere
        first = next(v for v in named if any(fits(v, a, a.free) for a in views))
        assert p.variant == first.name


@SETTINGS
@given(agents(), dags(), POLICIES)
def test_replanning_right_away_changes_nothing(views: list[AgentView], dag: Dag, policy: Policy) -> None:
    snapshot = Snapshot(tuple(views))
    plan = compile_dag(dag, snapshot, policy)
    step = replan(dag, plan, snapshot.after(plan), policy)
    assert step.changes == ()
    assert step.plan.placements == plan.placements
    assert [u.instance for u in step.plan.unplaced] == [u.instance for u in plan.unplaced]


@SETTINGS
@given(agents(), dags(), POLICIES, st.data())
def test_an_unrelated_agent_joining_moves_nothing(
    views: list[AgentView], dag: Dag, policy: Policy, data: st.DataObject
) -> None:
    snapshot = Snapshot(tuple(views))
    plan = compile_dag(dag, snapshot, policy)
    joiner = data.draw(agent("zz"))
    unrelated = AgentView(joiner.id, joiner.hostname, {**joiner.attributes, "executors": frozenset()}, joiner.free)
    step = replan(dag, plan, snapshot.after(plan).with_agents(unrelated), policy)
    assert step.changes == ()
    assert step.plan.placements == plan.placements


@SETTINGS
@given(agents(), dags(), POLICIES, st.data())
def test_any_agent_joining_only_places_or_upgrades(
    views: list[AgentView], dag: Dag, policy: Policy, data: st.DataObject
) -> None:
    snapshot = Snapshot(tuple(views))
    plan = compile_dag(dag, snapshot, policy)
    joiner = data.draw(agent("zz"))
    step = replan(dag, plan, snapshot.after(plan).with_agents(joiner), policy)
    changed = set()
    for c in step.changes:
        changed.add(c.instance)
        assert c.kind in (ChangeKind.PLACED, ChangeKind.SWITCHED), c
        if c.kind is ChangeKind.SWITCHED:
            assert c.before is not None and c.after is not None
            op = dag.operator(c.instance.operator)
            assert op.rank_of(c.after.variant) < op.rank_of(c.before.variant)
    for p in plan.placements:
        if p.instance not in changed:
            assert step.plan.placement(p.instance) == p
    views_after = {a.id: a for a in (*views, joiner)}
    capacity = {a.id: a.free for a in views_after.values()}
    check_capacity(step.plan, capacity)
    check_placements(dag, step.plan, views_after)
    check_maximal(dag, step.plan, views_after, capacity)


@SETTINGS
@given(agents(), dags(), POLICIES, st.data())
def test_losing_an_agent_touches_only_its_instances(
    views: list[AgentView], dag: Dag, policy: Policy, data: st.DataObject
) -> None:
    snapshot = Snapshot(tuple(views))
    plan = compile_dag(dag, snapshot, policy)
    lost = data.draw(st.sampled_from([a.id for a in views]))
    step = replan(dag, plan, snapshot.after(plan).without(lost), policy)
    on_lost = {p.instance for p in plan.on_agent(lost)}
    assert {c.instance for c in step.changes} <= on_lost
    assert {c.instance for c in step.changes if c.kind is not ChangeKind.UNPLACED} <= on_lost
    assert all(c.why == f"agent {lost} lost" for c in step.changes)
    for p in plan.placements:
        if p.instance not in on_lost:
            assert step.plan.placement(p.instance) == p
    assert not step.plan.on_agent(lost)
    alive = {a.id: a for a in views if a.id != lost}
    capacity = {a.id: a.free for a in alive.values()}
    check_capacity(step.plan, capacity)
    check_placements(dag, step.plan, alive)
    check_maximal(dag, step.plan, alive, capacity)
