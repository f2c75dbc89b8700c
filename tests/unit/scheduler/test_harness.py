"""The harness: agents from compact strings, a running plan, and recorded plans."""

from __future__ import annotations

import pytest

from edgerm.resources import Device, Resources
from edgerm.scheduler import ChangeKind, SchedulerHarness, parse_agent

DAG = """
operators:
  s: {kind: source, wasm: s.wasm, resources: {cpus: 1, mem: 64}, devices: [temperature]}
  k: {kind: sink, docker: k:1, resources: {cpus: 1, mem: 64}}
edges: [s -> k]
"""


def test_parse_agent_reads_every_part() -> None:
    a = parse_agent("a1 cpus:2;mem:1024 os=linux,domain=edge,tags={x,y} devices=temperature,cam:/dev/video0:shared")
    assert a.id == "a1" and a.hostname == "a1"
    assert a.attributes == {
        "os": "linux",
        "domain": "edge",
        "tags": frozenset({"x", "y"}),
        "executors": frozenset({"wasm", "docker"}),
    }
    assert a.free == Resources.parse(
        "cpus:2;mem:1024;temperature:device(sim:temperature);cam:device(/dev/video0,shared)"
    )
    assert a.free.devices["cam"] == Device("/dev/video0", shared=True)


def test_parse_agent_order_defaults_and_errors() -> None:
    a = parse_agent("b devices=gps:shared executors={wasm} mem:64")
    assert a.attributes == {"executors": frozenset({"wasm"})}
    assert a.free.devices["gps"] == Device("sim:gps", shared=True)
    assert a.free.mem == 64
    assert parse_agent("c").free.is_empty()
    for bad in ("", "a cpus:1 mem:2", "a x=1 y=2", "a devices=t devices=u", "a =1", "a cpus:-1"):
        with pytest.raises(ValueError):
            parse_agent(bad)


def test_harness_records_plans_and_tracks_the_running_one() -> None:
    h = SchedulerHarness("a cpus:4;mem:512 devices=temperature", "b cpus:4;mem:512")
    with pytest.raises(ValueError, match="compile"):
        h.replan()
    plan = h.compile(DAG)
    assert h.running is plan and h.plans == [plan]
    assert h.agent_of("s") == "a" and h.agent_of("k") == "a"
    free = h.snapshot().get(plan.placements[0].agent_id)
    assert free is not None and free.free == Resources.parse("cpus:2;mem:384")  # offers show what is left
    h.add("c cpus:4;mem:512 devices=temperature")
    h.lose("a")
    step = h.replan()
    assert h.running is step.plan and h.plans == [plan, step.plan] and h.replans == [step]
    assert {c.kind for c in step.changes} == {ChangeKind.MOVED}
    assert h.agent_of("s") == "c"
    assert h.placement("nope") is None
