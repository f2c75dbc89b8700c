"""The working state of one compile or re-plan: free resources as placements consume them.

:class:`PlanContext` starts from a snapshot and records every placement made
so far; feasibility checks and rankers read it, the compiler alone writes it.
Agents are addressed by their position in the snapshot (ints are cheaper to
hash than ids on a 10,000-agent cluster); free resources are copied lazily,
only for agents that something was placed on.

Rules: a context lives for one call of ``compile_dag``/``replan`` and is
never shared, so the library stays pure from the outside. Free resources only
shrink while compiling; re-planning may give resources back
(:meth:`PlanContext.give`), which bumps :attr:`PlanContext.generation` so
cached "fits nowhere" answers are recomputed.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgerm.resources import Resources
from edgerm.scheduler.dag import Dag, Instance, Operator, Variant
from edgerm.scheduler.plan import ClassRejections, Placement
from edgerm.scheduler.reasons import Rejection
from edgerm.scheduler.snapshot import AgentView, Snapshot

NeedsKey = tuple[object, ...]


def needs_key(variant: Variant) -> NeedsKey:
    """What feasibility depends on: executor, resources, constraints, devices (not args/env)."""
    return (variant.executor, str(variant.resources), variant.constraints, variant.devices)


@dataclass(frozen=True, slots=True)
class Demand:
    """What is being placed: one instance running one variant.

    ``key`` numbers the variant's needs within one context; variants with
    equal needs (the replicas of an operator, or look-alike operators) share
    cached answers. Build demands with :meth:`PlanContext.demand`.
    """

    instance: Instance
    operator: Operator
    variant: Variant
    key: int


class PlanContext:
    """Free resources and placements so far, by snapshot position."""

    def __init__(self, dag: Dag, snapshot: Snapshot, candidate_limit: int) -> None:
        self.dag = dag
        self.snapshot = snapshot
        self.agents = snapshot.agents
        self.limit = candidate_limit
        self.generation = 0
        self._free: dict[int, Resources] = {}
        self.placed: dict[Instance, tuple[Placement, int]] = {}
        self.by_operator: dict[str, dict[Instance, int]] = {}
        self.recent: dict[int, None] = {}  # agents used, least recent first
        self.held_devices: dict[int, dict[str, int]] = {}  # devices the placements hold, per agent
        self.returned_devices: dict[str, list[int]] = {}  # agents a device was given back to
        self.cursors: dict[object, int] = {}
        self.class_cache: dict[tuple[int, int], Rejection | None] = {}  # (needs, agent class)
        self.explanations: dict[int, tuple[int, tuple[ClassRejections, ...]]] = {}  # needs -> (generation, why)
        self._needs_ids: dict[NeedsKey, int] = {}
        self._by_variant: dict[int, tuple[Variant, int]] = {}

    def demand(self, instance: Instance, operator: Operator, variant: Variant) -> Demand:
        """A demand for ``variant``; its needs are numbered once per variant."""
        got = self._by_variant.get(id(variant))
        if got is None or got[0] is not variant:
            key = self._needs_ids.setdefault(needs_key(variant), len(self._needs_ids))
            got = (variant, key)
            self._by_variant[id(variant)] = got
        return Demand(instance, operator, variant, got[1])

    # -- resources --

    def free(self, pos: int) -> Resources:
        """What agent ``pos`` has free now."""
        got = self._free.get(pos)
        return self.agents[pos].free if got is None else got

    def take(self, pos: int, res: Resources) -> None:
        self._free[pos] = self.free(pos) - res

    def give(self, pos: int, res: Resources) -> None:
        """Return resources to agent ``pos`` (re-planning only)."""
        self._free[pos] = self.free(pos) + res
        self.generation += 1
        for d in res.devices:
            owners = self.returned_devices.setdefault(d, [])
            if pos not in owners:
                owners.append(pos)

    def device_owners(self, name: str) -> tuple[int, ...]:
        """Agents that may have device ``name`` free: the snapshot's owners and any it was given back to."""
        extra = self.returned_devices.get(name)
        owners = self.snapshot.device_owners(name)
        if not extra:
            return owners
        return owners + tuple(p for p in extra if p not in owners)

    # -- placements --

    def record(self, placement: Placement, pos: int) -> None:
        """Note a placement whose resources are already accounted for."""
        inst = placement.instance
        self.placed[inst] = (placement, pos)
        self.by_operator.setdefault(inst.operator, {})[inst] = pos
        self.recent.pop(pos, None)
        self.recent[pos] = None
        held = self.held_devices.setdefault(pos, {})
        for d in placement.resources.devices:
            held[d] = held.get(d, 0) + 1

    def forget(self, instance: Instance) -> tuple[Placement, int] | None:
        """Drop an instance's placement (its resources are not given back)."""
        got = self.placed.pop(instance, None)
        if got is not None:
            placement, pos = got
            self.by_operator.get(instance.operator, {}).pop(instance, None)
            held = self.held_devices.get(pos, {})
            for d in placement.resources.devices:
                if d in held:
                    held[d] -= 1
                    if not held[d]:
                        del held[d]
        return got

    def holds_device(self, pos: int, name: str) -> bool:
        """True when an instance of this plan holds device ``name`` on agent ``pos``."""
        return name in self.held_devices.get(pos, {})

    def place(self, demand: Demand, pos: int) -> Placement:
        """Place ``demand`` on agent ``pos``: claim its devices, take its resources."""
        agent = self.agents[pos]
        res = demand.variant.resources
        if demand.variant.devices:
            free = self.free(pos)
            res = res + Resources(devices={d: free.devices[d] for d in demand.variant.devices})
        self.take(pos, res)
        p = Placement(
            demand.instance,
            agent.id,
            agent.hostname,
            demand.variant.name,
            demand.variant.executor,
            res,
            agent.attributes,
        )
        self.record(p, pos)
        return p

    def positions_of(self, operator: str) -> list[int]:
        """Where the placed instances of ``operator`` are (snapshot positions)."""
        return list(self.by_operator.get(operator, {}).values())

    def agent(self, pos: int) -> AgentView:
        return self.agents[pos]

    def rotate(self, key: object, seq: tuple[int, ...], count: int) -> list[int]:
        """Up to ``count`` items of ``seq``, continuing where the last call with ``key`` stopped."""
        n = len(seq)
        if not n:
            return []
        start = self.cursors.get(key, 0) % n
        take = min(count, n)
        self.cursors[key] = (start + take) % n
        return [seq[(start + i) % n] for i in range(take)]
