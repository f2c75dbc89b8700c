"""Policies: a policy is a stack (checks, weighted rankers, candidate limit), not a set of flags.

Three stacks ship; build others by composing the same parts::

    PACKED   = Policy("packed",   DEFAULT_CHECKS, ((BinPack(), 1.0), (Locality(), 0.5)))
    SPREAD   = Policy("spread",   DEFAULT_CHECKS, ((Spread("domain"), 1.0), (LeastLoaded(), 0.5)))
    LOCALITY = Policy("locality", DEFAULT_CHECKS, ((Locality("domain"), 1.0), (BinPack(), 0.25)))

The :class:`CandidateLimit` keeps cost near-linear: for each instance the
stack stops after that many *feasible* agents have been examined and picks
the best of them (Nomad's limit iterator); by default ``ceil(log2(agents))``
but at least ``minimum``. When no agent fits, every agent is examined, so
"unplaced" always means "fits nowhere".
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgerm.scheduler.feasible import DEFAULT_CHECKS, Check
from edgerm.scheduler.rank import BinPack, LeastLoaded, Locality, Ranker, Spread


@dataclass(frozen=True, slots=True)
class CandidateLimit:
    """How many feasible agents to compare per instance: ``count``, or log2 of the cluster."""

    count: int = 0  # 0: scale with log2(agents)
    minimum: int = 2

    def __post_init__(self) -> None:
        if self.count < 0 or self.minimum < 1:
            raise ValueError("a candidate limit is positive")

    def size(self, agents: int) -> int:
        if self.count:
            return self.count
        return max(self.minimum, math.ceil(math.log2(agents)) if agents > 1 else 1)


@dataclass(frozen=True, slots=True)
class Policy:
    """A placement stack: which checks, which rankers with which weights, how many candidates."""

    name: str
    checks: tuple[Check, ...] = DEFAULT_CHECKS
    rankers: tuple[tuple[Ranker, float], ...] = ()
    limit: CandidateLimit = CandidateLimit()

    def __post_init__(self) -> None:
        if any(w <= 0 for _, w in self.rankers):
            raise ValueError("ranker weights are positive")


PACKED = Policy("packed", DEFAULT_CHECKS, ((BinPack(), 1.0), (Locality(), 0.5)))
SPREAD = Policy("spread", DEFAULT_CHECKS, ((Spread("domain"), 1.0), (LeastLoaded(), 0.5)), CandidateLimit(minimum=4))
LOCALITY = Policy("locality", DEFAULT_CHECKS, ((Locality("domain"), 1.0), (BinPack(), 0.25)))

POLICIES: dict[str, Policy] = {p.name: p for p in (PACKED, SPREAD, LOCALITY)}
