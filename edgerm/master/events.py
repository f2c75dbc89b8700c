"""Facts the master core is told about (its input).

The core's single entry point is ``MasterCore.handle(event, now)``. Events
are facts that already happened at the edge of the system (an agent
registered, a heartbeat arrived, a framework called ACCEPT). Scheduler calls
(``edgerm.messages.Accept``, ``Decline``, ``Kill``, ``Acknowledge``,
``Revive``, ``Suppress``, ``Reconcile``, ``Teardown``) are events as they are;
the classes below are the others.
"""

from __future__ import annotations

from dataclasses import dataclass

from edgerm import messages as m
from edgerm.ids import AgentId, FrameworkId, TaskId
from edgerm.model import AgentInfo, FrameworkInfo, TaskStatus


@dataclass(frozen=True, slots=True)
class AgentRegistered:
    """An agent (re-)registered with its total resources and current tasks."""

    agent: AgentInfo
    tasks: tuple[TaskStatus, ...] = ()
    instance_id: str = ""  # random per agent process start (two agents with one id differ)


@dataclass(frozen=True, slots=True)
class HeartbeatReceived:
    """A registered agent is alive and holds these tasks."""

    agent_id: AgentId
    task_ids: tuple[TaskId, ...] = ()


@dataclass(frozen=True, slots=True)
class StatusReceived:
    """An agent reported a task status (to be forwarded and acknowledged), and the statuses in ``more``
    (a batched UPDATE: taken in order, as single events would be, with one allocation at the end)."""

    agent_id: AgentId
    status: TaskStatus
    more: tuple[TaskStatus, ...] = ()

    @property
    def statuses(self) -> tuple[TaskStatus, ...]:
        return (self.status, *self.more)


@dataclass(frozen=True, slots=True)
class FrameworkSubscribed:
    """A framework opened its event stream. ``framework.id`` is already set
    (the service assigns a fresh one on a first subscription)."""

    framework: FrameworkInfo


@dataclass(frozen=True, slots=True)
class FrameworkDisconnected:
    """A framework's event stream closed. Its offers are rescinded; its tasks
    keep running until it re-subscribes or is torn down."""

    framework_id: FrameworkId


@dataclass(frozen=True, slots=True)
class Tick:
    """Time passed: expire offers, time out agents, retry unacknowledged
    updates, and run an allocation cycle."""


MasterEvent = (
    AgentRegistered
    | HeartbeatReceived
    | StatusReceived
    | FrameworkSubscribed
    | FrameworkDisconnected
    | Tick
    | m.Accept
    | m.Decline
    | m.Revive
    | m.Suppress
    | m.Kill
    | m.Acknowledge
    | m.Reconcile
    | m.Teardown
)
