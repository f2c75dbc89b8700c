"""The master's lifecycle log: one INFO line per lifecycle event, with its ids.

Role: :class:`EventLog` looks at each ``(event, actions)`` pair the core
returned (after the service executed them) and at the core's read-only views,
and logs, on the logger ``edgerm.master.events``:

- agents: ``agent registered``, ``agent re-registered`` (``agent unreachable``, ``agent reachable
  again`` and ``agent lost`` are the core's own Notices, which the service logs with the figures that
  decided them);
- frameworks: ``framework subscribed`` (or re-subscribed), ``framework disconnected``, ``framework torn down``;
- tasks: ``task launched``; ``task kill requested``; each terminal state (``task finished``,
  ``task failed``, ``task killed``, ``task lost``, ``task error``, ...) with its reason and message;
  and the partition states, ``task unreachable`` and ``task reachable again``.

Every line names its ids in the text (``agent_id=... framework_id=... task_id=...``) and carries them
as ``extra=`` fields (``event``, ``agent_id``, ``framework_id``, ``task_id``, ``state``, ``reason``)
for ``--log-format json`` (:mod:`edgerm.logs`).

Rules:
- Once per event: a task's line is written when the state the core holds for it differs from the one
  this log last wrote, so retried and duplicated reports add nothing. What the log remembers is bounded
  by the live tasks and agents plus :data:`ENDED_MEMORY` recently ended task ids.
- It only reads the core; it never changes state and never raises into the service (a bug here is
  logged and swallowed at :meth:`EventLog.record`).
- States are compared by name (``UNREACHABLE`` may or may not exist in :class:`~edgerm.model.TaskState`),
  so the log works with every version of the core that keeps ``task()``, ``agent_info()``,
  ``agent_known()`` and ``framework_known()``/``framework_active()``.
- Heartbeats are the hot path: a ``HeartbeatReceived`` costs one ``isinstance`` check and a loop over
  its (usually empty) actions.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from edgerm import messages as m
from edgerm.ids import AgentId, FrameworkId, TaskId
from edgerm.logs import ids
from edgerm.master import events as ev
from edgerm.master.actions import DropAgent, KillTask, LaunchTask, MasterAction, Notice, SendEvent

log = logging.getLogger("edgerm.master.events")

ENDED_MEMORY = 4096  # ended task ids remembered, so a late duplicate report is not logged again
PARTITION_STATES = frozenset({"UNREACHABLE"})  # non-terminal states worth a line of their own


@dataclass(slots=True)
class _Task:
    framework_id: FrameworkId
    agent_id: AgentId
    name: str
    state: str


@dataclass(slots=True)
class _Framework:
    name: str
    active: bool


class EventLog:
    """Writes the lifecycle lines for one master core (see the module docstring)."""

    def __init__(self, core: Any, logger: logging.Logger = log) -> None:
        self._core = core
        self._log = logger
        self._tasks: dict[TaskId, _Task] = {}
        self._ended: OrderedDict[TaskId, None] = OrderedDict()
        self._agents: dict[AgentId, str] = {}  # known agent -> hostname
        self._unreachable: set[AgentId] = set()
        self._lost: OrderedDict[AgentId, None] = OrderedDict()  # recently lost agents: a return is a re-registration
        self._frameworks: dict[FrameworkId, _Framework] = {}

    def record(self, event: object, actions: list[MasterAction]) -> None:
        """Log what ``event`` and its ``actions`` did. Never raises."""
        if isinstance(event, ev.HeartbeatReceived):
            if event.agent_id in self._unreachable:
                self._reachable_again(event.agent_id)
            if not actions:
                return
        try:
            self._record(event, actions)
        except Exception:  # boundary: logging must never break the master
            self._log.exception("event log failed on %s", type(event).__name__)

    # -- dispatch ----------------------------------------------------------------

    def _record(self, event: object, actions: list[MasterAction]) -> None:
        check: dict[TaskId, None] = {}  # tasks whose state may have changed, in order
        agents: dict[AgentId, None] = {}  # agents whose reachability may have changed
        if isinstance(event, ev.AgentRegistered):
            self._agent_registered(event)
            check.update(dict.fromkeys(s.task_id for s in event.tasks))
            check.update(dict.fromkeys(self._tasks_on(event.agent.id)))
        elif isinstance(event, ev.StatusReceived):
            check.update(dict.fromkeys(s.task_id for s in event.statuses))
        elif isinstance(event, ev.FrameworkSubscribed):
            self._framework_subscribed(event)
        elif isinstance(event, ev.FrameworkDisconnected):
            self._framework_disconnected(event.framework_id)
        elif isinstance(event, m.Teardown):
            check.update(dict.fromkeys(t for t, r in self._tasks.items() if r.framework_id == event.framework_id))
        elif isinstance(event, m.Kill):
            check[event.task_id] = None
        for action in actions:
            if isinstance(action, Notice):
                self._notice(action)
            elif isinstance(action, LaunchTask):
                self._launched(action)
            elif isinstance(action, KillTask):
                check[action.task_id] = None
            elif isinstance(action, DropAgent):
                agents[action.agent_id] = None
                check.update(dict.fromkeys(self._tasks_on(action.agent_id)))
            elif isinstance(action, SendEvent):
                e = action.event
                if isinstance(e, m.Update) and e.status.reason.name != "RECONCILIATION":
                    check[e.status.task_id] = None
                    if e.status.state.name in PARTITION_STATES or e.status.reason.name == "AGENT_UNREACHABLE":
                        agents[e.status.agent_id] = None
                elif isinstance(e, m.Failure):
                    agents[e.agent_id] = None
        for agent_id in agents:
            self._agent_changed(agent_id)
        for task_id in check:
            self._task_changed(task_id)
        if isinstance(event, m.Teardown):
            self._torn_down(event.framework_id)

    def _notice(self, notice: Notice) -> None:
        """What the core decided on its own (an agent unreachable, back or lost; a stall; a restore)."""
        level = logging.WARNING if notice.level == "WARNING" else logging.INFO
        extra = ids(
            event=notice.event or "notice",
            agent_id=notice.agent_id,
            framework_id=notice.framework_id,
            task_id=notice.task_id,
        )
        self._log.log(level, "%s", notice.message, extra=extra)

    # -- agents ------------------------------------------------------------------------

    def _agent_registered(self, event: ev.AgentRegistered) -> None:
        info = event.agent
        returned = info.id in self._lost
        self._lost.pop(info.id, None)
        again = info.id in self._agents or returned
        self._agents[info.id] = info.hostname
        self._unreachable.discard(info.id)
        what = "agent re-registered" if again else "agent registered"
        executors = info.attributes.get("executors", ())
        self._log.info(
            "%s: agent_id=%s hostname=%s resources=%s executors=%s tasks=%d%s",
            what,
            info.id,
            info.hostname,
            info.resources,
            ",".join(sorted(executors)) if not isinstance(executors, str) else executors,
            len(event.tasks),
            " (it had been lost)" if returned else "",
            extra=ids(
                event=what.replace(" ", "_").replace("-", "_"),
                agent_id=info.id,
                hostname=info.hostname,
                resources=str(info.resources),
            ),
        )

    def _agent_changed(self, agent_id: AgentId) -> None:
        """Bookkeeping only: the core's own Notices (logged by the service) say when an agent
        became unreachable, came back or was lost, with the figures that decided it."""
        if agent_id not in self._agents:
            return
        if not self._core.agent_known(agent_id):
            del self._agents[agent_id]
            self._unreachable.discard(agent_id)
            self._lost[agent_id] = None
            while len(self._lost) > ENDED_MEMORY:
                self._lost.popitem(last=False)
        else:
            self._unreachable.add(agent_id)

    def _reachable_again(self, agent_id: AgentId) -> None:
        self._unreachable.discard(agent_id)

    def _tasks_on(self, agent_id: AgentId) -> list[TaskId]:
        return [t for t, r in self._tasks.items() if r.agent_id == agent_id]

    # -- frameworks ----------------------------------------------------------------------

    def _framework_subscribed(self, event: ev.FrameworkSubscribed) -> None:
        info = event.framework
        again = info.id in self._frameworks
        self._frameworks[info.id] = _Framework(info.name, active=True)
        what = "framework re-subscribed" if again else "framework subscribed"
        self._log.info(
            "%s: framework_id=%s name=%s",
            what,
            info.id,
            info.name,
            extra=ids(event=what.replace(" ", "_").replace("-", "_"), framework_id=info.id, framework_name=info.name),
        )

    def _framework_disconnected(self, framework_id: FrameworkId) -> None:
        framework = self._frameworks.get(framework_id)
        if framework is None or not framework.active or self._core.framework_active(framework_id):
            return
        framework.active = False
        self._log.info(
            "framework disconnected: framework_id=%s name=%s (its tasks keep running)",
            framework_id,
            framework.name,
            extra=ids(event="framework_disconnected", framework_id=framework_id, framework_name=framework.name),
        )

    def _torn_down(self, framework_id: FrameworkId) -> None:
        if self._core.framework_known(framework_id):
            return
        framework = self._frameworks.pop(framework_id, None)
        name = framework.name if framework is not None else ""
        killing = sum(1 for r in self._tasks.values() if r.framework_id == framework_id)
        self._log.info(
            "framework torn down: framework_id=%s name=%s tasks_killed=%d",
            framework_id,
            name,
            killing,
            extra=ids(event="framework_torn_down", framework_id=framework_id, framework_name=name),
        )

    # -- tasks -------------------------------------------------------------------------------

    def _launched(self, action: LaunchTask) -> None:
        task = action.task
        if task.task_id in self._tasks:
            return  # a re-sent launch of a task still STAGING
        record = self._core.task(task.task_id)
        framework_id = record.framework_id if record is not None else task.framework_id
        self._tasks[task.task_id] = _Task(framework_id, action.agent_id, task.name, "STAGING")
        self._log.info(
            "task launched: task_id=%s name=%s framework_id=%s agent_id=%s executor=%s resources=%s",
            task.task_id,
            task.name,
            framework_id,
            action.agent_id,
            task.executor,
            task.resources,
            extra=ids(
                event="task_launched",
                task_id=task.task_id,
                task_name=task.name,
                framework_id=framework_id,
                agent_id=action.agent_id,
                executor=task.executor,
                resources=str(task.resources),
            ),
        )

    def _task_changed(self, task_id: TaskId) -> None:
        record = self._core.task(task_id)
        if record is None:
            return
        status = record.status
        state = status.state.name
        seen = self._tasks.get(task_id)
        if seen is None:
            if task_id in self._ended or (not record.live and not status.state.terminal):
                return
            # A task this log did not see launched (e.g. reported after a master restart).
            seen = self._tasks[task_id] = _Task(record.framework_id, record.agent_id, record.info.name, "")
        if seen.state == state:
            return
        before, seen.state = seen.state, state
        if status.state.terminal:
            del self._tasks[task_id]
            self._ended[task_id] = None
            while len(self._ended) > ENDED_MEMORY:
                self._ended.popitem(last=False)
            what = f"task {state.lower()}"
        elif state == "KILLING":
            what = "task kill requested"
        elif state in PARTITION_STATES:
            what = f"task {state.lower()}"
        elif before in PARTITION_STATES:
            what = "task reachable again"
        else:
            self._log.debug("task %s: task_id=%s", state.lower(), task_id)
            return
        level = logging.WARNING if state in ("FAILED", "ERROR", "LOST") else logging.INFO
        self._log.log(
            level,
            "%s: task_id=%s name=%s framework_id=%s agent_id=%s state=%s reason=%s message=%r%s",
            what,
            task_id,
            seen.name,
            seen.framework_id,
            seen.agent_id,
            state,
            status.reason.name,
            status.message,
            f" exit_code={status.exit_code}" if status.exit_code else "",
            extra=ids(
                event=what.replace(" ", "_"),
                task_id=task_id,
                task_name=seen.name,
                framework_id=seen.framework_id,
                agent_id=seen.agent_id,
                state=state,
                reason=status.reason.name,
                message_detail=status.message,
                exit_code=status.exit_code or None,
            ),
        )
