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
  :class:`Registered` comes back. It carries, per held task, the oldest
  unacknowledged update (else the latest status), so the master takes the
  task's updates in order: the ones behind it follow as ``SendStatus``.
- **Durability**: every update is ordered kept (:class:`KeepStatus`) before
  it is first sent and forgotten (:class:`ForgetStatus`) once acknowledged;
  the service writes both to the work dir's journal (journal.py), so a
  restarted agent still delivers what the master never acknowledged.
- **Restart** (:class:`Started`): the journal's tasks come back
  (:class:`Restored`) with their unacknowledged updates. A live one the
  runtime found again (:class:`Recovered`, a container) goes on; one that
  died with the agent process (a WebAssembly task) is relaunched when its
  ``restart_policy`` is ON_AGENT_RESTART, else it ends FAILED with reason
  AGENT_RESTARTED.
- **Bound**: each held task has at most two updates waiting (RUNNING, then
  its end), so holding at most ``max_pending // 2`` tasks bounds the
  updates kept to ``max_pending``. A LAUNCH (or a KILL of an unknown task)
  beyond that is not taken (:class:`LaunchRefused`); the master re-sends it.

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

from edgerm.agent.core_io import (
    AgentAction,
    AgentEvent,
    CleanupTask,
    ForgetStatus,
    HeartbeatDue,
    KeepStatus,
    KillReceived,
    LaunchReceived,
    LaunchRefused,
    MasterAnswered,
    Recovered,
    Register,
    Registered,
    RegistrationLost,
    Restored,
    RuntimeReported,
    SendHeartbeat,
    SendStatus,
    Stamp,
    Started,
    StartTask,
    StatusAcked,
    StopTask,
    Tick,
)
from edgerm.agent.runtime import TaskEnded, TaskProgress, TaskStarted
from edgerm.ids import AgentId, TaskId
from edgerm.model import Reason, RestartPolicy, Source, TaskState, TaskStatus

RETRY_INITIAL = 1.0  # seconds before the first re-send of an unacknowledged update
RETRY_MAX = 10.0
REMEMBER_COMPLETED = 1024  # ended-and-acknowledged task ids kept to ignore late LAUNCHes

__all__ = [
    "DIED_WITH_AGENT",
    "MAX_PENDING",
    "RELAUNCHED",
    "REMEMBER_COMPLETED",
    "RETRY_INITIAL",
    "RETRY_MAX",
    "AgentAction",
    "AgentCore",
    "AgentEvent",
    "CleanupTask",
    "ForgetStatus",
    "HeartbeatDue",
    "KeepStatus",
    "KillReceived",
    "LaunchReceived",
    "LaunchRefused",
    "MasterAnswered",
    "Recovered",
    "Register",
    "Registered",
    "RegistrationLost",
    "Restored",
    "RuntimeReported",
    "SendHeartbeat",
    "SendStatus",
    "Stamp",
    "StartTask",
    "Started",
    "StatusAcked",
    "StopTask",
    "Tick",
]

RELAUNCHED = "relaunched after the agent restarted"
DIED_WITH_AGENT = "the agent restarted and the task did not survive it"
MAX_PENDING = 8192  # default bound on kept status updates (so at most MAX_PENDING // 2 held tasks)

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
    relaunched: bool = False  # started again from its launch record after an agent restart
    pending: deque[_Pending] = field(default_factory=deque)


class AgentCore:
    """The agent's task and status-update state. See the module docstring."""

    def __init__(self, agent_id: AgentId, executors: frozenset[str], max_pending: int = MAX_PENDING) -> None:
        if max_pending < 2:
            raise ValueError(f"max_pending must be at least 2, got {max_pending}")
        self.agent_id = agent_id
        self.executors = executors
        self.max_pending = max_pending
        self._full = False
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
        """What REGISTER carries: per held task its oldest unacknowledged update, else its latest status."""
        out = []
        for task_id in self.task_ids():
            held = self._tasks[task_id]
            out.append(held.pending[0].status if held.pending else held.latest)
        return tuple(out)

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
            case MasterAnswered():
                return self._send_heads(now) if self._registered else []
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
        out: list[AgentAction] = []
        found = {r.task.task_id: r for r in event.recovered}
        for restored in event.restored:
            if restored.task_id not in self._tasks:
                out += self._restore(restored, found.pop(restored.task_id, None), now)
        for r in event.recovered:
            if r.task.task_id in self._tasks or r.task.task_id not in found:
                continue
            held = _Held(r.task.task_id, r.executor, self._starting(r.task.task_id, r.stamp.time), launched=True)
            self._tasks[r.task.task_id] = held
            out += self._resume(held, r, now)
        return out + self._registration_lost()

    def _restore(self, r: Restored, found: Recovered | None, now: float) -> list[AgentAction]:
        """Take back a task of the journal; decide what became of it while the agent was down."""
        held = _Held(r.task_id, r.executor, self._starting(r.task_id, r.stamp.time), launched=r.info is not None)
        for status in r.pending:
            held.pending.append(_Pending(status))
            held.latest = status
        self._tasks[r.task_id] = held
        if held.latest.state.terminal or r.info is None:
            return []  # it ended before the restart: what waits is delivered on registration
        if found is not None:
            return self._resume(held, found, now)
        if r.info.restart_policy is RestartPolicy.ON_AGENT_RESTART and r.executor in self.executors:
            held.relaunched = True
            held.latest = self._starting(r.task_id, r.stamp.time)
            return [StartTask(r.info)]
        if r.executor not in self.executors:
            reason, message = Reason.EXECUTOR_UNAVAILABLE, f"the {r.executor} executor is gone after the agent restart"
        else:
            reason, message = Reason.AGENT_RESTARTED, DIED_WITH_AGENT
        return self._enqueue(held, self._status(r.task_id, TaskState.FAILED, r.stamp, reason, message), now)

    def _resume(self, held: _Held, r: Recovered, now: float) -> list[AgentAction]:
        """A task a runtime found again after the restart, in the state it reports."""
        t = r.task
        status = self._status(t.task_id, t.state, r.stamp, t.reason, t.message, t.exit_code)
        if t.state.terminal:
            return self._enqueue(held, status, now)
        if held.latest.state is TaskState.STARTING:
            # Maybe reported RUNNING before the restart, maybe not: no uuid, so the master takes it only as news.
            held.latest = replace(status, uuid="")
        return []

    def _on_registered(self, now: float) -> list[AgentAction]:
        self._registered = True
        self._registering = False
        return self._send_heads(now)

    def _send_heads(self, now: float) -> list[AgentAction]:
        """Every task's oldest unacknowledged update, now, with a fresh backoff."""
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
        if self._at_limit():
            return [self._refuse(task.task_id)]
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
        starting = self._starting(task.task_id, event.stamp.time)
        self._tasks[task.task_id] = _Held(task.task_id, task.executor, starting, launched=True)
        return [StartTask(task)]

    def _kill(self, event: KillReceived, now: float) -> list[AgentAction]:
        held = self._tasks.get(event.task_id)
        if held is None:
            if event.task_id in self._completed:
                return []
            if self._at_limit():
                return [self._refuse(event.task_id)]
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
            if held.relaunched:
                if any(p.status.state is TaskState.RUNNING for p in held.pending):
                    held.latest = held.pending[-1].status  # its first RUNNING still waits: it says all there is
                    return []
                new = self._status(report.task_id, TaskState.RUNNING, event.stamp, Reason.AGENT_RESTARTED, RELAUNCHED)
            else:
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
        out: list[AgentAction] = [ForgetStatus(held.task_id, event.uuid)]
        if held.pending:
            return [*out, self._send(held.pending[0], now)] if self._registered else out
        if not held.latest.state.terminal:
            return out
        del self._tasks[held.task_id]
        self._completed[held.task_id] = None
        while len(self._completed) > REMEMBER_COMPLETED:
            self._completed.popitem(last=False)
        if not self._at_limit():
            self._full = False
        return [*out, CleanupTask(held.task_id, held.executor)] if held.launched else out

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
        out: list[AgentAction] = [KeepStatus(status, held.executor)]
        if len(held.pending) == 1 and self._registered:
            out.append(self._send(pending, now))
        return out

    def _starting(self, task_id: TaskId, time: float) -> TaskStatus:
        return TaskStatus(task_id, self.agent_id, TaskState.STARTING, timestamp=time)

    def _at_limit(self) -> bool:
        """Whether one more held task could make more than ``max_pending`` updates wait."""
        return 2 * (len(self._tasks) + 1) > self.max_pending

    def _refuse(self, task_id: TaskId) -> LaunchRefused:
        first = not self._full
        self._full = True
        return LaunchRefused(task_id, len(self._tasks), first)

    @staticmethod
    def _send(pending: _Pending, now: float) -> SendStatus:
        pending.next_send = now + pending.backoff
        pending.backoff = min(pending.backoff * 2, RETRY_MAX)
        return SendStatus(pending.status)
