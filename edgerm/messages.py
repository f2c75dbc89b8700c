"""Internal forms of the wire Calls and Events (agent and scheduler APIs).

Each class mirrors one arm of a ``Call``/``Event``/``AgentCall``/``AgentEvent``
union in ``proto/edgerm/v1``; :mod:`edgerm.wire` converts both ways. The
transport adapters decode into these, hand them to the master's handler
table, and encode what comes back.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgerm.ids import AgentId, FrameworkId, OfferId, TaskId
from edgerm.model import AgentInfo, Filters, FrameworkInfo, Offer, TaskInfo, TaskStatus

# --------------------------------------------------------------------------
# Framework -> master (scheduler Calls)


@dataclass(frozen=True, slots=True)
class Subscribe:
    framework: FrameworkInfo  # id empty on first subscription


@dataclass(frozen=True, slots=True)
class Teardown:
    framework_id: FrameworkId


@dataclass(frozen=True, slots=True)
class Accept:
    framework_id: FrameworkId
    offer_ids: tuple[OfferId, ...]
    tasks: tuple[TaskInfo, ...]
    filters: Filters = Filters()


@dataclass(frozen=True, slots=True)
class Decline:
    framework_id: FrameworkId
    offer_ids: tuple[OfferId, ...]
    filters: Filters = Filters()


@dataclass(frozen=True, slots=True)
class Revive:
    framework_id: FrameworkId


@dataclass(frozen=True, slots=True)
class Suppress:
    framework_id: FrameworkId


@dataclass(frozen=True, slots=True)
class Kill:
    framework_id: FrameworkId
    task_id: TaskId
    agent_id: AgentId = AgentId("")


@dataclass(frozen=True, slots=True)
class Acknowledge:
    """Acknowledges one update, and the updates in ``more`` (a batch: ``(agent_id, task_id, uuid)`` each)."""

    framework_id: FrameworkId
    agent_id: AgentId
    task_id: TaskId
    uuid: str
    more: tuple[tuple[AgentId, TaskId, str], ...] = ()

    def each(self) -> tuple[Acknowledge, ...]:
        """The batch as single acknowledgements, in order."""
        if not self.more:
            return (self,)
        fid = self.framework_id
        rest = (Acknowledge(fid, a, t, u) for a, t, u in self.more)
        return (Acknowledge(fid, self.agent_id, self.task_id, self.uuid), *rest)


@dataclass(frozen=True, slots=True)
class Reconcile:
    framework_id: FrameworkId
    tasks: tuple[tuple[TaskId, AgentId], ...] = ()  # empty: all of mine


SchedulerCall = Subscribe | Teardown | Accept | Decline | Revive | Suppress | Kill | Acknowledge | Reconcile

# --------------------------------------------------------------------------
# Master -> framework (scheduler Events)


@dataclass(frozen=True, slots=True)
class Subscribed:
    framework_id: FrameworkId
    heartbeat_interval: float
    master_id: str = ""


@dataclass(frozen=True, slots=True)
class Offers:
    offers: tuple[Offer, ...]


@dataclass(frozen=True, slots=True)
class Rescind:
    offer_id: OfferId


@dataclass(frozen=True, slots=True)
class Update:
    status: TaskStatus


@dataclass(frozen=True, slots=True)
class Failure:
    agent_id: AgentId


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    """A typed error; ``code`` is an ``edgerm.v1.Error.Code`` name."""

    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Heartbeat:
    pass


SchedulerEvent = Subscribed | Offers | Rescind | Update | Failure | ErrorEvent | Heartbeat

# --------------------------------------------------------------------------
# Agent -> master (AgentCalls)


@dataclass(frozen=True, slots=True)
class RegisterAgent:
    agent: AgentInfo
    tasks: tuple[TaskStatus, ...] = ()
    instance_id: str = ""  # random per agent process start


@dataclass(frozen=True, slots=True)
class AgentHeartbeat:
    agent_id: AgentId
    task_ids: tuple[TaskId, ...] = ()


@dataclass(frozen=True, slots=True)
class StatusUpdate:
    """One status, and the statuses in ``more`` (a batch, handled in order)."""

    agent_id: AgentId
    status: TaskStatus
    more: tuple[TaskStatus, ...] = ()

    @property
    def statuses(self) -> tuple[TaskStatus, ...]:
        return (self.status, *self.more)


@dataclass(frozen=True, slots=True)
class SubscribeAgent:
    agent_id: AgentId


@dataclass(frozen=True, slots=True)
class TaskLogs:
    """A piece of a task's stdout or stderr, answering :class:`SendLogsCommand` ``request_id``."""

    agent_id: AgentId
    request_id: str
    task_id: TaskId
    stream: str
    offset: int  # where ``data`` starts in the stream
    data: bytes = b""
    size: int = 0  # the stream's size when read
    error: str = ""  # why there is no data


AgentCall = RegisterAgent | AgentHeartbeat | StatusUpdate | SubscribeAgent | TaskLogs

# --------------------------------------------------------------------------
# Master -> agent (AgentEvents)


@dataclass(frozen=True, slots=True)
class AgentRegistered:
    agent_id: AgentId
    master_id: str = ""
    broker_url: str = ""


@dataclass(frozen=True, slots=True)
class HeartbeatAck:
    commands_pending: bool = False


@dataclass(frozen=True, slots=True)
class StatusAcknowledged:
    """The answer to an UPDATE: its status's ids, and those of its ``more`` (``(task_id, uuid)`` each)."""

    task_id: TaskId
    uuid: str
    more: tuple[tuple[TaskId, str], ...] = ()

    @property
    def acked(self) -> tuple[tuple[TaskId, str], ...]:
        return ((self.task_id, self.uuid), *self.more)


@dataclass(frozen=True, slots=True)
class LaunchCommand:
    task: TaskInfo


@dataclass(frozen=True, slots=True)
class KillCommand:
    task_id: TaskId
    grace: float = 3.0


#: The task output streams an agent serves, and the most bytes one piece carries.
LOG_STREAMS = ("stdout", "stderr")
MAX_LOG_CHUNK = 256 * 1024


@dataclass(frozen=True, slots=True)
class SendLogsCommand:
    """Send up to ``limit`` bytes of a task's ``stream`` from ``offset`` (negative: before its end)."""

    request_id: str
    task_id: TaskId
    stream: str = "stdout"
    offset: int = 0
    limit: int = 64 * 1024


@dataclass(frozen=True, slots=True)
class LogsReceived:
    pass


AgentEvent = (
    AgentRegistered
    | HeartbeatAck
    | StatusAcknowledged
    | LaunchCommand
    | KillCommand
    | SendLogsCommand
    | LogsReceived
    | ErrorEvent
)
