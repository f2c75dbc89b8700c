"""Builders shared by the dataflow framework's unit tests: DAGs, offers, statuses, a clock."""

from __future__ import annotations

import itertools

from edgerm import messages as m
from edgerm.frameworks import RecordingDriver
from edgerm.frameworks.dataflow.validate import loads
from edgerm.ids import AgentId, FrameworkId, OfferId, TaskId
from edgerm.model import Offer, Reason, TaskState, TaskStatus
from edgerm.resources import Resources
from edgerm.scheduler import Dag

SHA = "0" * 64

PIPELINE = f"""
name: temps
operators:
  read:
    kind: source
    wasm: sha256:{SHA}
    devices: [temperature]
    env: {{EDGERM_DF_PERIOD: "0.05"}}
    resources: {{cpus: 0.1, mem: 32}}
  scale:
    kind: operator
    wasm: sha256:{SHA}
    args: [--scale, "1.8", --offset, "32"]
    resources: {{cpus: 0.1, mem: 32}}
    constraints: [domain == edge]
  store:
    kind: sink
    wasm: sha256:{SHA}
    resources: {{cpus: 0.1, mem: 32}}
    constraints: [domain == cloud]
edges:
  - read -> scale -> store
"""

FALLBACK = f"""
name: fb
operators:
  read:
    kind: source
    wasm: sha256:{SHA}
    devices: [temperature]
    resources: {{cpus: 0.1, mem: 32}}
  smooth:
    kind: operator
    wasm: sha256:{SHA}
    args: [--window, "10"]
    resources: {{cpus: 1, mem: 256}}
    constraints: [domain == cloud]
    fallbacks:
      - name: lite
        args: [--window, "3"]
        resources: {{cpus: 0.1, mem: 32}}
        constraints: []
  out:
    kind: sink
    wasm: sha256:{SHA}
    resources: {{cpus: 0.1, mem: 32}}
edges:
  - read -> smooth -> out
"""

_ids = itertools.count(1)


def dag(text: str = PIPELINE) -> Dag:
    return loads(text, source="test.yaml")


def offer(agent: str, resources: str = "cpus:2;mem:1024", **attributes: str) -> Offer:
    attrs: dict[str, str | frozenset[str]] = {"executors": frozenset({"wasm"}), **attributes}
    return Offer(
        OfferId(f"o{next(_ids)}"),
        FrameworkId("framework-1"),
        AgentId(agent),
        agent,
        Resources.parse(resources),
        attrs,
    )


def sensor(agent: str = "pi", domain: str = "edge") -> Offer:
    return offer(agent, "cpus:1;mem:512;temperature:device(sim:sine)", domain=domain)


def status(
    task_id: TaskId, agent: str, state: TaskState, reason: Reason = Reason.UNSPECIFIED, message: str = ""
) -> TaskStatus:
    return TaskStatus(task_id, AgentId(agent), state, reason, message, uuid=f"u{next(_ids)}")


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def launched(driver: RecordingDriver) -> list[tuple[m.Accept, str]]:
    """(accept, task name) for every task launched so far, in order."""
    return [(a, t.name) for a in driver.of_type(m.Accept) for t in a.tasks]


def tasks_by_name(driver: RecordingDriver) -> dict[str, list[m.Accept]]:
    out: dict[str, list[m.Accept]] = {}
    for a, name in launched(driver):
        out.setdefault(name, []).append(a)
    return out
