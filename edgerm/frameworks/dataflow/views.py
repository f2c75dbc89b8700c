"""What the dataflow framework's core keeps and shows: live tasks, moves, and read-only views.

Rules: frozen values only; the core (:mod:`edgerm.frameworks.dataflow.core`)
replaces them, never mutates them. Pure.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from edgerm.frameworks.dataflow.holds import Hold
from edgerm.frameworks.dataflow.phases import Phase
from edgerm.ids import AgentId, TaskId
from edgerm.model import TaskState
from edgerm.scheduler import Dag, Instance, Placement, Unplaced


class MoveKind(enum.Enum):
    MOVED = "moved"  # same variant, another agent (or the same one again after a failure)
    SWITCHED = "switched"  # another variant: to a fallback, or back to main


@dataclass(frozen=True, slots=True)
class Move:
    """One re-placement of an instance, from the agent and variant it left to the new ones."""

    instance: Instance
    kind: MoveKind
    from_agent: AgentId
    from_variant: str
    to_agent: AgentId
    to_variant: str
    why: str
    at: float

    def __str__(self) -> str:
        return (
            f"{self.kind.value} {self.instance}: {self.from_agent[:8]}[{self.from_variant}] -> "
            f"{self.to_agent[:8]}[{self.to_variant}] ({self.why})"
        )


@dataclass(frozen=True, slots=True)
class LiveTask:
    """A launched instance: its task, where it runs, its last reported state.

    ``replaces`` is the task it takes over from when that one is stopped only
    once this one reports RUNNING (a switch back to main after a quality hold:
    the new instance must prove it starts before the fallback goes).
    """

    instance: Instance
    task_id: TaskId
    placement: Placement
    state: TaskState = TaskState.STAGING
    message: str = ""
    replaces: TaskId | None = None


@dataclass(frozen=True, slots=True)
class Gone:
    """An instance that went away; its next placement is recorded as a move from here."""

    placement: Placement
    why: str


@dataclass(frozen=True, slots=True)
class Switch:
    """A variant change caused by a quality condition (or its end), with the figure that caused it."""

    operator: str
    from_variant: str
    to_variant: str
    figure: str
    at: float

    def __str__(self) -> str:
        return f"{self.operator}: {self.from_variant} -> {self.to_variant} ({self.figure})"


@dataclass(frozen=True, slots=True)
class InstanceView:
    instance: Instance
    variant: str
    agent_id: AgentId
    hostname: str
    state: str
    task_id: TaskId


@dataclass(frozen=True, slots=True)
class FrameworkView:
    """A snapshot of the framework's state, for status displays."""

    dag: str
    phase: Phase
    instances: tuple[InstanceView, ...]
    pending: tuple[str, ...]
    unplaced: tuple[str, ...]
    moves: tuple[Move, ...]
    error: str
    holds: tuple[str, ...] = ()  # operators held off a variant after a quality breach
    switches_by_quality: tuple[Switch, ...] = ()

    @property
    def switches(self) -> int:
        return sum(1 for m in self.moves if m.kind is MoveKind.SWITCHED)

    def to_json(self) -> dict[str, object]:
        return {
            "dag": self.dag,
            "phase": self.phase.value,
            "instances": [
                {
                    "instance": str(i.instance),
                    "variant": i.variant,
                    "agent": i.agent_id,
                    "hostname": i.hostname,
                    "state": i.state,
                    "task": i.task_id,
                }
                for i in self.instances
            ],
            "pending": list(self.pending),
            "unplaced": list(self.unplaced),
            "moves": [str(m) for m in self.moves],
            "move_count": len(self.moves),
            "switch_count": self.switches,
            "holds": list(self.holds),
            "quality_switches": [
                {"operator": s.operator, "from": s.from_variant, "to": s.to_variant, "figure": s.figure, "at": s.at}
                for s in self.switches_by_quality
            ],
            "error": self.error,
        }


def framework_view(
    dag: Dag,
    phase: Phase,
    live: Mapping[Instance, LiveTask],
    retiring: Mapping[TaskId, LiveTask],
    unplaced: Sequence[Unplaced],
    moves: Sequence[Move],
    failure: str,
    holds: Mapping[str, Hold],
    switches: Sequence[Switch],
    now: float | None,
) -> FrameworkView:
    """The view of a core's state (``now``: to show how long holds last)."""
    order = dag.instances()
    instances = tuple(
        InstanceView(i, t.placement.variant, t.placement.agent_id, t.placement.hostname, t.state.value, t.task_id)
        for i in order
        if (t := live.get(i)) is not None
    )
    if phase is Phase.STOPPING:  # show what is being stopped
        instances += tuple(
            InstanceView(
                t.instance, t.placement.variant, t.placement.agent_id, t.placement.hostname, "KILLING", t.task_id
            )
            for t in retiring.values()
        )
    left = "" if now is None else " for {:.1f}s"
    held = tuple(
        f"{op} held off {dag.operator(op).variants[h.floor - 1].name}"
        + left.format(max(0.0, h.until - (now or 0.0)))
        + f" ({h.figure})"
        for op, h in sorted(holds.items())
        if h.active
    )
    return FrameworkView(
        dag.name,
        phase,
        instances,
        tuple(str(i) for i in order if i not in live) if phase.active else (),
        tuple(u.explain() for u in unplaced),
        tuple(moves),
        failure,
        held,
        tuple(switches),
    )


__all__ = ["FrameworkView", "Gone", "InstanceView", "LiveTask", "Move", "MoveKind", "Switch", "framework_view"]
