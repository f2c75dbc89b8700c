"""Outstanding offers, recently expired offer ids, and decline filters.

Rules:

- Offer ids come from a counter (``{master_id}-O{n}``): no randomness.
- Offers on one agent are exclusive: :meth:`OfferBook.holder` names the one
  framework holding offers on an agent, and the core only ever adds offers
  for that framework while any are outstanding.
- An offer that timed out is remembered (a bounded memory, oldest dropped
  first) so that a late ACCEPT is told OFFER_EXPIRED rather than
  UNKNOWN_OFFER. Used, declined and rescinded offers are simply forgotten.
- A filter ``(framework, agent) -> (until, refused)`` keeps that agent out
  of that framework's offers while ``now < until`` AND the agent's free
  resources fit within ``refused`` (what was declined), as Mesos' refused
  resources filters do: once more is free on the agent (a task ended), the
  framework may be offered it again. A longer filter replaces a shorter one.

Cost: offers are indexed by agent and by framework; offers and filters are
also kept in heaps by expiry time, so :meth:`OfferBook.due` and
:meth:`OfferBook.expire_filters` look only at what is due, never at every
offer or filter. Heap entries of offers or filters that went away earlier
are skipped when they come up (and the heap is rebuilt if they pile up).

``touched`` collects the agents whose offers were created or removed since
the core's read views last took it (:mod:`edgerm.master.readviews`).

The book is plain bookkeeping; it never decides who gets what (that is
:mod:`edgerm.master.allocator`) and never talks to anyone.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from typing import TypeVar

from edgerm.ids import AgentId, FrameworkId, OfferId
from edgerm.model import AgentInfo, Offer
from edgerm.resources import EMPTY, Resources, total

_K = TypeVar("_K", AgentId, FrameworkId)
_HEAP_SLACK = 1024  # stale heap entries tolerated beyond the live ones before a rebuild


class OfferBook:
    """Offers by id, with indexes by agent and framework; filters by framework and agent."""

    __slots__ = (
        "_by_agent",
        "_by_framework",
        "_counter",
        "_expired",
        "_expired_limit",
        "_expiry",
        "_filter_heap",
        "_filtered_by",
        "_filters",
        "_filters_count",
        "_master_id",
        "_offered",
        "_offers",
        "touched",
    )

    def __init__(self, master_id: str, expired_limit: int = 1024) -> None:
        self._master_id = master_id
        self._offers: dict[OfferId, Offer] = {}
        self._by_agent: dict[AgentId, dict[OfferId, None]] = {}
        self._offered: dict[AgentId, Resources] = {}  # offered_on's sums, dropped when the agent's offers change
        self._by_framework: dict[FrameworkId, dict[OfferId, None]] = {}
        self._expiry: list[tuple[float, int, OfferId]] = []  # (expires_at, n, id): a heap
        self._expired: OrderedDict[OfferId, None] = OrderedDict()
        self._expired_limit = expired_limit
        self._filters: dict[FrameworkId, dict[AgentId, tuple[float, Resources]]] = {}
        self._filtered_by: dict[AgentId, set[FrameworkId]] = {}  # agent -> frameworks filtering it
        self._filter_heap: list[tuple[float, FrameworkId, AgentId]] = []
        self._filters_count = 0
        self._counter = 0
        self.touched: set[AgentId] = set()  # agents whose offers changed (for the read views)

    # -- offers ---------------------------------------------------------------

    def get(self, offer_id: OfferId) -> Offer | None:
        return self._offers.get(offer_id)

    def was_expired(self, offer_id: OfferId) -> bool:
        return offer_id in self._expired

    def __len__(self) -> int:
        return len(self._offers)

    def all(self) -> list[Offer]:
        return list(self._offers.values())

    def create(self, framework_id: FrameworkId, agent: AgentInfo, resources: Resources, expires_at: float) -> Offer:
        self._counter += 1
        offer = Offer(
            id=OfferId(f"{self._master_id}-O{self._counter}"),
            framework_id=framework_id,
            agent_id=agent.id,
            hostname=agent.hostname,
            resources=resources,
            attributes=agent.attributes,
            expires_at=expires_at,
        )
        self._offers[offer.id] = offer
        self._by_agent.setdefault(agent.id, {})[offer.id] = None
        self._offered.pop(agent.id, None)
        self.touched.add(agent.id)
        self._by_framework.setdefault(framework_id, {})[offer.id] = None
        if len(self._expiry) > 2 * len(self._offers) + _HEAP_SLACK:
            self._expiry = [e for e in self._expiry if e[2] in self._offers]
            heapq.heapify(self._expiry)
        heapq.heappush(self._expiry, (expires_at, self._counter, offer.id))
        return offer

    def remove(self, offer_id: OfferId) -> Offer:
        """Forget an offer (used, declined or rescinded). It must exist."""
        offer = self._offers.pop(offer_id)
        _unindex(self._by_agent, offer.agent_id, offer_id)
        self._offered.pop(offer.agent_id, None)
        _unindex(self._by_framework, offer.framework_id, offer_id)
        self.touched.add(offer.agent_id)
        return offer

    def expire(self, offer_id: OfferId) -> Offer:
        """Forget an offer that timed out, remembering its id for a while."""
        offer = self.remove(offer_id)
        self._expired[offer_id] = None
        while len(self._expired) > self._expired_limit:
            self._expired.popitem(last=False)
        return offer

    def due(self, now: float) -> list[Offer]:
        """Offers whose time is up, soonest first (they stay in the book until removed)."""
        due: list[Offer] = []
        heap = self._expiry
        while heap and heap[0][0] <= now:
            offer = self._offers.get(heapq.heappop(heap)[2])
            if offer is not None:
                due.append(offer)
        return due

    def of_framework(self, framework_id: FrameworkId) -> list[Offer]:
        return [self._offers[i] for i in self._by_framework.get(framework_id, {})]

    def count_of(self, framework_id: FrameworkId) -> int:
        """How many offers the framework holds."""
        return len(self._by_framework.get(framework_id, ()))

    def on_agent(self, agent_id: AgentId) -> list[Offer]:
        return [self._offers[i] for i in self._by_agent.get(agent_id, {})]

    def offered_on(self, agent_id: AgentId) -> Resources:
        """The sum of an agent's outstanding offers (summed once per change of them)."""
        ids = self._by_agent.get(agent_id)
        if not ids:
            return EMPTY
        if len(ids) == 1:
            return self._offers[next(iter(ids))].resources
        offered = self._offered.get(agent_id)
        if offered is None:
            offered = self._offered[agent_id] = total(self._offers[i].resources for i in ids)
        return offered

    def holder(self, agent_id: AgentId) -> FrameworkId | None:
        """The framework holding offers on this agent, if any."""
        ids = self._by_agent.get(agent_id)
        return self._offers[next(iter(ids))].framework_id if ids else None

    # -- filters --------------------------------------------------------------

    def refuse(self, framework_id: FrameworkId, agent_id: AgentId, until: float, refused: Resources) -> None:
        """Do not offer ``agent_id`` to ``framework_id`` before ``until`` while what it has free fits
        within ``refused`` (a longer filter wins; an equally long one adds what it refused)."""
        mine = self._filters.setdefault(framework_id, {})
        old = mine.get(agent_id)
        if old is not None:
            if until < old[0]:
                return
            if until == old[0]:
                refused = old[1] + refused
        else:
            self._filters_count += 1
        mine[agent_id] = (until, refused)
        self._filtered_by.setdefault(agent_id, set()).add(framework_id)
        if len(self._filter_heap) > 2 * self._filters_count + _HEAP_SLACK:
            self._filter_heap = [e for e in self._filter_heap if self._until(e[1], e[2]) == e[0]]
            heapq.heapify(self._filter_heap)
        heapq.heappush(self._filter_heap, (until, framework_id, agent_id))

    def filtered(self, framework_id: FrameworkId, agent_id: AgentId, now: float, free: Resources) -> bool:
        """Whether a filter keeps an agent with ``free`` resources from the framework now."""
        mine = self._filters.get(framework_id)
        entry = mine.get(agent_id) if mine is not None else None
        return entry is not None and entry[0] > now and (free == entry[1] or free <= entry[1])

    def has_filter(self, framework_id: FrameworkId, agent_id: AgentId, now: float) -> bool:
        """Whether a filter of the framework on the agent is still running (whatever is free)."""
        return self._until(framework_id, agent_id) > now

    def filters_of(self, framework_id: FrameworkId) -> dict[AgentId, float]:
        """The framework's filters: agent -> until."""
        return {a: until for a, (until, _) in self._filters.get(framework_id, {}).items()}

    def _until(self, framework_id: FrameworkId, agent_id: AgentId) -> float:
        entry = self._filters.get(framework_id, {}).get(agent_id)
        return entry[0] if entry is not None else float("-inf")

    def clear_filters(self, framework_id: FrameworkId | None = None, agent_id: AgentId | None = None) -> None:
        """Drop the filters of a framework, of an agent, or both matching."""
        if framework_id is not None:
            agents = list(self._filters.get(framework_id, {})) if agent_id is None else [agent_id]
            for a in agents:
                self._drop_filter(framework_id, a)
        elif agent_id is not None:
            for f in list(self._filtered_by.get(agent_id, ())):
                self._drop_filter(f, agent_id)
        else:
            self._filters.clear()
            self._filtered_by.clear()
            self._filter_heap.clear()
            self._filters_count = 0

    def expire_filters(self, now: float) -> list[tuple[FrameworkId, AgentId]]:
        """Drop the filters that no longer hold and say which they were, soonest first."""
        ended: list[tuple[FrameworkId, AgentId]] = []
        heap = self._filter_heap
        while heap and heap[0][0] <= now:
            until, framework_id, agent_id = heapq.heappop(heap)
            if self._until(framework_id, agent_id) == until:  # else replaced or cleared
                self._drop_filter(framework_id, agent_id)
                ended.append((framework_id, agent_id))
        return ended

    def _drop_filter(self, framework_id: FrameworkId, agent_id: AgentId) -> None:
        mine = self._filters.get(framework_id)
        if mine is None or mine.pop(agent_id, None) is None:
            return
        self._filters_count -= 1
        if not mine:
            del self._filters[framework_id]
        frameworks = self._filtered_by[agent_id]
        frameworks.discard(framework_id)
        if not frameworks:
            del self._filtered_by[agent_id]


def _unindex(index: dict[_K, dict[OfferId, None]], key: _K, offer_id: OfferId) -> None:
    ids = index[key]
    del ids[offer_id]
    if not ids:
        del index[key]
