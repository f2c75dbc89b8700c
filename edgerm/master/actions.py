"""Orders the master core returns (its output); the service carries them out.

Nothing here does I/O. ``SendEvent`` goes on a framework's event stream;
``LaunchTask`` and ``KillTask`` go to an agent's command outbox (pushed at
once over its stream or CoAP observation).
"""

from __future__ import annotations

from dataclasses import dataclass

from edgerm import messages as m
from edgerm.ids import AgentId, FrameworkId, TaskId
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
    """Tell an agent to stop a task."""

    agent_id: AgentId
    task_id: TaskId
    grace: float


@dataclass(frozen=True, slots=True)
class DropAgent:
    """An agent was declared lost: close its command channel."""

    agent_id: AgentId


MasterAction = SendEvent | LaunchTask | KillTask | DropAgent
