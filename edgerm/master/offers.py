"""Outstanding offers, recently expired offer ids, and decline filters.

Rules:

- Offer ids come from a counter (``{master_id}-O{n}``): no randomness.
- Offers on one agent are exclusive: :meth:`OfferBook.holder` names the one
  framework holding offers on an agent, and the core only ever adds offers
  for that framework while any are outstanding.
- An offer that timed out is remembered (a bounded memory, oldest dropped
  first) so that a late ACCEPT is told OFFER_EXPIRED rather than
  UNKNOWN_OFFER. Used, declined and rescinded offers are simply forgotten.
- A filter ``(framework, agent) -> until`` keeps that agent out of that
  framework's offers while ``now < until``.

``touched`` collects the agents whose offers were created or removed since
the core's read views last took it (:mod:`edgerm.master.readviews`).

The book is plain bookkeeping; it never decides who gets what (that is
:mod:`edgerm.master.allocator`) and never talks to anyone.
"""

from __future__ import annotations

from collections import OrderedDict

from edgerm.ids import AgentId, FrameworkId, OfferId
from edgerm.model import AgentInfo, Offer
from edgerm.resources import EMPTY, Resources


class OfferBook:
    """Offers by id, with indexes by agent and framework."""

    __slots__ = (
        "_by_agent",
        "_counter",
        "_expired",
        "_expired_limit",
        "_filters",
        "_master_id",
        "_offers",
        "touched",
    )

    def __init__(self, master_id: str, expired_limit: int = 1024) -> None:
        self._master_id = master_id
        self._offers: dict[OfferId, Offer] = {}
        self._by_agent: dict[AgentId, dict[OfferId, None]] = {}
        self._expired: OrderedDict[OfferId, None] = OrderedDict()
        self._expired_limit = expired_limit
        self._filters: dict[tuple[FrameworkId, AgentId], float] = {}
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
        self.touched.add(agent.id)
        return offer

    def remove(self, offer_id: OfferId) -> Offer:
        """Forget an offer (used, declined or rescinded). It must exist."""
        offer = self._offers.pop(offer_id)
        on_agent = self._by_agent[offer.agent_id]
        del on_agent[offer_id]
        if not on_agent:
            del self._by_agent[offer.agent_id]
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
        """Offers whose time is up."""
        return [o for o in self._offers.values() if o.expires_at <= now]

    def of_framework(self, framework_id: FrameworkId) -> list[Offer]:
        return [o for o in self._offers.values() if o.framework_id == framework_id]

    def on_agent(self, agent_id: AgentId) -> list[Offer]:
        return [self._offers[i] for i in self._by_agent.get(agent_id, {})]

    def offered_on(self, agent_id: AgentId) -> Resources:
        """The sum of an agent's outstanding offers."""
        total = EMPTY
        for offer in self.on_agent(agent_id):
            total = total + offer.resources
        return total

    def holder(self, agent_id: AgentId) -> FrameworkId | None:
        """The framework holding offers on this agent, if any."""
        ids = self._by_agent.get(agent_id)
        return self._offers[next(iter(ids))].framework_id if ids else None

    # -- filters --------------------------------------------------------------

    def refuse(self, framework_id: FrameworkId, agent_id: AgentId, until: float) -> None:
        """Do not offer ``agent_id`` to ``framework_id`` before ``until`` (a longer filter wins)."""
        key = (framework_id, agent_id)
        self._filters[key] = max(until, self._filters.get(key, until))

    def filtered(self, framework_id: FrameworkId, agent_id: AgentId, now: float) -> bool:
        return self._filters.get((framework_id, agent_id), now) > now

    def filters_of(self, framework_id: FrameworkId) -> dict[AgentId, float]:
        return {a: until for (f, a), until in self._filters.items() if f == framework_id}

    def clear_filters(self, framework_id: FrameworkId | None = None, agent_id: AgentId | None = None) -> None:
        """Drop the filters of a framework, of an agent, or both matching."""
        self._filters = {
            (f, a): until
            for (f, a), until in self._filters.items()
            if not ((framework_id is None or f == framework_id) and (agent_id is None or a == agent_id))
        }

    def purge_filters(self, now: float) -> None:
        """Drop filters that no longer hold."""
        self._filters = {key: until for key, until in self._filters.items() if until > now}
