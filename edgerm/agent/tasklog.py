"""The agent's task log: one INFO line when a task starts and one when it ends, with its ids.

Role: :class:`TaskLog` looks at each ``(event, actions)`` pair the agent core returned, on the logger
``edgerm.agent.tasks``:

- ``task starting`` (a StartTask: the runtime gets it), ``task running`` (the runtime says so),
  ``task kill received``, ``task recovered`` (found again after an agent restart);
- ``task finished`` / ``task failed`` / ``task killed`` with reason, message and exit code; a failure
  of the runtime itself (a Docker or wasmtime error: reasons RUNTIME_ERROR, IMAGE_UNAVAILABLE,
  EXECUTOR_UNAVAILABLE, INVALID_TASK) is a WARNING with the runtime's message;
- ``task refused``: a launch the core answered at once with a terminal status (no such executor, ...).

Every line carries ``task_id``, ``task_name``, ``framework_id`` and ``agent_id`` as ``extra=`` fields
(:mod:`edgerm.logs`). It keeps the names of the tasks it saw start, until they end; it never raises.
"""

from __future__ import annotations

import logging

from edgerm.agent.runtime import TaskEnded, TaskStarted
from edgerm.agent.state import KillReceived, LaunchReceived, RuntimeReported, SendStatus, Started, StartTask
from edgerm.ids import AgentId, FrameworkId, TaskId
from edgerm.logs import ids
from edgerm.model import Reason, TaskInfo, TaskState

log = logging.getLogger("edgerm.agent.tasks")

RUNTIME_FAILURES = frozenset(
    {Reason.RUNTIME_ERROR, Reason.IMAGE_UNAVAILABLE, Reason.EXECUTOR_UNAVAILABLE, Reason.INVALID_TASK}
)
MAX_KNOWN = 100_000  # names remembered for tasks that have not ended (a bound, far above any real agent)


class TaskLog:
    def __init__(self, agent_id: AgentId, logger: logging.Logger = log) -> None:
        self._agent_id = agent_id
        self._log = logger
        self._tasks: dict[TaskId, tuple[str, FrameworkId, str]] = {}  # name, framework, executor

    def record(self, event: object, actions: list[object]) -> None:
        try:
            self._record(event, actions)
        except Exception:  # boundary: logging must never break the agent
            self._log.exception("task log failed on %s", type(event).__name__)

    def _record(self, event: object, actions: list[object]) -> None:
        for action in actions:
            if isinstance(action, StartTask):
                self._starting(action.task)
        if isinstance(event, RuntimeReported):
            report = event.report
            if isinstance(report, TaskStarted):
                self._line(logging.INFO, "task running", report.task_id)
            elif isinstance(report, TaskEnded):
                self._ended(report.task_id, report.state, report.reason, report.message, report.exit_code)
        elif isinstance(event, KillReceived):
            self._line(logging.INFO, "task kill received", event.task_id, f"grace={event.grace:g}s")
        elif isinstance(event, LaunchReceived):
            for action in actions:
                s = action.status if isinstance(action, SendStatus) else None
                if s is not None and s.task_id == event.task.task_id and s.state.terminal:
                    self._remember(event.task)
                    self._line(logging.WARNING, "task refused", s.task_id, *_detail(s.state, s.reason, s.message))
                    self._tasks.pop(s.task_id, None)
        elif isinstance(event, Started):
            for r in event.recovered:
                self._line(logging.INFO, "task recovered", r.task.task_id, f"state={r.task.state.value}")

    def _remember(self, task: TaskInfo) -> None:
        if len(self._tasks) < MAX_KNOWN:
            self._tasks[task.task_id] = (task.name, task.framework_id, task.executor)

    def _starting(self, task: TaskInfo) -> None:
        self._remember(task)
        if self._log.isEnabledFor(logging.INFO):  # the line is not even formatted when it would not be shown
            self._line(logging.INFO, "task starting", task.task_id, f"resources={task.resources}")

    def _ended(self, task_id: TaskId, state: TaskState, reason: Reason, message: str, exit_code: int) -> None:
        level = logging.WARNING if reason in RUNTIME_FAILURES else logging.INFO
        if self._log.isEnabledFor(level):
            detail = _detail(state, reason, message) + ([f"exit_code={exit_code}"] if exit_code else [])
            self._line(level, f"task {state.value.lower()}", task_id, *detail, state=state, reason=reason)
        self._tasks.pop(task_id, None)

    def _line(
        self,
        level: int,
        what: str,
        task_id: TaskId,
        *detail: str,
        state: TaskState | None = None,
        reason: Reason | None = None,
    ) -> None:
        if not self._log.isEnabledFor(level):
            return
        name, framework_id, executor = self._tasks.get(task_id, ("", FrameworkId(""), ""))
        self._log.log(
            level,
            "%s: task_id=%s name=%s framework_id=%s agent_id=%s executor=%s%s",
            what,
            task_id,
            name,
            framework_id,
            self._agent_id,
            executor,
            "".join(f" {d}" for d in detail),
            extra=ids(
                event=what.replace(" ", "_"),
                task_id=task_id,
                task_name=name,
                framework_id=framework_id,
                agent_id=self._agent_id,
                executor=executor,
                state=state.value if state else None,
                reason=reason.value if reason else None,
            ),
        )


def _detail(state: TaskState, reason: Reason, message: str) -> list[str]:
    return [f"state={state.value}", f"reason={reason.value}", f"message={message!r}"]
