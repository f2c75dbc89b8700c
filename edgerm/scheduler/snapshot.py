"""The snapshot: which agents a framework can place on, and what each has free.

A :class:`Snapshot` is an immutable, indexed list of :class:`AgentView` (id,
hostname, attributes, free resources), sorted by agent id so that plans do
not depend on the order offers arrived in. Build it from the offers a
framework holds (:meth:`Snapshot.from_offers`; several offers of one agent are
summed), from agent descriptions (:meth:`Snapshot.from_agents`, total
capacity taken as free), or from views.

Indexes, built once: agent *classes* (agents with identical attributes share
a class, so attribute-only checks run once per class), the owners of each
device name, and (lazily) agents by attribute value.

Rules: the snapshot never changes; :meth:`without`, :meth:`with_agents` and
:meth:`after` return new snapshots. An agent that hosts running instances but
has nothing free should still be listed (``hosts=`` in :meth:`from_offers`),
because re-planning treats an agent absent from the snapshot as lost.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from edgerm.ids import AgentId
from edgerm.model import AgentInfo, Attributes, AttrValue, Offer
from edgerm.resources import EMPTY, Resources

if TYPE_CHECKING:
    from edgerm.scheduler.plan import Plan

ClassKey = tuple[tuple[str, str | tuple[str, ...]], ...]


@dataclass(frozen=True, slots=True)
class AgentView:
    """An agent as the scheduler sees it: who, what it is, what is free."""

    id: AgentId
    hostname: str
    attributes: Attributes = field(default_factory=dict)
    free: Resources = EMPTY


def class_key(attributes: Attributes) -> ClassKey:
    """A hashable, order-independent key of an attribute mapping."""
    return tuple(sorted((k, v if isinstance(v, str) else tuple(sorted(v))) for k, v in attributes.items()))


def class_label(key: ClassKey) -> str:
    """``domain=edge,executors={docker,wasm},os=linux``; ``(no attributes)`` if empty."""
    if not key:
        return "(no attributes)"
    return ",".join(f"{k}={v}" if isinstance(v, str) else f"{k}={{{','.join(v)}}}" for k, v in key)


def attribute_text(value: AttrValue | None) -> str:
    """An attribute value as one text (sets joined), ``""`` when absent."""
    if value is None:
        return ""
    return value if isinstance(value, str) else ",".join(sorted(value))


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Agents and their free resources, indexed for placement."""

    agents: tuple[AgentView, ...] = ()
    _pos: dict[AgentId, int] = field(default_factory=dict, init=False, repr=False, compare=False)
    _cls: tuple[int, ...] = field(default=(), init=False, repr=False, compare=False)
    _labels: tuple[str, ...] = field(default=(), init=False, repr=False, compare=False)
    _sizes: tuple[int, ...] = field(default=(), init=False, repr=False, compare=False)
    _owners: dict[str, tuple[int, ...]] = field(default_factory=dict, init=False, repr=False, compare=False)
    _by_attr: dict[str, dict[str, tuple[int, ...]]] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        agents = tuple(sorted(self.agents, key=lambda a: a.id))
        object.__setattr__(self, "agents", agents)
        pos = {a.id: i for i, a in enumerate(agents)}
        if len(pos) != len(agents):
            raise ValueError("an agent is listed twice in the snapshot")
        interned: dict[ClassKey, int] = {}
        cls: list[int] = []
        sizes: list[int] = []
        owners: dict[str, list[int]] = {}
        for i, a in enumerate(agents):
            c = interned.setdefault(class_key(a.attributes), len(interned))
            if c == len(sizes):
                sizes.append(0)
            sizes[c] += 1
            cls.append(c)
            for d in a.free.devices:
                owners.setdefault(d, []).append(i)
        object.__setattr__(self, "_pos", pos)
        object.__setattr__(self, "_cls", tuple(cls))
        object.__setattr__(self, "_labels", tuple(class_label(k) for k in interned))
        object.__setattr__(self, "_sizes", tuple(sizes))
        object.__setattr__(self, "_owners", {k: tuple(v) for k, v in owners.items()})

    # -- constructors ---------------------------------------------------------------

    @classmethod
    def from_offers(cls, offers: Iterable[Offer], *, hosts: Iterable[AgentView] = ()) -> Snapshot:
        """Agents from offers (an agent's offers summed), plus ``hosts`` with nothing free."""
        views: dict[AgentId, AgentView] = {}
        for o in offers:
            prev = views.get(o.agent_id)
            if prev is None:
                views[o.agent_id] = AgentView(o.agent_id, o.hostname, o.attributes, o.resources)
            else:
                views[o.agent_id] = AgentView(prev.id, prev.hostname, prev.attributes, prev.free + o.resources)
        for h in hosts:
            if h.id not in views:
                views[h.id] = AgentView(h.id, h.hostname, h.attributes, EMPTY)
        return cls(tuple(views.values()))

    @classmethod
    def from_agents(cls, agents: Iterable[AgentInfo]) -> Snapshot:
        """Agents with all their capacity free (nothing runs yet)."""
        return cls(tuple(AgentView(a.id, a.hostname, a.attributes, a.resources) for a in agents))

    def without(self, *agent_ids: AgentId) -> Snapshot:
        gone = set(agent_ids)
        return Snapshot(tuple(a for a in self.agents if a.id not in gone))

    def with_agents(self, *views: AgentView) -> Snapshot:
        """Add agents, replacing any with the same id."""
        new = {v.id: v for v in views}
        return Snapshot(tuple(a for a in self.agents if a.id not in new) + tuple(new.values()))

    def minus(self, usage: Mapping[AgentId, Resources]) -> Snapshot:
        """Free resources after ``usage`` is taken from each listed agent."""
        return Snapshot(
            tuple(
                AgentView(a.id, a.hostname, a.attributes, a.free - usage[a.id]) if a.id in usage else a
                for a in self.agents
            )
        )

    def after(self, plan: Plan) -> Snapshot:
        """What the offers show once ``plan`` runs: its placements' resources are taken."""
        return self.minus(plan.usage())

    # -- queries --------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.agents)

    def __iter__(self) -> Iterator[AgentView]:
        return iter(self.agents)

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self._pos

    def get(self, agent_id: AgentId) -> AgentView | None:
        i = self._pos.get(agent_id)
        return None if i is None else self.agents[i]

    def position(self, agent_id: AgentId) -> int | None:
        """The agent's index in :attr:`agents`."""
        return self._pos.get(agent_id)

    def class_of(self, position: int) -> int:
        """The class number of the agent at ``position``."""
        return self._cls[position]

    @property
    def class_labels(self) -> tuple[str, ...]:
        return self._labels

    @property
    def class_sizes(self) -> tuple[int, ...]:
        return self._sizes

    def device_owners(self, name: str) -> tuple[int, ...]:
        """Positions of agents with a free device called ``name``."""
        return self._owners.get(name, ())

    def with_attribute(self, attribute: str, value: str) -> tuple[int, ...]:
        """Positions of agents whose ``attribute`` reads ``value`` (sets joined by commas)."""
        index = self._by_attr.get(attribute)
        if index is None:
            build: dict[str, list[int]] = {}
            for i, a in enumerate(self.agents):
                build.setdefault(attribute_text(a.attributes.get(attribute)), []).append(i)
            index = {k: tuple(v) for k, v in build.items()}
            self._by_attr[attribute] = index
        return index.get(value, ())
