"""The agent's pure core: events in, actions out.

``AgentCore.handle(event, now)`` is the only way the agent's task and
status-update state changes. It does no I/O and reads no clock: ``now`` is
a monotonic time (seconds) used for retry deadlines, and each event that
creates a status carries a :class:`Stamp` (a fresh uuid and the wall-clock
time) made by the service, so the core stays deterministic and tests compare
returned action lists.

What it owns:

- **Tasks** it holds and their latest status. A task is held from LAUNCH
  (or a KILL of an unknown id, or recovery) until its terminal status is
  acknowledged; then :class:`CleanupTask` is ordered and its id remembered
  for a while so a late duplicate LAUNCH is still ignored.
- **Reliable status updates**: per task a queue, sent in order, head first.
  The head is re-sent with backoff (1 s doubling to 10 s) until a
  :class:`StatusAcked` with its uuid arrives; then the next one goes out.
  Nothing is sent while the agent is not registered; every head goes out
  at once when it (re-)registers.
- **Registration**: :class:`Register` is ordered at start and whenever the
  master says it does not know this agent; the service retries it until
  :class:`Registered` comes back.

Task transitions (a stale or impossible runtime report is ignored)::

    STARTING ──TaskStarted──▶ RUNNING
     │  ▲ │                      │
     │  └─┘ TaskProgress         │
     └──────TaskEnded────────────┴──▶ FINISHED | FAILED | KILLED

``TaskProgress`` (e.g. an image pull's layers and bytes) becomes a STARTING
update with that message, reliable like every update; while one waits
behind an update in flight, a newer one replaces it, so a slow master never
gets a backlog of progress.

Rules of the conversation: LAUNCH of a held task is ignored (idempotent);
KILL of an unknown task answers KILLED so the master can settle a task that
never arrived; a launch needing an executor this agent lacks fails with
EXECUTOR_UNAVAILABLE.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field, replace

from edgerm.agent.runtime import RecoveredTask, RuntimeReport, TaskEnded, TaskProgress, TaskStarted
from edgerm.ids import AgentId, TaskId
from edgerm.model import Reason, Source, TaskInfo, TaskState, TaskStatus

RETRY_INITIAL = 1.0  # seconds before the first re-send of an unacknowledged update
RETRY_MAX = 10.0
REMEMBER_COMPLETED = 1024  # ended-and-acknowledged task ids kept to ignore late LAUNCHes

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
class Started:
    """The agent started; ``recovered`` is what its runtimes still hold."""

    recovered: tuple[Recovered, ...] = ()


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
    """The task's end is acknowledged: release what it left behind."""

    task_id: TaskId
    executor: str


AgentAction = Register | StartTask | StopTask | SendStatus | SendHeartbeat | CleanupTask

# -- state ---------------------------------------------------------------------------

_NEXT: dict[TaskState, frozenset[TaskState]] = {
    TaskState.STARTING: frozenset({TaskState.RUNNING, TaskState.FINISHED, TaskState.FAILED, TaskState.KILLED}),
    TaskState.RUNNING: frozenset({TaskState.FINISHED, TaskState.FAILED, TaskState.KILLED}),
}


@dataclass(slots=True)
class _Pending:
    status: TaskStatus
    next_send: float = 0.0
    backoff: float = RETRY_INITIAL


@dataclass(slots=True)
class _Held:
    task_id: TaskId
    executor: str
    latest: TaskStatus
    launched: bool  # handed to a runtime, so it needs a CleanupTask
    kill_requested: bool = False
    pending: deque[_Pending] = field(default_factory=deque)


class AgentCore:
    """The agent's task and status-update state. See the module docstring."""

    def __init__(self, agent_id: AgentId, executors: frozenset[str]) -> None:
        self.agent_id = agent_id
        self.executors = executors
        self._tasks: dict[TaskId, _Held] = {}
        self._completed: OrderedDict[TaskId, None] = OrderedDict()
        self._registered = False
        self._registering = False

    # -- queries ---------------------------------------------------------------------

    @property
    def registered(self) -> bool:
        return self._registered

    def task_ids(self) -> tuple[TaskId, ...]:
        """Every task held, including ended ones whose end is not yet acknowledged."""
        return tuple(sorted(self._tasks))

    def status_of(self, task_id: TaskId) -> TaskStatus | None:
        held = self._tasks.get(task_id)
        return held.latest if held else None

    def held_statuses(self) -> tuple[TaskStatus, ...]:
        """The latest status of every task held, as REGISTER carries them."""
        return tuple(self._tasks[t].latest for t in self.task_ids())

    def unacknowledged(self) -> int:
        return sum(len(h.pending) for h in self._tasks.values())

    def next_deadline(self) -> float | None:
        """When the next re-send is due (monotonic), or ``None`` if nothing waits."""
        if not self._registered:
            return None
        due = [h.pending[0].next_send for h in self._tasks.values() if h.pending]
        return min(due) if due else None

    # -- the entry point -------------------------------------------------------------

    def handle(self, event: AgentEvent, now: float) -> list[AgentAction]:
        """Apply one event; return what the service must do, in order."""
        match event:
            case Started():
                return self._started(event, now)
            case Registered():
                return self._on_registered(now)
            case RegistrationLost():
                return self._registration_lost()
            case LaunchReceived():
                return self._launch(event, now)
            case KillReceived():
                return self._kill(event, now)
            case RuntimeReported():
                return self._reported(event, now)
            case StatusAcked():
                return self._acked(event, now)
            case HeartbeatDue():
                return [SendHeartbeat(self.task_ids())] if self._registered else []
            case Tick():
                return self._retry_due(now)
        raise TypeError(f"not an agent event: {event!r}")

    # -- handlers --------------------------------------------------------------------

    def _started(self, event: Started, now: float) -> list[AgentAction]:
        for r in event.recovered:
            if r.task.task_id in self._tasks:
                continue
            t = r.task
            status = self._status(t.task_id, t.state, r.stamp, t.reason, t.message, t.exit_code)
            held = _Held(t.task_id, r.executor, status, launched=True)
            self._tasks[t.task_id] = held
            if t.state.terminal:
                held.pending.append(_Pending(status))
            else:
                # Already reported RUNNING before the restart; the REGISTER carries it again.
                held.latest = replace(status, uuid="")
        return self._registration_lost()

    def _on_registered(self, now: float) -> list[AgentAction]:
        self._registered = True
        self._registering = False
        out: list[AgentAction] = []
        for held in self._tasks.values():
            if held.pending:
                head = held.pending[0]
                head.backoff = RETRY_INITIAL
                out.append(self._send(head, now))
        return out

    def _registration_lost(self) -> list[AgentAction]:
        self._registered = False
        if self._registering:
            return []
        self._registering = True
        return [Register(self.held_statuses())]

    def _launch(self, event: LaunchReceived, now: float) -> list[AgentAction]:
        task = event.task
        if task.task_id in self._tasks or task.task_id in self._completed:
            return []
        if task.agent_id and task.agent_id != self.agent_id:
            status = self._status(
                task.task_id, TaskState.ERROR, event.stamp, Reason.INVALID_TASK, f"sent to agent {task.agent_id}"
            )
            return self._hold_ended(task.task_id, task.executor, status, now)
        if task.executor not in self.executors:
            have = ", ".join(sorted(self.executors)) or "none"
            status = self._status(
                task.task_id,
                TaskState.FAILED,
                event.stamp,
                Reason.EXECUTOR_UNAVAILABLE,
                f"executor {task.executor!r} is not available on this agent (it has: {have})",
            )
            return self._hold_ended(task.task_id, task.executor, status, now)
        starting = TaskStatus(task.task_id, self.agent_id, TaskState.STARTING, timestamp=event.stamp.time)
        self._tasks[task.task_id] = _Held(task.task_id, task.executor, starting, launched=True)
        return [StartTask(task)]

    def _kill(self, event: KillReceived, now: float) -> list[AgentAction]:
        held = self._tasks.get(event.task_id)
        if held is None:
            if event.task_id in self._completed:
                return []
            status = self._status(
                event.task_id,
                TaskState.KILLED,
                event.stamp,
                Reason.KILLED_BY_FRAMEWORK,
                "this agent does not hold the task",
            )
            return self._hold_ended(event.task_id, "", status, now)
        if held.latest.state.terminal:
            return []
        # A repeated KILL orders the stop again: the first one may have failed in the runtime.
        held.kill_requested = True
        return [StopTask(held.task_id, held.executor, max(0.0, event.grace))]

    def _reported(self, event: RuntimeReported, now: float) -> list[AgentAction]:
        report = event.report
        held = self._tasks.get(report.task_id)
        if held is None:
            return []
        if isinstance(report, TaskProgress):
            return self._progress(held, report, event.stamp, now)
        if isinstance(report, TaskStarted):
            new = self._status(report.task_id, TaskState.RUNNING, event.stamp)
        else:
            assert isinstance(report, TaskEnded)
            reason = report.reason
            if report.state is TaskState.KILLED and reason is Reason.UNSPECIFIED and held.kill_requested:
                reason = Reason.KILLED_BY_FRAMEWORK
            new = self._status(report.task_id, report.state, event.stamp, reason, report.message, report.exit_code)
        if new.state not in _NEXT.get(held.latest.state, frozenset()):
            return []  # a stale or duplicate report
        return self._enqueue(held, new, now)

    def _progress(self, held: _Held, report: TaskProgress, stamp: Stamp, now: float) -> list[AgentAction]:
        if held.latest.state is not TaskState.STARTING:
            return []  # running or ended already: a late report
        new = self._status(held.task_id, TaskState.STARTING, stamp, message=report.message)
        if len(held.pending) > 1 and held.pending[-1].status.state is TaskState.STARTING:
            held.pending[-1] = _Pending(new)  # not sent yet: the newer progress replaces it
            held.latest = new
            return []
        return self._enqueue(held, new, now)

    def _acked(self, event: StatusAcked, now: float) -> list[AgentAction]:
        held = self._tasks.get(event.task_id)
        if held is None or not held.pending or held.pending[0].status.uuid != event.uuid:
            return []  # a duplicate or stale acknowledgement
        held.pending.popleft()
        if held.pending:
            return [self._send(held.pending[0], now)] if self._registered else []
        if not held.latest.state.terminal:
            return []
        del self._tasks[held.task_id]
        self._completed[held.task_id] = None
        while len(self._completed) > REMEMBER_COMPLETED:
            self._completed.popitem(last=False)
        return [CleanupTask(held.task_id, held.executor)] if held.launched else []

    def _retry_due(self, now: float) -> list[AgentAction]:
        if not self._registered:
            return []
        return [
            self._send(h.pending[0], now) for h in self._tasks.values() if h.pending and h.pending[0].next_send <= now
        ]

    # -- helpers ---------------------------------------------------------------------

    def _status(
        self,
        task_id: TaskId,
        state: TaskState,
        stamp: Stamp,
        reason: Reason = Reason.UNSPECIFIED,
        message: str = "",
        exit_code: int = 0,
    ) -> TaskStatus:
        return TaskStatus(
            task_id=task_id,
            agent_id=self.agent_id,
            state=state,
            reason=reason,
            message=message,
            uuid=stamp.uuid,
            timestamp=stamp.time,
            source=Source.AGENT,
            exit_code=exit_code,
        )

    def _hold_ended(self, task_id: TaskId, executor: str, status: TaskStatus, now: float) -> list[AgentAction]:
        """Hold a task that ends before it runs, until its end is acknowledged."""
        held = _Held(task_id, executor, status, launched=False)
        self._tasks[task_id] = held
        return self._enqueue(held, status, now)

    def _enqueue(self, held: _Held, status: TaskStatus, now: float) -> list[AgentAction]:
        held.latest = status
        pending = _Pending(status)
        held.pending.append(pending)
        if len(held.pending) == 1 and self._registered:
            return [self._send(pending, now)]
        return []

    @staticmethod
    def _send(pending: _Pending, now: float) -> SendStatus:
        pending.next_send = now + pending.backoff
        pending.backoff = min(pending.backoff * 2, RETRY_MAX)
        return SendStatus(pending.status)
