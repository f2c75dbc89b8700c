"""Ranking: composable stages that score feasible agents and suggest where to look first.

A :class:`Ranker` is prepared once per instance (:meth:`Ranker.prepare`) and
returns a :class:`Scoring`: agents it would like examined first
(``preferred``) and a function giving each feasible agent a score in
``[0, 1]``. A policy sums the stages' scores by weight; the best total wins,
ties going to the agent examined first.

==================  ===========================================================
stage               prefers
==================  ===========================================================
:class:`BinPack`    agents it will fill the most; suggests the bins it opened
:class:`LeastLoaded` agents it will fill the least (spread load over agents)
:class:`Spread`     attribute values (``domain``, ``zone``) holding the fewest
                    instances of this operator
:class:`Locality`   the agents, then the domain, of the instance's placed
                    upstream and downstream neighbours (fewer edges cross
                    domains); suggests those agents and that domain's agents
==================  ===========================================================

Sources and sinks that need a device are kept on the agents that own it by
the candidate pool itself (see :mod:`edgerm.scheduler.stack`), so locality
to sensors needs no score.

Rules: a stage never changes the context and never rejects an agent (that is
feasibility's job); scores are relative to the snapshot, so they stay cheap.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Protocol

from edgerm.resources import Resources
from edgerm.scheduler.context import Demand, PlanContext
from edgerm.scheduler.snapshot import attribute_text

ScoreFn = Callable[[int, Resources], float]
AGENT = "@id"  # Spread over agents instead of an attribute


@dataclass(frozen=True, slots=True)
class Scoring:
    """A prepared stage: agents to examine first, and a score for a feasible agent."""

    preferred: Sequence[int] = ()
    score: ScoreFn | None = None  # None: this stage has no opinion for this instance


class Ranker(Protocol):
    @property
    def name(self) -> str: ...

    def prepare(self, ctx: PlanContext, demand: Demand) -> Scoring: ...


def fill_ratio(ctx: PlanContext, demand: Demand, pos: int, free: Resources) -> float:
    """How full the agent's scalars the variant asks for would be after placing it (0..1).

    Measured against what the agent had free in the snapshot: agents offer
    only what is free, so that is the capacity this plan sees.
    """
    need = demand.variant.resources.scalars
    if not need:
        return 0.0
    base = ctx.agents[pos].free.scalars
    have = free.scalars
    total = 0.0
    for k, v in need.items():
        left = have.get(k, 0.0) - v
        cap = max(base.get(k, 0.0), have.get(k, 0.0))
        total += 1.0 if cap <= 0 else min(1.0, max(0.0, 1.0 - left / cap))
    return total / len(need)


@dataclass(frozen=True, slots=True)
class BinPack:
    """Best fit: fill agents before opening new ones."""

    name: str = "binpack"

    def prepare(self, ctx: PlanContext, demand: Demand) -> Scoring:
        open_bins = list(islice(reversed(ctx.recent), ctx.limit))

        def score(pos: int, free: Resources) -> float:
            return fill_ratio(ctx, demand, pos, free)

        return Scoring(open_bins, score)


@dataclass(frozen=True, slots=True)
class LeastLoaded:
    """Worst fit: keep every agent's load low."""

    name: str = "least-loaded"

    def prepare(self, ctx: PlanContext, demand: Demand) -> Scoring:
        def score(pos: int, free: Resources) -> float:
            return 1.0 - fill_ratio(ctx, demand, pos, free)

        return Scoring((), score)


@dataclass(frozen=True, slots=True)
class Spread:
    """Even out an operator's instances over the values of ``attribute`` (``@id``: agents)."""

    attribute: str = "domain"
    name: str = field(default="spread")

    def _value(self, ctx: PlanContext, pos: int) -> str:
        if self.attribute == AGENT:
            return ctx.agents[pos].id
        return attribute_text(ctx.agents[pos].attributes.get(self.attribute))

    def prepare(self, ctx: PlanContext, demand: Demand) -> Scoring:
        where = ctx.positions_of(demand.operator.name)
        if not where:
            return Scoring()
        counts = Counter(self._value(ctx, p) for p in where)
        total = len(where) + 1

        def score(pos: int, free: Resources) -> float:
            return 1.0 - counts.get(self._value(ctx, pos), 0) / total

        return Scoring((), score)


@dataclass(frozen=True, slots=True)
class Locality:
    """Stay near neighbours: same agent scores 1, same ``attribute`` value (domain) 0.5."""

    attribute: str = "domain"
    name: str = field(default="locality")

    def prepare(self, ctx: PlanContext, demand: Demand) -> Scoring:
        dag = ctx.dag
        op = demand.operator.name
        neighbours: list[int] = []
        for other in (*dag.upstream(op), *dag.downstream(op)):
            neighbours.extend(ctx.positions_of(other))
        if not neighbours:
            return Scoring()
        attr = self.attribute
        agents = ctx.agents
        domains = [attribute_text(agents[p].attributes.get(attr)) for p in neighbours]
        preferred = list(dict.fromkeys(neighbours))[: ctx.limit]
        room = ctx.limit - len(preferred)
        for d in dict.fromkeys(d for d in domains if d):
            if room <= 0:
                break
            near = ctx.rotate(("locality", attr, d), ctx.snapshot.with_attribute(attr, d), room)
            preferred.extend(near)
            room -= len(near)
        n = len(neighbours)
        on_agent = Counter(neighbours)
        in_domain = Counter(d for d in domains if d)

        def score(pos: int, free: Resources) -> float:
            # a neighbour on this very agent counts 1; elsewhere in its domain, 0.5
            same = on_agent.get(pos, 0)
            mine = attribute_text(agents[pos].attributes.get(attr))
            near = in_domain.get(mine, 0) - same if mine else 0
            return (same + 0.5 * near) / n

        return Scoring(preferred, score)
