"""What the agent core takes in and gives out: its events (facts) and actions (orders).

The service makes events from what happens (a command from the master, a
runtime report, a reply, a timer) and carries out the actions
:meth:`edgerm.agent.state.AgentCore.handle` returns. Plain frozen data, no
behaviour; the rules live in ``state.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgerm.agent.runtime import RecoveredTask, RuntimeReport
from edgerm.ids import TaskId
from edgerm.model import TaskInfo, TaskStatus

# -- events (facts the service tells the core) --------------------------------------


@dataclass(frozen=True, slots=True)
class Stamp:
    """Identity and time of a status the core is about to create."""

    uuid: str
    time: float  # wall clock, seconds since the epoch


@dataclass(frozen=True, slots=True)
class Recovered:
    """A task a runtime found after an agent restart."""

    executor: str
    task: RecoveredTask
    stamp: Stamp


@dataclass(frozen=True, slots=True)
class Restored:
    """A task the work dir's journal held from before a restart.

    ``info`` is its launch record (None for a task that ended before it was
    launched); ``pending`` its unacknowledged updates, oldest first. The
    stamp is for the status the core may have to create for it.
    """

    task_id: TaskId
    executor: str
    info: TaskInfo | None
    pending: tuple[TaskStatus, ...]
    stamp: Stamp


@dataclass(frozen=True, slots=True)
class Started:
    """The agent started; ``recovered`` is what its runtimes still hold,
    ``restored`` what its journal held."""

    recovered: tuple[Recovered, ...] = ()
    restored: tuple[Restored, ...] = ()


@dataclass(frozen=True, slots=True)
class Registered:
    """The master answered REGISTERED."""


@dataclass(frozen=True, slots=True)
class RegistrationLost:
    """A call was answered UNKNOWN_AGENT: the master does not know this agent."""


@dataclass(frozen=True, slots=True)
class LaunchReceived:
    task: TaskInfo
    stamp: Stamp


@dataclass(frozen=True, slots=True)
class KillReceived:
    task_id: TaskId
    grace: float
    stamp: Stamp


@dataclass(frozen=True, slots=True)
class RuntimeReported:
    report: RuntimeReport
    stamp: Stamp


@dataclass(frozen=True, slots=True)
class StatusAcked:
    """The master answered ACKNOWLEDGED for this update."""

    task_id: TaskId
    uuid: str


@dataclass(frozen=True, slots=True)
class HeartbeatDue:
    """A heartbeat interval has passed."""


@dataclass(frozen=True, slots=True)
class MasterAnswered:
    """The master answers again after calls to it failed: send what waits now, not at the next retry."""


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed: re-send updates whose retry time came."""


AgentEvent = (
    Started
    | Registered
    | RegistrationLost
    | LaunchReceived
    | KillReceived
    | RuntimeReported
    | StatusAcked
    | HeartbeatDue
    | MasterAnswered
    | Tick
)

# -- actions (orders the service carries out) ----------------------------------------


@dataclass(frozen=True, slots=True)
class Register:
    """Register with the master (retry until it answers), holding these tasks."""

    tasks: tuple[TaskStatus, ...]


@dataclass(frozen=True, slots=True)
class StartTask:
    task: TaskInfo


@dataclass(frozen=True, slots=True)
class StopTask:
    task_id: TaskId
    executor: str
    grace: float


@dataclass(frozen=True, slots=True)
class SendStatus:
    """Send one status update (answered by ACKNOWLEDGED, fed back as StatusAcked)."""

    status: TaskStatus


@dataclass(frozen=True, slots=True)
class SendHeartbeat:
    task_ids: tuple[TaskId, ...]


@dataclass(frozen=True, slots=True)
class CleanupTask:
    """The task's end is acknowledged: release what it left behind (and forget its launch record)."""

    task_id: TaskId
    executor: str


@dataclass(frozen=True, slots=True)
class KeepStatus:
    """Make this update durable before it is sent (it comes before its first SendStatus)."""

    status: TaskStatus
    executor: str


@dataclass(frozen=True, slots=True)
class ForgetStatus:
    """The master acknowledged this update: it need not survive a restart any more."""

    task_id: TaskId
    uuid: str


@dataclass(frozen=True, slots=True)
class LaunchRefused:
    """A LAUNCH (or KILL of an unknown task) was not taken: the agent holds its limit of tasks.

    ``first``: the first refusal since the agent was below its limit (worth a warning).
    """

    task_id: TaskId
    held: int
    first: bool


AgentAction = (
    Register
    | StartTask
    | StopTask
    | SendStatus
    | SendHeartbeat
    | CleanupTask
    | KeepStatus
    | ForgetStatus
    | LaunchRefused
)
