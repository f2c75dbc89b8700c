"""Facts the dataflow framework's core is told (its input), and the orders it returns (its output).

``DataflowCore.handle(event, now)`` takes one of the events and returns a
list of actions; :class:`~edgerm.frameworks.dataflow.framework.DataflowFramework`
carries the actions out through its driver and reports what came of the
ones that can fail (:class:`AcceptDone`, :class:`AcceptFailed`,
:class:`KillFailed`) as further events.

Rules: plain frozen values; nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgerm.frameworks.dataflow.views import Move
from edgerm.ids import AgentId, OfferId, TaskId
from edgerm.model import Offer, TaskInfo, TaskStatus
from edgerm.scheduler import Instance

# -- events -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Registered:
    """The driver (re-)subscribed."""


@dataclass(frozen=True, slots=True)
class OffersReceived:
    offers: tuple[Offer, ...]


@dataclass(frozen=True, slots=True)
class OfferRescinded:
    offer_id: OfferId


@dataclass(frozen=True, slots=True)
class AgentLost:
    agent_id: AgentId


@dataclass(frozen=True, slots=True)
class StatusUpdated:
    status: TaskStatus


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed (the runner ticks about every 0.25 s): deadlines, revives, quality holds ending."""


@dataclass(frozen=True, slots=True)
class Shutdown:
    """Stop every task of the DAG."""


@dataclass(frozen=True, slots=True)
class AcceptDone:
    """The master took the ACCEPT of launch ``launch``."""

    launch: int


@dataclass(frozen=True, slots=True)
class AcceptFailed:
    """The master refused the ACCEPT of launch ``launch`` (its offers went away, ...)."""

    launch: int
    why: str


@dataclass(frozen=True, slots=True)
class KillFailed:
    """The master refused a KILL: the task is already gone there and will not report again."""

    task_id: TaskId
    why: str


@dataclass(frozen=True, slots=True)
class QualityBroken:
    """A quality condition of ``operator`` (``None``: the whole DAG) was broken for its period.

    ``figure`` names the measured figure and its value (``"sink rate 1.2 rec/s < 5"``).
    """

    operator: str | None
    figure: str


@dataclass(frozen=True, slots=True)
class InstanceReported:
    """A live task's instance published its stats: it is connected and working (main's probe)."""

    task_id: TaskId


Event = (
    Registered
    | OffersReceived
    | OfferRescinded
    | AgentLost
    | StatusUpdated
    | Tick
    | Shutdown
    | AcceptDone
    | AcceptFailed
    | KillFailed
    | QualityBroken
    | InstanceReported
)

# -- actions ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Accept:
    """Launch ``tasks`` on ``agent_id`` with all of ``offer_ids``; report AcceptDone or AcceptFailed."""

    launch: int
    agent_id: AgentId
    offer_ids: tuple[OfferId, ...]
    tasks: tuple[TaskInfo, ...]
    refuse_seconds: float


@dataclass(frozen=True, slots=True)
class Decline:
    offer_ids: tuple[OfferId, ...]
    refuse_seconds: float


@dataclass(frozen=True, slots=True)
class Kill:
    """Stop a task; report KillFailed if the master refuses."""

    task_id: TaskId
    agent_id: AgentId


@dataclass(frozen=True, slots=True)
class Revive:
    pass


@dataclass(frozen=True, slots=True)
class Reconcile:
    pass


@dataclass(frozen=True, slots=True)
class Teardown:
    """Remove the framework at the master (it kills whatever is left)."""


@dataclass(frozen=True, slots=True)
class InstanceGone:
    """Tell the move listener: the instance stopped or is being replaced."""

    instance: Instance


@dataclass(frozen=True, slots=True)
class InstanceResumed:
    """Tell the move listener: the instance's replacement reported RUNNING."""

    instance: Instance


@dataclass(frozen=True, slots=True)
class Moved:
    """An instance was placed again (log it at INFO)."""

    move: Move


@dataclass(frozen=True, slots=True)
class Note:
    """A lifecycle line to log (``warning`` for what went wrong, else INFO)."""

    text: str
    warning: bool = False


@dataclass(frozen=True, slots=True)
class Finished:
    """The framework reached STOPPED or FAILED (set ``done``)."""


Action = (
    Accept | Decline | Kill | Revive | Reconcile | Teardown | InstanceGone | InstanceResumed | Moved | Note | Finished
)

__all__ = [
    "Accept",
    "AcceptDone",
    "AcceptFailed",
    "Action",
    "AgentLost",
    "Decline",
    "Event",
    "Finished",
    "InstanceGone",
    "InstanceReported",
    "InstanceResumed",
    "Kill",
    "KillFailed",
    "Moved",
    "Note",
    "OfferRescinded",
    "OffersReceived",
    "QualityBroken",
    "Reconcile",
    "Registered",
    "Revive",
    "Shutdown",
    "StatusUpdated",
    "Teardown",
    "Tick",
]
