"""Orders the master core returns (its output); the service carries them out.

Nothing here does I/O. ``SendEvent`` goes on a framework's event stream;
``LaunchTask`` and ``KillTask`` go to an agent's command outbox (pushed at
once over its stream or CoAP observation). ``Persist`` goes to the
registry writer, and the actions of the same event wait for it;
``Notice`` is a log line.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgerm import messages as m
from edgerm.ids import AgentId, FrameworkId, TaskId
from edgerm.master.registry import Changes
from edgerm.model import TaskInfo


@dataclass(frozen=True, slots=True)
class SendEvent:
    """Put ``event`` (OFFERS, RESCIND, UPDATE, FAILURE, ...) on a framework's stream."""

    framework_id: FrameworkId
    event: m.SchedulerEvent


@dataclass(frozen=True, slots=True)
class LaunchTask:
    """Tell an agent to run a task."""

    agent_id: AgentId
    task: TaskInfo


@dataclass(frozen=True, slots=True)
class KillTask:
    """Tell an agent to stop a task. ``reason`` is set when the master kills
    on its own account (a task it does not know, a task declared LOST)."""

    agent_id: AgentId
    task_id: TaskId
    grace: float
    reason: str = field(default="", compare=False)  # for the log only


@dataclass(frozen=True, slots=True)
class DropAgent:
    """An agent was declared lost: close its command channel."""

    agent_id: AgentId


@dataclass(frozen=True, slots=True)
class Persist:
    """Write these changes to the registry. Every action returned with it
    (and after it) takes effect only once the write is durable."""

    changes: Changes


@dataclass(frozen=True, slots=True)
class Notice:
    """Something an operator should read in the log (the core cannot log)."""

    message: str
    level: str = "INFO"  # INFO or WARNING
    event: str = ""  # the lifecycle event's name in structured logs (agent_unreachable, ...)
    agent_id: AgentId = AgentId("")
    framework_id: FrameworkId = FrameworkId("")
    task_id: TaskId = TaskId("")


MasterAction = SendEvent | LaunchTask | KillTask | DropAgent | Persist | Notice
