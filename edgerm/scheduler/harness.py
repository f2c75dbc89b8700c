"""A test harness: an in-memory cluster from compact strings, and a recording planner.

::

    h = SchedulerHarness(
        "a1 cpus:2;mem:1024 os=linux,domain=edge devices=temperature",
        "a2 cpus:8;mem:8192 os=linux,domain=cloud,executors={docker}",
    )
    plan = h.compile(dag)          # against every agent's full capacity
    h.lose("a1")
    step = h.replan()              # against capacity minus what the running plan uses
    assert step.plan is h.running and h.plans == [plan, step.plan]

Agent spec: ``ID [RESOURCES] [ATTRIBUTES] [devices=NAMES]`` in any order
after the id. ``RESOURCES`` is the :class:`~edgerm.resources.Resources` text
form; ``ATTRIBUTES`` is ``key=value`` pairs separated by commas, a value in
braces being a set (``executors={wasm,docker}``); ``NAMES`` is a comma list
of ``name``, ``name:handle`` or ``name:handle:shared`` (handle defaults to
``sim:<name>``). Unless given, ``executors`` is ``{wasm,docker}``. The
hostname is the id.

Rules: the harness owns capacities; :meth:`snapshot` derives free resources
from them and the running plan, exactly as offers would show them, so tests
exercise the real snapshot/plan/replan path with no fakes.
"""

from __future__ import annotations

from edgerm.ids import AgentId
from edgerm.model import AttrValue
from edgerm.resources import Device, Resources
from edgerm.scheduler.compiler import compile_dag, replan
from edgerm.scheduler.dag import Dag, Instance
from edgerm.scheduler.feasible import EXECUTORS_ATTRIBUTE
from edgerm.scheduler.loader import loads_dag
from edgerm.scheduler.plan import Placement, Plan, Replan
from edgerm.scheduler.policy import LOCALITY, Policy
from edgerm.scheduler.snapshot import AgentView, Snapshot

DEFAULT_EXECUTORS = frozenset({"wasm", "docker"})


def _split_top(text: str) -> list[str]:
    """Split on commas that are not inside braces."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
            continue
        depth += ch == "{"
        depth -= ch == "}"
        cur += ch
    out.append(cur)
    return [p.strip() for p in out if p.strip()]


def parse_agent(spec: str) -> AgentView:
    """Build an agent from its compact spec (see the module docstring)."""
    tokens = spec.split()
    if not tokens:
        raise ValueError("empty agent spec")
    agent_id, rest = tokens[0], tokens[1:]
    resources: Resources | None = None
    attributes: dict[str, AttrValue] | None = None
    devices: dict[str, Device] | None = None
    for tok in rest:
        if tok.startswith("devices="):
            if devices is not None:
                raise ValueError(f"{spec!r}: devices given twice")
            devices = {}
            for item in _split_top(tok[len("devices=") :]):
                name, _, handle = item.partition(":")
                shared = handle == "shared" or handle.endswith(":shared")
                handle = handle.removesuffix("shared").removesuffix(":") if shared else handle
                devices[name] = Device(handle or f"sim:{name}", shared)
        elif "=" in tok:
            if attributes is not None:
                raise ValueError(f"{spec!r}: attributes given twice")
            attributes = {}
            for pair in _split_top(tok):
                k, sep, v = pair.partition("=")
                if not sep or not k:
                    raise ValueError(f"{spec!r}: bad attribute {pair!r}")
                if v.startswith("{") and v.endswith("}"):
                    attributes[k] = frozenset(i.strip() for i in v[1:-1].split(",") if i.strip())
                else:
                    attributes[k] = v
        else:
            if resources is not None:
                raise ValueError(f"{spec!r}: resources given twice")
            resources = Resources.parse(tok)
    attrs: dict[str, AttrValue] = attributes or {}
    attrs.setdefault(EXECUTORS_ATTRIBUTE, DEFAULT_EXECUTORS)
    free = resources or Resources()
    if devices:
        free = free + Resources(devices=devices)
    return AgentView(AgentId(agent_id), agent_id, attrs, free)


class SchedulerHarness:
    """A cluster of agents in memory, a running plan, and every plan made, in order."""

    def __init__(self, *specs: str, policy: Policy = LOCALITY) -> None:
        self.policy = policy
        self.capacity: dict[AgentId, AgentView] = {}
        self.plans: list[Plan] = []
        self.replans: list[Replan] = []
        self.running: Plan | None = None
        self.dag: Dag | None = None
        self.add(*specs)

    # -- the cluster --

    def add(self, *specs: str) -> list[AgentView]:
        """Add (or replace) agents; returns them."""
        views = [parse_agent(s) for s in specs]
        for v in views:
            self.capacity[v.id] = v
        return views

    def lose(self, *agent_ids: str) -> None:
        for a in agent_ids:
            del self.capacity[AgentId(a)]

    def snapshot(self) -> Snapshot:
        """Every agent with its capacity minus what the running plan uses on it."""
        base = Snapshot(tuple(self.capacity.values()))
        return base.after(self.running) if self.running else base

    # -- planning --

    @staticmethod
    def load(text: str) -> Dag:
        """A DAG from YAML text."""
        return loads_dag(text, source="<harness>")

    def compile(self, dag: Dag | str, policy: Policy | None = None) -> Plan:
        """Compile from scratch against full capacity; the result becomes the running plan."""
        self.dag = self.load(dag) if isinstance(dag, str) else dag
        plan = compile_dag(self.dag, Snapshot(tuple(self.capacity.values())), policy or self.policy)
        self.plans.append(plan)
        self.running = plan
        return plan

    def replan(self, dag: Dag | str | None = None, policy: Policy | None = None) -> Replan:
        """Re-plan the running plan (optionally for a changed DAG) against the current cluster."""
        if self.running is None or self.dag is None:
            raise ValueError("compile a DAG before re-planning")
        if dag is not None:
            self.dag = self.load(dag) if isinstance(dag, str) else dag
        step = replan(self.dag, self.running, self.snapshot(), policy or self.policy)
        self.replans.append(step)
        self.plans.append(step.plan)
        self.running = step.plan
        return step

    # -- reading the running plan --

    def placement(self, operator: str, replica: int = 0) -> Placement | None:
        return self.running.placement(Instance(operator, replica)) if self.running else None

    def agent_of(self, operator: str, replica: int = 0) -> AgentId | None:
        p = self.placement(operator, replica)
        return p.agent_id if p else None
