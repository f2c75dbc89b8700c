"""Plans: where each operator instance goes, and why the rest could not go anywhere.

A :class:`Plan` holds :class:`Placement`s (instance -> agent, resources,
variant) and :class:`Unplaced` entries. An unplaced instance carries, for
every variant tried, the agents of the snapshot grouped by class with the
named reason each agent gave (:class:`ClassRejections`), so "why not" is
answered per candidate class (``domain=edge,os=linux (3 agents): missing
device temperature x3``).

:class:`Replan` is the result of incremental re-planning: the new plan and
the smallest list of :class:`Change`s that turns the running plan into it.

Rules: plans are values; a placement's resources include the devices it
claims (so ``Snapshot.after(plan)`` shows them taken); instances appear in
placement order.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from edgerm.ids import AgentId
from edgerm.model import Attributes
from edgerm.resources import EMPTY, Resources
from edgerm.scheduler.dag import Executor, Instance
from edgerm.scheduler.reasons import Rejection
from edgerm.scheduler.snapshot import AgentView, attribute_text


@dataclass(frozen=True, slots=True)
class Placement:
    """One instance on one agent, running one variant with these resources."""

    instance: Instance
    agent_id: AgentId
    hostname: str
    variant: str
    executor: Executor
    resources: Resources
    attributes: Attributes = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.instance} -> {self.agent_id} [{self.variant}] {self.resources}"


@dataclass(frozen=True, slots=True)
class ClassRejections:
    """Why the agents of one class refused: each reason and how many agents gave it."""

    agent_class: str
    agents: int
    reasons: tuple[tuple[Rejection, int], ...]

    def __str__(self) -> str:
        why = ", ".join(f"{r} x{n}" for r, n in self.reasons)
        return f"{self.agent_class} ({self.agents} agent{'s' if self.agents != 1 else ''}): {why}"


@dataclass(frozen=True, slots=True)
class VariantRejections:
    """Why one variant of an instance fitted nowhere."""

    variant: str
    classes: tuple[ClassRejections, ...]


@dataclass(frozen=True, slots=True)
class Unplaced:
    """An instance no agent could take, with the reasons per variant and class."""

    instance: Instance
    variants: tuple[VariantRejections, ...]

    def reasons(self) -> frozenset[str]:
        """Every reason text given, over all variants and classes."""
        return frozenset(str(r) for v in self.variants for c in v.classes for r, _ in c.reasons)

    def explain(self) -> str:
        lines = [f"{self.instance} could not be placed:"]
        for v in self.variants:
            if not v.classes:
                lines.append(f"  {v.variant}: no agents in the snapshot")
            for c in v.classes:
                lines.append(f"  {v.variant}: {c}")
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Plan:
    """The result of compiling a DAG against a snapshot."""

    dag: str
    policy: str
    placements: tuple[Placement, ...] = ()
    unplaced: tuple[Unplaced, ...] = ()
    _by_instance: dict[Instance, Placement] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        by = {p.instance: p for p in self.placements}
        if len(by) != len(self.placements):
            raise ValueError("an instance is placed twice")
        object.__setattr__(self, "_by_instance", by)

    @property
    def complete(self) -> bool:
        """True when every instance is placed."""
        return not self.unplaced

    def placement(self, instance: Instance) -> Placement | None:
        return self._by_instance.get(instance)

    def on_agent(self, agent_id: AgentId) -> tuple[Placement, ...]:
        return tuple(p for p in self.placements if p.agent_id == agent_id)

    def usage(self) -> dict[AgentId, Resources]:
        """What the plan takes from each agent it uses."""
        out: dict[AgentId, Resources] = {}
        for p in self.placements:
            out[p.agent_id] = out.get(p.agent_id, EMPTY) + p.resources
        return out

    def hosts(self) -> tuple[AgentView, ...]:
        """The agents the plan uses, with nothing free (for ``Snapshot.from_offers(hosts=...)``)."""
        seen: dict[AgentId, AgentView] = {}
        for p in self.placements:
            seen.setdefault(p.agent_id, AgentView(p.agent_id, p.hostname, p.attributes))
        return tuple(seen.values())

    def cross_domain_pairs(self, edges: Iterable[tuple[str, str]], attribute: str = "domain") -> int:
        """How many (upstream instance, downstream instance) pairs sit in different domains."""
        by_op: dict[str, list[Placement]] = {}
        for p in self.placements:
            by_op.setdefault(p.instance.operator, []).append(p)
        n = 0
        for a, b in edges:
            for pa in by_op.get(a, ()):
                da = attribute_text(pa.attributes.get(attribute))
                n += sum(1 for pb in by_op.get(b, ()) if attribute_text(pb.attributes.get(attribute)) != da)
        return n

    def explain(self) -> str:
        """A readable account: placements, then every unplaced instance with its reasons."""
        lines = [f"plan for {self.dag} ({self.policy}): {len(self.placements)} placed, {len(self.unplaced)} unplaced"]
        lines += [f"  {p}" for p in self.placements]
        for u in self.unplaced:
            lines += ["  " + line for line in u.explain().splitlines()]
        return "\n".join(lines)


class ChangeKind(enum.Enum):
    """How an instance differs between the running plan and the new one."""

    PLACED = "placed"  # was not running, now placed
    MOVED = "moved"  # same variant, re-placed: its agent was lost or no longer fits, or the operator changed
    SWITCHED = "switched"  # other variant (to a fallback, or back towards main); agent may change
    UNPLACED = "unplaced"  # was running, can no longer be placed anywhere
    REMOVED = "removed"  # no longer in the DAG


@dataclass(frozen=True, slots=True)
class Change:
    """One instance's change; ``before``/``after`` are ``None`` where it does not run."""

    kind: ChangeKind
    instance: Instance
    before: Placement | None
    after: Placement | None
    why: str = ""

    def __str__(self) -> str:
        a = f"{self.before.agent_id}[{self.before.variant}]" if self.before else "-"
        b = f"{self.after.agent_id}[{self.after.variant}]" if self.after else "-"
        return f"{self.kind.value} {self.instance}: {a} -> {b}" + (f" ({self.why})" if self.why else "")


@dataclass(frozen=True, slots=True)
class Replan:
    """A new plan and the changes from the running one (unchanged instances are not listed)."""

    plan: Plan
    changes: tuple[Change, ...] = ()

    def by_kind(self) -> Mapping[ChangeKind, tuple[Change, ...]]:
        out: dict[ChangeKind, list[Change]] = {}
        for c in self.changes:
            out.setdefault(c.kind, []).append(c)
        return {k: tuple(v) for k, v in out.items()}

    @property
    def moved_instances(self) -> frozenset[Instance]:
        """Instances that were running and now run elsewhere, differently, or not at all."""
        return frozenset(c.instance for c in self.changes if c.before is not None)
