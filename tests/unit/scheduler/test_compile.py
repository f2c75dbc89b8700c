"""compile_dag: placements, fallbacks, explanations, determinism, plan helpers."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgerm.ids import AgentId, FrameworkId, OfferId
from edgerm.model import Attributes, Offer
from edgerm.resources import Resources
from edgerm.scheduler import (
    DEFAULT_CHECKS,
    LOCALITY,
    BinPack,
    CandidateLimit,
    Instance,
    Policy,
    SchedulerHarness,
    Snapshot,
    compile_dag,
    load_dag,
    loads_dag,
)

FLOW = """
name: flow
operators:
  read: {kind: source, wasm: r.wasm, resources: {cpus: 0.1, mem: 32}, devices: [temperature], replicas: 2}
  smooth:
    kind: operator
    docker: smooth:1
    resources: {cpus: 1, mem: 512}
    constraints: [os == linux]
    fallbacks:
      - {name: lite, wasm: smooth.wasm, resources: {cpus: 0.2, mem: 64}, constraints: []}
  alert: {kind: sink, wasm: a.wasm, resources: {cpus: 0.1, mem: 32}}
edges: [read -> smooth -> alert]
"""


def test_a_complete_plan_claims_devices_and_follows_the_data() -> None:
    h = SchedulerHarness(
        "pi1 cpus:1;mem:256 os=linux,domain=kitchen devices=temperature:/dev/i2c-1",
        "pi2 cpus:1;mem:256 os=linux,domain=garage devices=temperature:/dev/i2c-2",
        "srv cpus:16;mem:16384 os=linux,domain=cloud",
    )
    plan = h.compile(FLOW)
    assert plan.complete and plan.dag == "flow" and plan.policy == "locality"
    assert [str(p.instance) for p in plan.placements] == ["read#0", "read#1", "smooth#0", "alert#0"]
    read0, read1 = plan.placements[:2]
    assert {read0.agent_id, read1.agent_id} == {"pi1", "pi2"}
    assert read0.resources == Resources.parse(f"cpus:0.1;mem:32;temperature:device(/dev/i2c-{read0.agent_id[-1]})")
    smooth = h.placement("smooth")
    assert smooth is not None and smooth.variant == "main" and smooth.agent_id == "srv"  # main does not fit on a pi
    assert h.agent_of("alert") == "srv"


def test_a_fallback_is_used_when_main_fits_nowhere_and_explained_otherwise() -> None:
    h = SchedulerHarness(
        "pi1 cpus:1;mem:256 os=linux devices=temperature",
        "mcu cpus:0.5;mem:128 os=zephyr,executors={wasm}",
    )
    plan = h.compile(FLOW)
    smooth = h.placement("smooth")
    assert smooth is not None and smooth.variant == "lite" and smooth.executor.kind == "wasm"
    (u,) = plan.unplaced
    assert u.instance == Instance("read", 1)
    assert u.reasons() == {"device in use temperature", "missing device temperature"}


def test_unplaced_reasons_are_grouped_per_class_and_variant() -> None:
    h = SchedulerHarness(
        "w1 cpus:8;mem:8192 os=windows",
        "w2 cpus:8;mem:8192 os=windows",
        "l1 cpus:0.5;mem:8192 os=linux",
        "m1 cpus:2;mem:8192 os=linux,executors={wasm}",
    )
    dag = """
operators:
  s:
    kind: source
    docker: s:1
    resources: {cpus: 1, mem: 64}
    constraints: [os == linux]
    fallbacks: [{name: wasm, wasm: s.wasm, resources: {cpus: 4, mem: 64}}]
"""
    plan = h.compile(dag)
    (u,) = plan.unplaced
    main, wasm = u.variants
    assert main.variant == "main" and wasm.variant == "wasm"
    assert [str(c) for c in main.classes] == [
        "executors={docker,wasm},os=linux (1 agent): insufficient cpus x1",
        "executors={wasm},os=linux (1 agent): missing executor docker x1",
        "executors={docker,wasm},os=windows (2 agents): constraint os == linux x2",
    ]
    assert [str(c) for c in wasm.classes] == [
        "executors={docker,wasm},os=linux (1 agent): insufficient cpus x1",
        "executors={wasm},os=linux (1 agent): insufficient cpus x1",
        "executors={docker,wasm},os=windows (2 agents): constraint os == linux x2",  # inherited from main
    ]
    assert u.reasons() == {"constraint os == linux", "insufficient cpus", "missing executor docker"}
    text = plan.explain()
    assert "s#0 could not be placed:" in text
    assert "  wasm: executors={wasm},os=linux (1 agent): insufficient cpus x1" in text


def test_no_agents_at_all() -> None:
    plan = compile_dag(loads_dag(FLOW), Snapshot())
    assert len(plan.unplaced) == 4 and not plan.placements
    assert "main: no agents in the snapshot" in plan.unplaced[0].explain()


def test_compiling_from_offers_in_any_order_gives_the_same_plan() -> None:
    def offer(i: int) -> Offer:
        res = Resources.parse(f"cpus:{1 + i % 3};mem:{256 * (1 + i % 4)}")
        if i % 2:
            res = res + Resources.parse(f"temperature:device(/dev/t{i})")
        attrs: Attributes = {"os": "linux", "domain": f"d{i % 3}", "executors": frozenset({"wasm", "docker"})}
        return Offer(OfferId(f"o{i}"), FrameworkId("f"), AgentId(f"a{i}"), f"h{i}", res, attrs)

    offers = [offer(i) for i in range(12)]
    dag = loads_dag(FLOW)
    one = compile_dag(dag, Snapshot.from_offers(offers))
    two = compile_dag(dag, Snapshot.from_offers(list(reversed(offers))))
    assert one == two and one.complete


def test_a_candidate_limit_of_one_takes_the_first_feasible_agent() -> None:
    h = SchedulerHarness("a cpus:1;mem:64", "b cpus:8;mem:8192", "c cpus:8;mem:8192")
    tight = Policy("first-fit", DEFAULT_CHECKS, ((BinPack(), 1.0),), CandidateLimit(count=1))
    dag = "operators:\n  s: {kind: source, wasm: s.wasm, resources: {cpus: 2, mem: 64}, replicas: 2}\n"
    plan = h.compile(dag, tight)
    assert [p.agent_id for p in plan.placements] == ["b", "b"]  # a does not fit; b is next and stays open


def test_plan_helpers() -> None:
    h = SchedulerHarness(
        "pi1 cpus:1;mem:256 os=linux,domain=kitchen devices=temperature",
        "srv cpus:16;mem:16384 os=linux,domain=cloud",
    )
    plan = h.compile(FLOW)
    srv = AgentId("srv")
    assert {str(p.instance) for p in plan.on_agent(srv)} == {"smooth#0", "alert#0"}
    assert plan.usage()[srv] == Resources.parse("cpus:1.1;mem:544")
    assert {a.id for a in plan.hosts()} == {"pi1", "srv"} and all(a.free.is_empty() for a in plan.hosts())
    assert plan.cross_domain_pairs([("read", "smooth"), ("smooth", "alert")]) == 1
    assert plan.placement(Instance("nope")) is None
    assert "read#0 -> pi1 [main]" in plan.explain()


def test_the_example_dag_compiles() -> None:
    dag = load_dag(Path(__file__).resolve().parents[3] / "examples" / "dataflows" / "temperature.yaml")
    h = SchedulerHarness(
        "pi1 cpus:1;mem:512 os=linux,arch=arm64,domain=kitchen devices=temperature",
        "pi2 cpus:1;mem:512 os=linux,arch=arm64,domain=garage devices=temperature",
    )
    plan = h.compile(dag, LOCALITY)
    assert plan.complete


def test_policy_rejects_non_positive_weights() -> None:
    with pytest.raises(ValueError, match="positive"):
        Policy("bad", DEFAULT_CHECKS, ((BinPack(), 0.0),))
    with pytest.raises(ValueError, match="positive"):
        CandidateLimit(count=-1)
