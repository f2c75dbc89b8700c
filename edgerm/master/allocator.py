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
- What a client holds is what the master tells ``allocated``: its live tasks
  AND its outstanding offers (the master calls ``allocated`` when it makes an
  offer and ``unallocated`` when the offer goes away), so a framework that
  sits on offers ranks behind one that holds less.

Cost: both sorters keep their clients in order as allocations change (a
sorted list, re-placing one client per change), so ``sort`` is a copy of that
list, O(clients), and a change costs O(log clients) plus a list move. DRF
shares depend on the cluster total: a ``sort`` with a total that differs by
more than :data:`RETOTAL_TOLERANCE` (relative, any scalar, or a scalar that
appears or goes) from the one the keys were taken of re-keys every client.
Smaller drifts (agents joining one by one) keep the old keys, so all keys
are always fractions of one same total and the order stays consistent.

Sorters:

- :class:`DRFSorter` -- Dominant Resource Fairness (Ghodsi et al., as in
  Mesos ``sorter/drf``): a client's share is the largest fraction it holds of
  any scalar resource of the cluster total; lowest share first.
- :class:`RoundRobinSorter` -- ignores allocations; clients take turns.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Callable, Collection, Iterable
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


#: Relative change of the cluster total below which DRF keys are not recomputed.
RETOTAL_TOLERANCE = 0.001

_Entry = tuple[float, int, int, FrameworkId]  # (primary key, last offered, arrival, client)


class _Book:
    """What every sorter keeps: clients, their allocations, recency of offers,
    and the clients in order (``_order``, sorted ``_Entry`` tuples: a sorter's
    primary key, then least recently offered, then arrival)."""

    __slots__ = ("_added", "_allocations", "_clock", "_entries", "_inverse", "_last_offered", "_order", "_total")

    def __init__(self) -> None:
        self._allocations: dict[FrameworkId, Resources] = {}
        self._added: dict[FrameworkId, int] = {}
        self._last_offered: dict[FrameworkId, int] = {}
        self._clock = 0  # a counter, not time: orders adds and offers
        self._entries: dict[FrameworkId, _Entry] = {}
        self._order: list[_Entry] = []
        self._total = EMPTY  # the total the keys were taken of (DRF shares are fractions of it)
        self._inverse: dict[str, float] = {}  # 1 / amount for each scalar of that total

    def _tick(self) -> int:
        self._clock += 1
        return self._clock

    def _primary(self, client: FrameworkId) -> float:
        """The sorter's own key, lowest first (0 for all: recency alone decides)."""
        return 0.0

    def _entry(self, client: FrameworkId) -> _Entry:
        return (self._primary(client), self._last_offered[client], self._added[client], client)

    def _unplace(self, client: FrameworkId) -> None:
        entry = self._entries.pop(client, None)
        if entry is not None:
            del self._order[bisect_left(self._order, entry)]

    def _place(self, client: FrameworkId) -> None:
        self._unplace(client)
        entry = self._entries[client] = self._entry(client)
        insort(self._order, entry)

    def add(self, client: FrameworkId) -> None:
        if client not in self._allocations:
            self._allocations[client] = EMPTY
            self._added[client] = self._tick()
            self._last_offered[client] = 0
            self._place(client)

    def remove(self, client: FrameworkId) -> None:
        self._unplace(client)
        self._allocations.pop(client, None)
        self._added.pop(client, None)
        self._last_offered.pop(client, None)

    def allocated(self, client: FrameworkId, resources: Resources) -> None:
        if client in self._allocations:
            self._allocations[client] = self._allocations[client] + resources
            self._place(client)

    def unallocated(self, client: FrameworkId, resources: Resources) -> None:
        if client in self._allocations:
            self._allocations[client] = self._allocations[client] - resources
            self._place(client)

    def offered(self, client: FrameworkId) -> None:
        if client in self._last_offered:
            self._last_offered[client] = self._tick()
            self._place(client)

    def allocation(self, client: FrameworkId) -> Resources:
        return self._allocations.get(client, EMPTY)

    def sort(self, total: Resources) -> list[FrameworkId]:
        if total != self._total and not _close(total, self._total):  # shares changed: re-key everyone
            self._total = total
            self._inverse = {name: 1.0 / amount for name, amount in total.scalars.items() if amount > 0}
            self._entries = {client: self._entry(client) for client in self._allocations}
            self._order = sorted(self._entries.values())
        return [entry[3] for entry in self._order]


class DRFSorter(_Book):
    """Lowest dominant share first; ties go to the least recently offered."""

    __slots__ = ()

    def share(self, client: FrameworkId, total: Resources) -> float:
        """The client's dominant share of ``total`` (0 when it holds nothing)."""
        held = self.allocation(client)
        shares = (held.get(name) / amount for name, amount in total.scalars.items() if amount > 0)
        return max(shares, default=0.0)

    def _primary(self, client: FrameworkId) -> float:
        """``share`` of the last sort's total, as products with its inverse (re-keying is O(what is held))."""
        inverse = self._inverse
        held = self._allocations[client].scalars
        return max((amount * inverse.get(name, 0.0) for name, amount in held.items()), default=0.0)


class RoundRobinSorter(_Book):
    """Clients take turns regardless of what they hold."""

    __slots__ = ()


def _close(a: Resources, b: Resources) -> bool:
    """Whether the scalars of ``a`` are within RETOTAL_TOLERANCE of those of ``b`` (same names)."""
    if a.scalars.keys() != b.scalars.keys():
        return False
    return all(abs(v - b.scalars[k]) <= RETOTAL_TOLERANCE * b.scalars[k] for k, v in a.scalars.items())


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
    granted: Callable[[Grant], None] | None = None,
    among: Collection[FrameworkId] | None = None,
) -> list[Grant]:
    """Run one allocation cycle and record it in ``sorter``.

    ``free`` lists agents (in the order to visit them) with their free
    resources; ``total`` is the cluster total DRF shares are taken of.
    ``holder(agent)`` names the framework already holding an offer on that
    agent: offers are exclusive, so only that framework may be offered more
    of it. ``eligible(framework, agent)`` says whether a framework may be
    offered that agent now (active, not suppressed, not filtered).

    The sorter is re-consulted for every agent, so a framework that was just
    granted one agent drops behind the others for the next. ``granted(grant)``,
    if given, is called as each grant is made, before the next agent is
    visited: the caller can record it (make the offer) so that ``holder`` and
    ``eligible`` see it (e.g. a limit on offers per framework). ``among``, if
    given, restricts the candidates to these frameworks (still in the sorter's
    order; a single one needs no sort).
    """
    grants: list[Grant] = []
    for agent_id, resources in free:
        if not offerable(resources):
            continue
        held_by = holder(agent_id)
        if held_by is not None:
            candidates = [held_by] if among is None or held_by in among else []
        elif among is None:
            candidates = sorter.sort(total)
        elif len(among) == 1:
            candidates = list(among)
        else:
            candidates = [f for f in sorter.sort(total) if f in among]
        for framework_id in candidates:
            if eligible(framework_id, agent_id):
                sorter.allocated(framework_id, resources)
                sorter.offered(framework_id)
                grant = Grant(agent_id, framework_id, resources)
                grants.append(grant)
                if granted is not None:
                    granted(grant)
                break
    return grants
