"""Quality holds: an operator kept off its better variants for a while after it broke a quality condition.

- A :class:`Hold` keeps an operator off every variant of rank < ``floor``
  until ``until``; then ``floor`` drops to 0 and main may be placed (and
  probed) again. The hold lasts ``base`` seconds the first time and doubles
  with each breach (or failed probe) of the same operator, up to
  :data:`MAX_HOLD_FACTOR` times ``base``.
- :func:`planning_dag` is the DAG as the scheduler may place it while holds
  last: a held variant gets a constraint no agent meets (:data:`HELD`), so
  the scheduler neither keeps it nor chooses it, and explains why.

Rules: pure; frozen values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from edgerm.scheduler.constraints import Constraint
from edgerm.scheduler.dag import Dag

MAX_HOLD_FACTOR = 8.0
#: A constraint no agent satisfies: how a held variant is kept from being placed.
HELD = Constraint.parse("edgerm-quality-hold == held")


@dataclass(frozen=True, slots=True)
class Hold:
    """An operator kept off its variants of rank < ``floor`` until ``until`` (after a quality breach)."""

    floor: int
    until: float
    strikes: int
    figure: str

    @property
    def active(self) -> bool:
        return self.floor > 0


def hold_after(previous: Hold | None, floor: int, now: float, base: float, figure: str) -> Hold:
    """The hold that follows one more breach (or failed probe): twice as long as the last, capped."""
    strikes = (previous.strikes if previous is not None else 0) + 1
    seconds = min(base * 2 ** (strikes - 1), base * MAX_HOLD_FACTOR)
    return Hold(floor, now + seconds, strikes, figure)


def planning_dag(dag: Dag, holds: Mapping[str, Hold]) -> Dag:
    """``dag`` with every held variant constrained out (``dag`` itself when nothing is held)."""
    if not any(h.active for h in holds.values()):
        return dag
    ops = []
    for op in dag.operators:
        h = holds.get(op.name)
        if h is None or not h.active:
            ops.append(op)
            continue
        variants = tuple(
            replace(v, constraints=(*v.constraints, HELD)) if i < h.floor else v for i, v in enumerate(op.variants)
        )
        ops.append(replace(op, variants=variants))
    return replace(dag, operators=tuple(ops))


__all__ = ["HELD", "MAX_HOLD_FACTOR", "Hold", "hold_after", "planning_dag"]
