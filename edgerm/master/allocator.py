"""The allocator: which framework is offered which agent's free resources.

A :class:`Sorter` orders frameworks ("clients") from most to least deserving;
:func:`allocate` walks the agents and hands each agent's free resources, whole,
to the first deserving framework that may take them. It is pure: no I/O, no
clock, no randomness. The master core owns the bookkeeping (what is free,
who is filtered) and calls these with plain values.

Sorter contract (tests/contract/test_sorters.py runs it against every sorter):

- ``add`` of a present client and ``remove`` of an absent one do nothing;
  ``allocated``/``unallocated`` of an absent client do nothing, and
  ``unallocated`` never drives an allocation below empty.
- ``sort(total)`` returns every client exactly once, deterministically.
- ``offered(client)`` records that the client was just offered something;
  among clients that are otherwise equal, the least recently offered comes
  first, so equal frameworks take turns (the fairness fix of MESOS-6111).

Sorters:

- :class:`DRFSorter` -- Dominant Resource Fairness (Ghodsi et al., as in
  Mesos ``sorter/drf``): a client's share is the largest fraction it holds of
  any scalar resource of the cluster total; lowest share first.
- :class:`RoundRobinSorter` -- ignores allocations; clients take turns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from edgerm.ids import AgentId, FrameworkId
from edgerm.resources import EMPTY, Resources


class Sorter(Protocol):
    """Orders frameworks for allocation. Pure bookkeeping, no I/O."""

    def add(self, client: FrameworkId) -> None: ...

    def remove(self, client: FrameworkId) -> None: ...

    def allocated(self, client: FrameworkId, resources: Resources) -> None: ...

    def unallocated(self, client: FrameworkId, resources: Resources) -> None: ...

    def offered(self, client: FrameworkId) -> None: ...

    def allocation(self, client: FrameworkId) -> Resources: ...

    def sort(self, total: Resources) -> list[FrameworkId]: ...


class _Book:
    """What every sorter keeps: clients, their allocations, recency of offers."""

    __slots__ = ("_added", "_allocations", "_clock", "_last_offered")

    def __init__(self) -> None:
        self._allocations: dict[FrameworkId, Resources] = {}
        self._added: dict[FrameworkId, int] = {}
        self._last_offered: dict[FrameworkId, int] = {}
        self._clock = 0  # a counter, not time: orders adds and offers

    def _tick(self) -> int:
        self._clock += 1
        return self._clock

    def add(self, client: FrameworkId) -> None:
        if client not in self._allocations:
            self._allocations[client] = EMPTY
            self._added[client] = self._tick()
            self._last_offered[client] = 0

    def remove(self, client: FrameworkId) -> None:
        self._allocations.pop(client, None)
        self._added.pop(client, None)
        self._last_offered.pop(client, None)

    def allocated(self, client: FrameworkId, resources: Resources) -> None:
        if client in self._allocations:
            self._allocations[client] = self._allocations[client] + resources

    def unallocated(self, client: FrameworkId, resources: Resources) -> None:
        if client in self._allocations:
            self._allocations[client] = self._allocations[client] - resources

    def offered(self, client: FrameworkId) -> None:
        if client in self._last_offered:
            self._last_offered[client] = self._tick()

    def allocation(self, client: FrameworkId) -> Resources:
        return self._allocations.get(client, EMPTY)

    def _recency(self, client: FrameworkId) -> tuple[int, int]:
        """Least recently offered first; never-offered clients in order of arrival."""
        return (self._last_offered[client], self._added[client])


class DRFSorter(_Book):
    """Lowest dominant share first; ties go to the least recently offered."""

    __slots__ = ()

    def share(self, client: FrameworkId, total: Resources) -> float:
        """The client's dominant share of ``total`` (0 when it holds nothing)."""
        held = self.allocation(client)
        shares = (held.get(name) / amount for name, amount in total.scalars.items() if amount > 0)
        return max(shares, default=0.0)

    def sort(self, total: Resources) -> list[FrameworkId]:
        return sorted(self._allocations, key=lambda c: (self.share(c, total), *self._recency(c)))


class RoundRobinSorter(_Book):
    """Clients take turns regardless of what they hold."""

    __slots__ = ()

    def sort(self, total: Resources) -> list[FrameworkId]:
        return sorted(self._allocations, key=self._recency)


@dataclass(frozen=True, slots=True)
class Grant:
    """One decision of an allocation cycle: ``framework`` gets ``resources`` of ``agent``."""

    agent_id: AgentId
    framework_id: FrameworkId
    resources: Resources


def offerable(free: Resources) -> bool:
    """Whether free resources are worth an offer: some cpus or some mem."""
    return free.cpus > 0 or free.mem > 0


def allocate(
    free: Iterable[tuple[AgentId, Resources]],
    total: Resources,
    sorter: Sorter,
    holder: Callable[[AgentId], FrameworkId | None],
    eligible: Callable[[FrameworkId, AgentId], bool],
) -> list[Grant]:
    """Run one allocation cycle and record it in ``sorter``.

    ``free`` lists agents (in the order to visit them) with their free
    resources; ``total`` is the cluster total DRF shares are taken of.
    ``holder(agent)`` names the framework already holding an offer on that
    agent: offers are exclusive, so only that framework may be offered more
    of it. ``eligible(framework, agent)`` says whether a framework may be
    offered that agent now (active, not suppressed, not filtered).

    The sorter is re-consulted for every agent, so a framework that was just
    granted one agent drops behind the others for the next.
    """
    grants: list[Grant] = []
    for agent_id, resources in free:
        if not offerable(resources):
            continue
        held_by = holder(agent_id)
        candidates = [held_by] if held_by is not None else sorter.sort(total)
        for framework_id in candidates:
            if eligible(framework_id, agent_id):
                sorter.allocated(framework_id, resources)
                sorter.offered(framework_id)
                grants.append(Grant(agent_id, framework_id, resources))
                break
    return grants
