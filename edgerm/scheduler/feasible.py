"""Feasibility: a chain of small checks, each answering ``None`` (fits) or a named reason.

Each check does one job and returns a :class:`~edgerm.scheduler.reasons.Rejection`
for the first thing it finds wrong:

========================  =========  ==========================================
check                     scope      rejects with
========================  =========  ==========================================
:class:`ExecutorCheck`    class      ``missing executor wasm``
:class:`ConstraintCheck`  class      ``constraint os == linux``
:class:`IdentityCheck`    agent      ``constraint @hostname =~ ^pi-``
:class:`DeviceCheck`      agent      ``missing device temperature`` /
                                     ``device in use temperature`` (held by
                                     an instance of this plan)
:class:`ResourceCheck`    agent      ``insufficient mem``
========================  =========  ==========================================

Rules: a check with ``per_class = True`` may only read the agent's
attributes, so its answer is cached per agent class (agents with identical
attributes) and per variant; class checks always run before agent checks.
A check never changes the context.
"""

from __future__ import annotations

from typing import Protocol

from edgerm.resources import Resources
from edgerm.scheduler import reasons
from edgerm.scheduler.context import Demand, PlanContext
from edgerm.scheduler.reasons import Rejection
from edgerm.scheduler.snapshot import AgentView

EXECUTORS_ATTRIBUTE = "executors"
_EPSILON = 0.0005


class Check(Protocol):
    """One feasibility check.

    A check may read the variant's executor, resources, constraints and
    devices (its *needs*), never its args or env: answers are cached by needs.
    """

    @property
    def name(self) -> str: ...

    @property
    def per_class(self) -> bool: ...

    def __call__(self, ctx: PlanContext, demand: Demand, agent: AgentView, free: Resources) -> Rejection | None: ...


class ExecutorCheck:
    """The agent's ``executors`` attribute must list the variant's executor kind."""

    name = "executor"
    per_class = True

    def __call__(self, ctx: PlanContext, demand: Demand, agent: AgentView, free: Resources) -> Rejection | None:
        kind = demand.variant.executor.kind
        have = agent.attributes.get(EXECUTORS_ATTRIBUTE)
        if have is None or (kind != have if isinstance(have, str) else kind not in have):
            return reasons.missing_executor(kind)
        return None


class ConstraintCheck:
    """Every attribute constraint of the variant holds (``@hostname``/``@id`` ones excluded)."""

    name = "constraints"
    per_class = True

    def __call__(self, ctx: PlanContext, demand: Demand, agent: AgentView, free: Resources) -> Rejection | None:
        for c in demand.variant.constraints:
            if not c.per_agent and not c.holds(agent.attributes):
                return reasons.constraint_failed(str(c))
        return None


class IdentityCheck:
    """Constraints on the agent itself (``@hostname``, ``@id``) hold."""

    name = "identity"
    per_class = False

    def __call__(self, ctx: PlanContext, demand: Demand, agent: AgentView, free: Resources) -> Rejection | None:
        for c in demand.variant.constraints:
            if c.per_agent and not c.holds(agent.attributes, agent.hostname, agent.id):
                return reasons.constraint_failed(str(c))
        return None


class DeviceCheck:
    """Each device the variant names is free on the agent."""

    name = "devices"
    per_class = False

    def __call__(self, ctx: PlanContext, demand: Demand, agent: AgentView, free: Resources) -> Rejection | None:
        for d in demand.variant.devices:
            if d not in free.devices:
                if d in agent.free.devices:
                    return reasons.device_in_use(d)
                pos = ctx.snapshot.position(agent.id)
                held = pos is not None and ctx.holds_device(pos, d)
                return reasons.device_in_use(d) if held else reasons.missing_device(d)
        return None


class ResourceCheck:
    """The variant's resources fit within what the agent has free."""

    name = "resources"
    per_class = False

    def __call__(self, ctx: PlanContext, demand: Demand, agent: AgentView, free: Resources) -> Rejection | None:
        need = demand.variant.resources
        have = free.scalars
        # Scalars first, inline: this is the hottest line of the scheduler.
        for k, v in need.scalars.items():
            if v > have.get(k, 0.0) + _EPSILON:
                return reasons.insufficient(k)
        if (need.ranges or need.sets) and not need <= free:
            return reasons.insufficient(next(iter(need.missing(free)), "resources"))
        return None


DEFAULT_CHECKS: tuple[Check, ...] = (
    ExecutorCheck(),
    ConstraintCheck(),
    IdentityCheck(),
    DeviceCheck(),
    ResourceCheck(),
)


def first_rejection(ctx: PlanContext, checks: tuple[Check, ...], demand: Demand, pos: int) -> Rejection | None:
    """Run the chain on agent ``pos``: class checks (cached), then agent checks."""
    agent = ctx.agents[pos]
    key = (demand.key, ctx.snapshot.class_of(pos))
    try:
        cached = ctx.class_cache[key]
    except KeyError:
        cached = None
        for chk in checks:
            if chk.per_class:
                cached = chk(ctx, demand, agent, agent.free)
                if cached is not None:
                    break
        ctx.class_cache[key] = cached
    if cached is not None:
        return cached
    free = ctx.free(pos)
    for chk in checks:
        if not chk.per_class:
            r = chk(ctx, demand, agent, free)
            if r is not None:
                return r
    return None
