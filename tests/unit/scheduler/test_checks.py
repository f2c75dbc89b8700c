"""Feasibility checks through the harness: one scenario per reason constant, plus the chain's rules."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from edgerm.ids import AgentId
from edgerm.resources import Resources
from edgerm.scheduler import (
    DEFAULT_CHECKS,
    ConstraintCheck,
    DeviceCheck,
    ExecutorCheck,
    IdentityCheck,
    Instance,
    Plan,
    Policy,
    RejectCode,
    Rejection,
    ResourceCheck,
    SchedulerHarness,
)
from edgerm.scheduler.context import Demand, PlanContext
from edgerm.scheduler.reasons import constraint_failed, device_in_use, insufficient, missing_device, missing_executor
from edgerm.scheduler.snapshot import AgentView


def only_reasons(plan: Plan, operator: str, replica: int = 0) -> set[str]:
    (u,) = [u for u in plan.unplaced if u.instance == Instance(operator, replica)]
    return set(u.reasons())


def source(resources: str = "{cpus: 1, mem: 64}", extra: str = "", executor: str = "wasm: s.wasm") -> str:
    return f"operators:\n  s: {{kind: source, {executor}, resources: {resources}{extra}}}\n"


# One scenario per reason constant: (agents, DAG, expected reason text).
SCENARIOS: dict[RejectCode, tuple[list[str], str, str]] = {
    RejectCode.MISSING_EXECUTOR: (["a cpus:4;mem:512 executors={docker}"], source(), "missing executor wasm"),
    RejectCode.CONSTRAINT: (
        ["a cpus:4;mem:512 os=freertos"],
        source(extra=", constraints: [os == linux]"),
        "constraint os == linux",
    ),
    RejectCode.MISSING_DEVICE: (
        ["a cpus:4;mem:512"],
        source(extra=", devices: [temperature]"),
        "missing device temperature",
    ),
    RejectCode.DEVICE_IN_USE: (
        ["a cpus:4;mem:512 devices=temperature"],
        source(extra=", devices: [temperature], replicas: 2"),
        "device in use temperature",
    ),
    RejectCode.INSUFFICIENT: (["a cpus:4;mem:32"], source(), "insufficient mem"),
}


def test_every_reason_constant_has_a_scenario() -> None:
    assert set(SCENARIOS) == set(RejectCode)


@pytest.mark.parametrize("code", list(RejectCode), ids=lambda c: c.name)
def test_each_reason_is_reported(code: RejectCode) -> None:
    agents, dag, text = SCENARIOS[code]
    plan = SchedulerHarness(*agents).compile(dag)
    u = plan.unplaced[-1]
    assert u.reasons() == {text}
    ((rejection, count),) = u.variants[0].classes[0].reasons
    assert rejection.code is code and count == 1 and str(rejection) == text


def test_reason_values_and_text() -> None:
    assert missing_executor("wasm") == Rejection(RejectCode.MISSING_EXECUTOR, "wasm")
    assert str(constraint_failed("os == linux")) == "constraint os == linux"
    assert str(missing_device("gps")) == "missing device gps"
    assert str(device_in_use("gps")) == "device in use gps"
    assert str(insufficient("cpus")) == "insufficient cpus"
    assert len({missing_device("a"), missing_device("a"), insufficient("a")}) == 2


def test_executor_attribute_may_be_text_or_missing() -> None:
    h = SchedulerHarness("a cpus:4;mem:512 executors=wasm", "b cpus:4;mem:512 executors=docker")
    assert h.compile(source()).placements[0].agent_id == "a"
    plan = SchedulerHarness("c cpus:4;mem:512").compile(source(executor="docker: img"))
    assert plan.complete
    bare = SchedulerHarness()
    bare.capacity[AgentId("z")] = AgentView(AgentId("z"), "z", {}, Resources.parse("cpus:4;mem:512"))
    assert only_reasons(bare.compile(source()), "s") == {"missing executor wasm"}


def test_identity_constraints_are_checked_per_agent() -> None:
    h = SchedulerHarness("pi-1 cpus:4;mem:512", "srv-1 cpus:4;mem:512")
    plan = h.compile(source(extra=", constraints: ['@hostname =~ ^srv-']"))
    assert plan.placements[0].agent_id == "srv-1"
    plan = h.compile(source(extra=", constraints: ['@id == nope']"))
    assert only_reasons(plan, "s") == {"constraint @id == nope"}
    # both agents share a class, yet each is judged on its own name
    assert plan.unplaced[0].variants[0].classes[0].agents == 2


def test_insufficient_names_the_short_resource() -> None:
    agents = ["a cpus:0.5;mem:512;ports:[8000-8010];zones:{x}"]
    assert only_reasons(SchedulerHarness(*agents).compile(source()), "s") == {"insufficient cpus"}
    ports = source('"cpus:0.1;mem:8;ports:[9000-9000]"')
    assert only_reasons(SchedulerHarness(*agents).compile(ports), "s") == {"insufficient ports"}
    sets = source('"cpus:0.1;mem:8;zones:{y}"')
    assert only_reasons(SchedulerHarness(*agents).compile(sets), "s") == {"insufficient zones"}
    assert SchedulerHarness(*agents).compile(source('"cpus:0.1;mem:8;ports:[8005-8006]"')).complete


def test_shared_devices_are_not_consumed() -> None:
    h = SchedulerHarness("a cpus:4;mem:512 devices=camera:/dev/video0:shared")
    plan = h.compile(source(extra=", devices: [camera], replicas: 3"))
    assert plan.complete and {p.agent_id for p in plan.placements} == {"a"}
    assert all(p.resources.devices["camera"].handle == "/dev/video0" for p in plan.placements)


def test_device_held_by_a_running_instance_is_in_use_when_replanning() -> None:
    h = SchedulerHarness("a cpus:4;mem:512 devices=temperature")
    h.compile(source(extra=", devices: [temperature]"))
    step = h.replan(source(extra=", devices: [temperature], replicas: 2"))
    assert only_reasons(step.plan, "s", 1) == {"device in use temperature"}


def test_the_chain_stops_at_the_first_failing_check_in_order() -> None:
    # wrong executor AND too little memory: the executor (a class check) is reported
    h = SchedulerHarness("a cpus:4;mem:8 executors={docker}")
    assert only_reasons(h.compile(source()), "s") == {"missing executor wasm"}
    # a policy without the executor check reports the resources instead
    no_exec = Policy("no-exec", (ConstraintCheck(), IdentityCheck(), DeviceCheck(), ResourceCheck()))
    assert only_reasons(h.compile(source(), no_exec), "s") == {"insufficient mem"}


@dataclass
class CountingCheck:
    """A class-level check that counts how often it runs."""

    calls: int = 0
    name: str = "counting"
    per_class: bool = True

    def __call__(self, ctx: PlanContext, demand: Demand, agent: AgentView, free: Resources) -> Rejection | None:
        self.calls += 1
        return None if agent.attributes.get("os") == "linux" else constraint_failed("counted os")


def test_class_checks_run_once_per_class_and_needs() -> None:
    counting = CountingCheck()
    policy = Policy("counting", (counting, *DEFAULT_CHECKS))
    agents = [f"l{i} cpus:1;mem:64 os=linux" for i in range(20)] + [f"w{i} cpus:1;mem:64 os=win" for i in range(20)]
    h = SchedulerHarness(*agents)
    plan = h.compile(source("{cpus: 1, mem: 64}", extra=", replicas: 25"), policy)
    assert len(plan.placements) == 20 and len(plan.unplaced) == 5
    assert counting.calls == 2  # two classes, one set of needs
    reasons = plan.unplaced[0].variants[0].classes
    assert {(c.agent_class.split(",")[-1], c.reasons[0][0].subject) for c in reasons} == {
        ("os=linux", "cpus"),
        ("os=win", "counted os"),
    }


def test_default_chain_order() -> None:
    assert [type(c) for c in DEFAULT_CHECKS] == [
        ExecutorCheck,
        ConstraintCheck,
        IdentityCheck,
        DeviceCheck,
        ResourceCheck,
    ]
    assert [c.per_class for c in DEFAULT_CHECKS] == [True, True, False, False, False]
