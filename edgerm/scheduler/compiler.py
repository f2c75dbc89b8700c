"""Compile a DAG into a plan, and re-plan incrementally when the snapshot changes.

:func:`compile_dag` places every instance in DAG order (upstream first, so
locality can follow the data): for each instance it tries the main variant,
then each fallback, through the policy's stack; an instance no variant fits
becomes :class:`Unplaced` with the reasons per variant and agent class.

:func:`replan` starts from a running plan and makes the smallest change:

1. instances no longer in the DAG are removed (their resources come back);
2. instances whose agent is gone from the snapshot, whose operator changed,
   or whose agent no longer passes the attribute checks are displaced;
   everything else stays exactly where it is;
3. displaced and not-yet-placed instances are placed (main variant first,
   then fallbacks);
4. instances running a fallback try the better variants again — first on
   their own agent, then anywhere — and switch when one fits; if that freed
   room, instances still unplaced are tried once more.

Rules: both functions are pure (no I/O, no clock, no randomness; equal inputs
give equal plans). For :func:`replan` the snapshot lists each live agent with
what is free *while the running plan runs* (the offers a framework holds,
or ``Snapshot.after(plan)``); an agent absent from it is taken as lost.
"""

from __future__ import annotations

from collections.abc import Iterable

from edgerm.resources import Resources
from edgerm.scheduler.context import PlanContext
from edgerm.scheduler.dag import Dag, Instance, Variant
from edgerm.scheduler.feasible import IdentityCheck, first_rejection
from edgerm.scheduler.plan import Change, ChangeKind, Placement, Plan, Replan, Unplaced
from edgerm.scheduler.policy import LOCALITY, Policy
from edgerm.scheduler.reasons import Rejection
from edgerm.scheduler.snapshot import Snapshot
from edgerm.scheduler.stack import explain, fits_nowhere, select


def compile_dag(dag: Dag, snapshot: Snapshot, policy: Policy = LOCALITY) -> Plan:
    """Place every instance of ``dag`` on the agents of ``snapshot`` using ``policy``."""
    ctx = PlanContext(dag, snapshot, policy.limit.size(len(snapshot)))
    unplaced: list[Unplaced] = []
    for inst in dag.instances():
        got = _place(ctx, policy, inst, dag.operator(inst.operator).variants)
        if isinstance(got, Unplaced):
            unplaced.append(got)
    return _plan(ctx, policy, unplaced)


def replan(dag: Dag, running: Plan, snapshot: Snapshot, policy: Policy = LOCALITY) -> Replan:
    """The smallest change from ``running`` that places ``dag`` on ``snapshot``."""
    ctx = PlanContext(dag, snapshot, policy.limit.size(len(snapshot)))
    instances = dag.instances()
    wanted = set(instances)
    changes: list[Change] = []

    for p in running.placements:
        if p.instance not in wanted:
            _give_back(ctx, p)
            changes.append(Change(ChangeKind.REMOVED, p.instance, p, None, "no longer in the DAG"))

    displaced: dict[Instance, tuple[Placement, str]] = {}
    kept: list[Instance] = []
    for inst in instances:
        held = running.placement(inst)
        if held is None:
            continue
        why = _why_displaced(ctx, policy, held)
        pos = snapshot.position(held.agent_id)
        if why or pos is None:
            _give_back(ctx, held)
            displaced[inst] = (held, why)
        else:
            ctx.record(held, pos)
            kept.append(inst)

    kept_set = set(kept)
    results: dict[Instance, Placement | Unplaced] = {}
    for inst in instances:
        if inst not in kept_set:
            results[inst] = _place(ctx, policy, inst, dag.operator(inst.operator).variants)

    upgrades = [c for c in (_upgrade(ctx, policy, inst) for inst in kept) if c is not None]
    if upgrades:
        # An upgrade may have freed room (a fallback left a big agent): retry what did not fit.
        for inst, got in results.items():
            if isinstance(got, Unplaced):
                results[inst] = _place(ctx, policy, inst, dag.operator(inst.operator).variants)

    unplaced: list[Unplaced] = []
    for inst, got in results.items():
        before, why = displaced.get(inst, (None, ""))
        if isinstance(got, Unplaced):
            unplaced.append(got)
            if before is not None:
                changes.append(Change(ChangeKind.UNPLACED, inst, before, None, why))
        elif before is None:
            changes.append(Change(ChangeKind.PLACED, inst, None, got))
        else:
            kind = ChangeKind.MOVED if got.variant == before.variant else ChangeKind.SWITCHED
            changes.append(Change(kind, inst, before, got, why))
    changes.extend(upgrades)
    return Replan(_plan(ctx, policy, unplaced), tuple(changes))


# -- steps ------------------------------------------------------------------------------


def _place(
    ctx: PlanContext, policy: Policy, inst: Instance, variants: Iterable[Variant], prefer: Iterable[int] = ()
) -> Placement | Unplaced:
    op = ctx.dag.operator(inst.operator)
    tried = []
    for v in variants:
        demand = ctx.demand(inst, op, v)
        if not fits_nowhere(ctx, demand):
            pos = select(ctx, policy, demand, prefer)
            if pos is not None:
                return ctx.place(demand, pos)
        tried.append(explain(ctx, policy, demand))
    return Unplaced(inst, tuple(tried))


def _give_back(ctx: PlanContext, p: Placement) -> None:
    pos = ctx.snapshot.position(p.agent_id)
    if pos is not None:
        ctx.give(pos, p.resources)


def _matches(variant: Variant, p: Placement) -> bool:
    """The running placement still runs exactly this variant's executor and needs."""
    held = p.resources
    return (
        variant.executor == p.executor
        and set(variant.devices) == set(held.devices)
        and Resources(held.scalars, held.ranges, held.sets) == variant.resources
    )


def _why_displaced(ctx: PlanContext, policy: Policy, p: Placement) -> str:
    """Why a running placement must be re-placed; ``""`` if it may stay."""
    pos = ctx.snapshot.position(p.agent_id)
    if pos is None:
        return f"agent {p.agent_id} lost"
    op = ctx.dag.operator(p.instance.operator)
    variant = op.variant(p.variant)
    if variant is None or not _matches(variant, p):
        return f"operator {op.name} changed"
    demand = ctx.demand(p.instance, op, variant)
    agent = ctx.agents[pos]
    # Only checks that read attributes or identity: the placement's own devices
    # and resources are not in the snapshot's free resources while it runs.
    for chk in policy.checks:
        if chk.per_class or isinstance(chk, IdentityCheck):
            r: Rejection | None = chk(ctx, demand, agent, agent.free)
            if r is not None:
                return f"agent {p.agent_id} no longer fits: {r}"
    return ""


def _upgrade(ctx: PlanContext, policy: Policy, inst: Instance) -> Change | None:
    """Move a kept instance from a fallback to a better variant if one fits now."""
    p, pos = ctx.placed[inst]
    op = ctx.dag.operator(inst.operator)
    rank = op.rank_of(p.variant)
    if rank == 0 or rank >= len(op.variants):
        return None
    ctx.forget(inst)
    ctx.give(pos, p.resources)
    for v in op.variants[:rank]:
        demand = ctx.demand(inst, op, v)
        if fits_nowhere(ctx, demand):
            continue
        if first_rejection(ctx, policy.checks, demand, pos) is None:
            target: int | None = pos
        else:
            target = select(ctx, policy, demand)
        if target is not None:
            got = ctx.place(demand, target)
            why = "main fits again" if v.name == op.main.name else f"{v.name} fits again"
            return Change(ChangeKind.SWITCHED, inst, p, got, why)
        explain(ctx, policy, demand)  # remember "fits nowhere" for the other replicas
    ctx.take(pos, p.resources)
    ctx.record(p, pos)
    return None


def _plan(ctx: PlanContext, policy: Policy, unplaced: list[Unplaced]) -> Plan:
    order = {inst: i for i, inst in enumerate(ctx.dag.instances())}
    placements = sorted((p for p, _ in ctx.placed.values()), key=lambda p: order[p.instance])
    return Plan(
        ctx.dag.name,
        policy.name,
        tuple(placements),
        tuple(sorted(unplaced, key=lambda u: order[u.instance])),
    )
