"""The stack: pick an agent for one demand by running feasibility, then ranking, on a few candidates.

::

    preferred (caller, then each ranker)  ─┐
    pool, from where the last scan stopped ┴─> feasibility chain ─> rank ─> best of `limit`

Candidates come first from the caller's and the rankers' suggestions, then
from the pool: every agent, or — when the variant needs a device and the
policy checks devices — only the agents that own it (so a source lands on
the device that owns its sensor, without a scan of the cluster). The pool is
walked from where the previous scan stopped, as Nomad's static iterator
does, so full agents at the front are not re-examined for every instance.
Examination stops once ``limit`` feasible agents are found.

When nothing fits, :func:`explain` runs the full chain on every agent of the
snapshot and counts the reasons per agent class. The answer is remembered
per set of needs (:func:`~edgerm.scheduler.context.needs_key`) until
resources are given back, since free resources only shrink in between; the
counts are those of the moment the needs first fitted nowhere.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence

from edgerm.scheduler.context import Demand, PlanContext
from edgerm.scheduler.feasible import DeviceCheck, first_rejection
from edgerm.scheduler.plan import ClassRejections, VariantRejections
from edgerm.scheduler.policy import Policy
from edgerm.scheduler.reasons import Rejection


def _pool(ctx: PlanContext, policy: Policy, demand: Demand) -> tuple[object, Sequence[int]]:
    devices = demand.variant.devices
    if devices and any(isinstance(c, DeviceCheck) for c in policy.checks):
        owners = min((ctx.device_owners(d) for d in devices), key=len)
        return (("devices", devices), owners)
    return ("all", range(len(ctx.agents)))


def select(ctx: PlanContext, policy: Policy, demand: Demand, prefer: Iterable[int] = ()) -> int | None:
    """The position of the best agent for ``demand`` among the first ``limit`` feasible ones."""
    scorings = [(r.prepare(ctx, demand), w) for r, w in policy.rankers]
    scorers = [(s.score, w) for s, w in scorings if s.score is not None]
    checks = policy.checks
    limit = ctx.limit
    seen: set[int] = set()
    best, best_score, found = -1, -1.0, 0

    def consider(pos: int) -> None:
        nonlocal best, best_score, found
        seen.add(pos)
        if first_rejection(ctx, checks, demand, pos) is not None:
            return
        found += 1
        free = ctx.free(pos)
        score = sum(w * fn(pos, free) for fn, w in scorers)
        if score > best_score:
            best, best_score = pos, score

    for group in (prefer, *(s.preferred for s, _ in scorings)):
        for pos in group:
            if found >= limit:
                break
            if pos not in seen:
                consider(pos)
    if found < limit:
        key, pool = _pool(ctx, policy, demand)
        n = len(pool)
        start = ctx.cursors.get(key, 0) % n if n else 0
        i = 0
        while found < limit and i < n:
            pos = pool[(start + i) % n]
            i += 1
            if pos not in seen:
                consider(pos)
        if n:
            ctx.cursors[key] = (start + i) % n
    return best if found else None


def explain(ctx: PlanContext, policy: Policy, demand: Demand) -> VariantRejections:
    """Why no agent takes ``demand``: each agent's first rejection, counted per class."""
    cached = ctx.explanations.get(demand.key)
    if cached is not None and cached[0] == ctx.generation:
        return VariantRejections(demand.variant.name, cached[1])
    per_class: dict[int, Counter[Rejection]] = {}
    snapshot = ctx.snapshot
    for pos in range(len(ctx.agents)):
        r = first_rejection(ctx, policy.checks, demand, pos)
        if r is not None:
            per_class.setdefault(snapshot.class_of(pos), Counter())[r] += 1
    labels, sizes = snapshot.class_labels, snapshot.class_sizes
    classes = tuple(
        ClassRejections(labels[c], sizes[c], tuple(sorted(cnt.items(), key=lambda rc: (-rc[1], str(rc[0])))))
        for c, cnt in sorted(per_class.items())
    )
    ctx.explanations[demand.key] = (ctx.generation, classes)
    return VariantRejections(demand.variant.name, classes)


def fits_nowhere(ctx: PlanContext, demand: Demand) -> bool:
    """True when an explanation for this variant is known and still valid."""
    cached = ctx.explanations.get(demand.key)
    return cached is not None and cached[0] == ctx.generation
