"""Incremental re-planning: only affected instances move; fallbacks out and back."""

from __future__ import annotations

from edgerm.scheduler import ChangeKind, Instance, Replan, SchedulerHarness, replan

FLOW = """
operators:
  read: {kind: source, wasm: r.wasm, resources: {cpus: 0.5, mem: 64}, devices: [temperature], replicas: 2}
  smooth:
    kind: operator
    docker: smooth:1
    resources: {cpus: 4, mem: 2048}
    fallbacks:
      - {name: lite, wasm: smooth.wasm, resources: {cpus: 0.5, mem: 64}}
  alert: {kind: sink, wasm: a.wasm, resources: {cpus: 0.5, mem: 64}}
edges: [read -> smooth -> alert]
"""

PIS = ["pi1 cpus:2;mem:512 domain=home devices=temperature", "pi2 cpus:2;mem:512 domain=home devices=temperature"]


def kinds(step: Replan) -> list[tuple[str, str]]:
    return [(c.kind.value, str(c.instance)) for c in step.changes]


def test_losing_an_agent_moves_only_its_instances() -> None:
    h = SchedulerHarness(*PIS, "srv1 cpus:16;mem:16384 domain=cloud", "srv2 cpus:16;mem:16384 domain=cloud")
    before = h.compile(FLOW)
    lost = h.agent_of("smooth")
    assert lost in ("srv1", "srv2")
    step = h.replan()
    assert step.changes == ()  # nothing changed, nothing moves
    h.lose(lost)
    step = h.replan()
    moved = {c.instance for c in step.changes}
    assert moved == {p.instance for p in before.on_agent(lost)}
    assert all(c.kind is ChangeKind.MOVED and c.why == f"agent {lost} lost" for c in step.changes)
    for p in before.placements:
        if p.agent_id != lost:
            assert step.plan.placement(p.instance) == p  # untouched, to the last field
    assert step.moved_instances == moved


def test_fallback_when_main_no_longer_fits_and_back_when_it_does() -> None:
    h = SchedulerHarness(*PIS, "srv cpus:16;mem:16384 domain=cloud")
    h.compile(FLOW)
    assert h.agent_of("smooth") == "srv"
    h.lose("srv")
    step = h.replan()
    (change,) = [c for c in step.changes if c.instance == Instance("smooth")]
    assert change.kind is ChangeKind.SWITCHED and change.after is not None and change.after.variant == "lite"
    assert change.why == "agent srv lost"
    alert = [c for c in step.changes if c.instance == Instance("alert")]
    assert alert and alert[0].kind is ChangeKind.MOVED
    h.add("srv cpus:16;mem:16384 domain=cloud")
    step = h.replan()
    (back,) = step.changes
    assert back.kind is ChangeKind.SWITCHED and back.why == "main fits again"
    assert back.before is not None and back.before.variant == "lite"
    assert back.after is not None and back.after.variant == "main" and back.after.agent_id == "srv"
    # once back on main, more re-plans change nothing
    assert h.replan().changes == ()


def test_switching_back_in_place_when_room_frees_up_on_the_same_agent() -> None:
    h = SchedulerHarness("a cpus:2;mem:2048")
    dag = """
operators:
  hog: {kind: source, docker: hog:1, resources: {cpus: 1, mem: 1024}}
  job:
    kind: source
    docker: job:1
    resources: {cpus: 2, mem: 1024}
    fallbacks: [{name: small, resources: {cpus: 1, mem: 512}}]
"""
    h.compile(dag)
    job = h.placement("job")
    assert job is not None and job.variant == "small"
    step = h.replan(dag.replace("  hog: {kind: source, docker: hog:1, resources: {cpus: 1, mem: 1024}}\n", ""))
    assert kinds(step) == [("removed", "hog#0"), ("switched", "job#0")]
    after = step.changes[1].after
    assert after is not None and after.agent_id == "a" and after.variant == "main"


def test_an_unplaced_instance_is_placed_when_an_agent_joins() -> None:
    h = SchedulerHarness(PIS[0], "srv cpus:16;mem:16384")
    plan = h.compile(FLOW)
    assert [str(u.instance) for u in plan.unplaced] == ["read#1"]
    h.add("pi3 cpus:2;mem:512 devices=temperature")
    step = h.replan()
    assert kinds(step) == [("placed", "read#1")]
    assert h.agent_of("read", 1) == "pi3" and step.plan.complete


def test_an_instance_that_fits_nowhere_any_more_is_unplaced() -> None:
    h = SchedulerHarness(*PIS, "srv cpus:16;mem:16384")
    h.compile(FLOW)
    h.lose("pi2")
    step = h.replan()
    lost = [c for c in step.changes if c.kind is ChangeKind.UNPLACED]
    assert len(lost) == 1 and lost[0].after is None and lost[0].why == "agent pi2 lost"
    (u,) = step.plan.unplaced
    assert u.instance == lost[0].instance and u.reasons() == {"device in use temperature", "missing device temperature"}


def test_dag_changes() -> None:
    h = SchedulerHarness(*PIS, "srv cpus:16;mem:16384")
    h.compile(FLOW)
    # more replicas: only the new one is placed
    step = h.replan(FLOW.replace("smooth:1\n    resources", "smooth:1\n    replicas: 2\n    resources"))
    assert kinds(step) == [("placed", "smooth#1")]
    # fewer replicas: the extra one is removed
    step = h.replan(FLOW)
    assert kinds(step) == [("removed", "smooth#1")]
    # a changed operator is re-placed, the rest stays
    step = h.replan(FLOW.replace("alert: {kind: sink, wasm: a.wasm", "alert: {kind: sink, wasm: a2.wasm"))
    assert kinds(step) == [("moved", "alert#0")]
    assert step.changes[0].why == "operator alert changed"
    after = step.changes[0].after
    assert after is not None and str(after.executor) == "wasm:a2.wasm"


def test_an_agent_that_stops_matching_its_constraints_is_left() -> None:
    dag = """
operators:
  s: {kind: source, docker: s:1, resources: {cpus: 1, mem: 64}, constraints: [tier == prod]}
"""
    h = SchedulerHarness("a cpus:4;mem:512 tier=prod", "b cpus:4;mem:512 tier=prod")
    h.compile(dag)
    first = h.agent_of("s")
    assert first is not None
    h.add(f"{first} cpus:4;mem:512 tier=staging")  # same agent, new attributes
    step = h.replan()
    (c,) = step.changes
    assert c.kind is ChangeKind.MOVED and c.why == f"agent {first} no longer fits: constraint tier == prod"
    assert h.agent_of("s") != first


def test_replan_is_pure_and_idempotent() -> None:
    h = SchedulerHarness(*PIS, "srv cpus:16;mem:16384")
    plan = h.compile(FLOW)
    assert h.dag is not None
    snap = h.snapshot()
    one = replan(h.dag, plan, snap)
    two = replan(h.dag, plan, snap)
    assert one == two and one.changes == () and one.plan == plan


def test_room_freed_by_an_upgrade_goes_to_what_did_not_fit() -> None:
    dag = """
operators:
  x:
    kind: source
    docker: x:1
    resources: {cpus: 2, mem: 64}
    constraints: [domain == new]
    fallbacks: [{name: anywhere, constraints: []}]
  y: {kind: source, docker: y:1, resources: {cpus: 2, mem: 64}, constraints: [domain != new]}
"""
    h = SchedulerHarness("b cpus:2;mem:512 domain=old")
    plan = h.compile(dag)
    assert h.agent_of("x") == "b" and [str(u.instance) for u in plan.unplaced] == ["y#0"]
    h.add("n cpus:2;mem:512 domain=new")
    step = h.replan()
    # y did not fit before x left b for its main variant on n; it is tried again
    assert sorted(kinds(step)) == [("placed", "y#0"), ("switched", "x#0")]
    assert h.agent_of("x") == "n" and h.agent_of("y") == "b" and step.plan.complete


def test_a_device_given_back_is_found_again() -> None:
    source = "operators:\n  s: {kind: source, wasm: %s, resources: {cpus: 1, mem: 64}, devices: [temperature]}\n"
    h = SchedulerHarness("a cpus:2;mem:512 devices=temperature", "b cpus:2;mem:512")
    h.compile(source % "v1.wasm")
    assert h.snapshot().device_owners("temperature") == ()  # the running instance holds it
    step = h.replan(source % "v2.wasm")
    (c,) = step.changes
    assert c.kind is ChangeKind.MOVED and c.why == "operator s changed"
    assert c.after is not None and c.after.agent_id == "a" and "temperature" in c.after.resources.devices
