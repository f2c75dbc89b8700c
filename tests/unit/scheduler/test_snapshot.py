"""Snapshots: built from offers or agents, indexed by class, device and attribute."""

from __future__ import annotations

import pytest

from edgerm.ids import AgentId, FrameworkId, OfferId
from edgerm.model import AgentInfo, Offer
from edgerm.resources import Resources
from edgerm.scheduler import AgentView, Instance, SchedulerHarness, Snapshot
from edgerm.scheduler.snapshot import class_label

LINUX = {"os": "linux", "domain": "edge"}


def offer(oid: str, agent: str, res: str, attrs: dict[str, str] | None = None) -> Offer:
    return Offer(OfferId(oid), FrameworkId("f"), AgentId(agent), f"host-{agent}", Resources.parse(res), attrs or LINUX)


def test_from_offers_sums_an_agents_offers_and_sorts_by_id() -> None:
    snap = Snapshot.from_offers(
        [offer("o1", "b", "cpus:1;mem:100"), offer("o2", "a", "cpus:2"), offer("o3", "b", "cpus:0.5;mem:28")]
    )
    assert [a.id for a in snap] == ["a", "b"]
    b = snap.get(AgentId("b"))
    assert b is not None and b.free == Resources.parse("cpus:1.5;mem:128")
    assert b.hostname == "host-b" and b.attributes == LINUX
    assert len(snap) == 2 and AgentId("a") in snap and AgentId("z") not in snap
    assert snap.position(AgentId("b")) == 1 and snap.get(AgentId("z")) is None


def test_hosts_without_offers_are_listed_with_nothing_free() -> None:
    busy = AgentView(AgentId("busy"), "busy-host", LINUX, Resources.parse("cpus:9"))
    snap = Snapshot.from_offers([offer("o1", "a", "cpus:1")], hosts=[busy, AgentView(AgentId("a"), "x")])
    got = snap.get(AgentId("busy"))
    assert got is not None and got.free.is_empty() and got.hostname == "busy-host"
    a = snap.get(AgentId("a"))
    assert a is not None and a.free.cpus == 1  # an offered agent keeps its offer


def test_from_agents_takes_capacity_as_free() -> None:
    info = AgentInfo(AgentId("a"), "h", Resources.parse("cpus:4;mem:512"), {"os": "linux"})
    (view,) = Snapshot.from_agents([info]).agents
    assert view == AgentView(AgentId("a"), "h", {"os": "linux"}, Resources.parse("cpus:4;mem:512"))


def test_classes_group_identical_attributes() -> None:
    snap = Snapshot(
        (
            AgentView(AgentId("a"), "a", {"os": "linux", "domain": "x"}),
            AgentView(AgentId("b"), "b", {"domain": "x", "os": "linux"}),
            AgentView(AgentId("c"), "c", {"os": "linux", "executors": frozenset({"wasm", "docker"})}),
            AgentView(AgentId("d"), "d", {}),
        )
    )
    assert snap.class_of(0) == snap.class_of(1) != snap.class_of(2)
    assert snap.class_labels == ("domain=x,os=linux", "executors={docker,wasm},os=linux", "(no attributes)")
    assert snap.class_sizes == (2, 1, 1)
    assert class_label(()) == "(no attributes)"


def test_device_and_attribute_indexes() -> None:
    h = SchedulerHarness(
        "a cpus:1 domain=x devices=temperature",
        "b cpus:1 domain=y devices=temperature,camera",
        "c cpus:1 domain=x",
    )
    snap = h.snapshot()
    assert snap.device_owners("temperature") == (0, 1)
    assert snap.device_owners("camera") == (1,)
    assert snap.device_owners("gps") == ()
    assert snap.with_attribute("domain", "x") == (0, 2)
    assert snap.with_attribute("executors", "docker,wasm") == (0, 1, 2)
    assert snap.with_attribute("zone", "") == (0, 1, 2)


def test_derived_snapshots() -> None:
    h = SchedulerHarness("a cpus:2;mem:256 devices=temperature", "b cpus:1")
    snap = h.snapshot()
    assert [a.id for a in snap.without(AgentId("a"))] == ["b"]
    replaced = snap.with_agents(AgentView(AgentId("b"), "b2"), AgentView(AgentId("c"), "c"))
    assert [(a.id, a.hostname) for a in replaced] == [("a", "a"), ("b", "b2"), ("c", "c")]
    plan = h.compile(
        """
operators:
  s: {kind: source, wasm: s.wasm, resources: {cpus: 0.5, mem: 64}, devices: [temperature]}
"""
    )
    after = snap.after(plan)
    a = after.get(AgentId("a"))
    assert a is not None and a.free == Resources.parse("cpus:1.5;mem:192")
    assert plan.placement(Instance("s")) is not None
    assert after.get(AgentId("b")) == snap.get(AgentId("b"))


def test_an_agent_listed_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        Snapshot((AgentView(AgentId("a"), "a"), AgentView(AgentId("a"), "b")))
