"""The master's tasks: records, legal state transitions, and the update outbox.

Rules:

- Task states move forward only (the :data:`TRANSITIONS` table, h11 style):
  STAGING -> STARTING -> RUNNING -> KILLING -> a terminal state, skipping
  steps allowed, repeating the current state allowed (a re-report). Any live
  state may become UNREACHABLE (its agent went silent) and UNREACHABLE goes
  back to what the returning agent reports, or to LOST. Nothing
  follows a terminal state: a task is never resurrected. Status updates are
  facts that may arrive late or twice, so an update the table forbids is
  ignored (:func:`may_follow` says so), not an error.
- A task's resources count as used from STAGING until it is terminal. The
  :class:`TaskTable` keeps an index of live tasks per agent for that sum.
- Terminal tasks are remembered (to answer reconciliation and to recognise
  late reports) up to a limit; the oldest are then forgotten unless an
  update about them still waits for the framework's acknowledgement.
- Every change of a task's status is also appended to a bounded change
  journal (:meth:`TaskTable.take_changes`), which the service drains after
  each event for its read side (metrics, status history); the core itself
  never reads it.
- The :class:`UpdateOutbox` holds, per framework, the updates sent but not
  yet acknowledged, at most one per task (a newer update supersedes an
  older one: the framework needs the latest state, as in Mesos' status
  update stream). Resends back off: the interval doubles up to
  :data:`STATUS_RETRY_CAP` seconds.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from edgerm.ids import AgentId, FrameworkId, TaskId
from edgerm.model import TERMINAL_STATES, TaskInfo, TaskState, TaskStatus
from edgerm.resources import Resources, total

STATUS_RETRY_CAP = 30.0
#: Status changes kept for the service between two drains (one event changes far fewer).
CHANGE_JOURNAL_LIMIT = 100_000

_S = TaskState
TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    _S.STAGING: frozenset({_S.STAGING, _S.STARTING, _S.RUNNING, _S.KILLING, _S.UNREACHABLE}) | TERMINAL_STATES,
    _S.STARTING: frozenset({_S.STARTING, _S.RUNNING, _S.KILLING, _S.UNREACHABLE}) | TERMINAL_STATES,
    _S.RUNNING: frozenset({_S.RUNNING, _S.KILLING, _S.UNREACHABLE}) | TERMINAL_STATES,
    _S.KILLING: frozenset({_S.KILLING, _S.UNREACHABLE}) | TERMINAL_STATES,
    # The agent came back: the task is whatever the agent says it is.
    _S.UNREACHABLE: frozenset({_S.STARTING, _S.RUNNING, _S.KILLING, _S.UNREACHABLE}) | TERMINAL_STATES,
    **{state: frozenset() for state in TERMINAL_STATES},
}


def may_follow(current: TaskState, new: TaskState) -> bool:
    """Whether a task in ``current`` may move to ``new``."""
    return new in TRANSITIONS[current]


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """What the master knows of one task.

    ``info`` has ``agent_id`` and ``framework_id`` filled in. ``status`` is
    the latest accepted status. ``last_sent`` is when a LaunchTask (while
    STAGING) or KillTask (while KILLING) was last sent, for resends.
    ``seen_uuids`` are the status uuids already taken in, for idempotency.
    ``before`` is the state it had when its agent became unreachable (to go
    back to when the agent returns).
    """

    info: TaskInfo
    status: TaskStatus
    last_sent: float = 0.0
    seen_uuids: frozenset[str] = frozenset()
    before: TaskState | None = None

    @property
    def task_id(self) -> TaskId:
        return self.info.task_id

    @property
    def framework_id(self) -> FrameworkId:
        return self.info.framework_id

    @property
    def agent_id(self) -> AgentId:
        return self.info.agent_id

    @property
    def state(self) -> TaskState:
        return self.status.state

    @property
    def live(self) -> bool:
        return not self.status.state.terminal


@dataclass(frozen=True, slots=True)
class TaskChange:
    """A task's status changed from ``before`` (None: a new task) to ``after.status``."""

    before: TaskStatus | None
    after: TaskRecord


class TaskTable:
    """All known tasks, with a per-agent index of live ones.

    ``changed`` collects the ids of tasks put or forgotten since the core
    last took it (for the registry).
    """

    __slots__ = (
        "_changes",
        "_completed",
        "_ended_at",
        "_held",
        "_live_by_agent",
        "_records",
        "_used",
        "changed",
        "now",
    )

    def __init__(self) -> None:
        self._records: dict[TaskId, TaskRecord] = {}
        self._live_by_agent: dict[AgentId, dict[TaskId, None]] = {}
        self._used: dict[AgentId, Resources] = {}  # used_on, kept until the agent's live tasks change
        self._completed: deque[TaskId] = deque()
        #: Ended tasks that are due to be forgotten but were kept (an update waits for its acknowledgement),
        #: oldest first: set aside so that pruning does not look at them again until :meth:`release`.
        self._held: dict[TaskId, None] = {}
        self._ended_at: dict[TaskId, float] = {}  # master time a task became terminal
        self.changed: set[TaskId] = set()
        self.now = 0.0  # set by the core before each event: when ``put`` happens
        self._changes: deque[TaskChange] = deque(maxlen=CHANGE_JOURNAL_LIMIT)

    def get(self, task_id: TaskId) -> TaskRecord | None:
        return self._records.get(task_id)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._records

    def __iter__(self) -> Iterator[TaskRecord]:
        return iter(list(self._records.values()))

    def __len__(self) -> int:
        return len(self._records)

    def put(self, record: TaskRecord) -> None:
        """Insert or replace a record, keeping the live index in step."""
        old = self._records.get(record.task_id)
        self._records[record.task_id] = record
        self.changed.add(record.task_id)
        if old is None or old.status != record.status:
            self._changes.append(TaskChange(old.status if old is not None else None, record))
        if old is not None and old.live and (not record.live or old.agent_id != record.agent_id):
            self._unindex(old)
        if record.live:
            self._live_by_agent.setdefault(record.agent_id, {})[record.task_id] = None
            if old is None or not old.live or old.agent_id != record.agent_id or old.info is not record.info:
                self._used.pop(record.agent_id, None)
        elif old is None or old.live:
            self._completed.append(record.task_id)
            self._ended_at[record.task_id] = self.now

    def take_changes(self) -> list[TaskChange]:
        """The status changes since the last call, oldest first (then forgotten)."""
        changes = list(self._changes)
        self._changes.clear()
        return changes

    def _unindex(self, record: TaskRecord) -> None:
        self._used.pop(record.agent_id, None)
        live = self._live_by_agent.get(record.agent_id)
        if live is not None:
            live.pop(record.task_id, None)
            if not live:
                del self._live_by_agent[record.agent_id]

    def live_on(self, agent_id: AgentId) -> list[TaskRecord]:
        """Live tasks on an agent, oldest first."""
        return [self._records[t] for t in self._live_by_agent.get(agent_id, {})]

    def used_on(self, agent_id: AgentId) -> Resources:
        """Resources held by the live tasks on an agent (summed once per change of its live tasks)."""
        used = self._used.get(agent_id)
        if used is None:
            records = self._records
            used = total(records[t].info.resources for t in self._live_by_agent.get(agent_id, {}))
            self._used[agent_id] = used
        return used

    def of_framework(self, framework_id: FrameworkId) -> list[TaskRecord]:
        return [r for r in self._records.values() if r.framework_id == framework_id]

    def live_count(self, agent_id: AgentId) -> int:
        return len(self._live_by_agent.get(agent_id, ()))

    def prune(self, limit: int, keep: Callable[[TaskId], bool], ended_before: float | None = None) -> None:
        """Forget the oldest terminal tasks beyond ``limit``, and those that ended
        before ``ended_before``, except those ``keep`` names: those are set aside
        (still remembered and counted) until :meth:`release`, so a prune looks only
        at the tasks it may forget, never again at the kept ones."""
        while self._completed:
            task_id = self._completed[0]
            record = self._records.get(task_id)
            if record is None or record.live:
                self._completed.popleft()
                continue
            too_many = len(self._completed) + len(self._held) > limit
            too_old = ended_before is not None and self._ended_at.get(task_id, self.now) < ended_before
            if not (too_many or too_old):
                break
            self._completed.popleft()
            if keep(task_id):
                self._held[task_id] = None
            else:
                self._forget(task_id)

    def release(self, task_id: TaskId) -> None:
        """The update a kept task waited for was acknowledged (or its framework is gone): the next
        prune may forget it (it goes first: it is among the oldest)."""
        if task_id in self._held:
            del self._held[task_id]
            self._completed.appendleft(task_id)

    def _forget(self, task_id: TaskId) -> None:
        del self._records[task_id]
        self._ended_at.pop(task_id, None)
        self.changed.add(task_id)


@dataclass(frozen=True, slots=True)
class PendingUpdate:
    """An update sent to a framework and not yet acknowledged."""

    status: TaskStatus
    next_retry: float
    interval: float


class UpdateOutbox:
    """Unacknowledged updates per framework, at most one per task.

    Keyed by task, not by uuid: uuids come from agents, and a misbehaving
    agent reusing one for two tasks must not confuse the bookkeeping.
    """

    __slots__ = ("_boxes",)

    def __init__(self) -> None:
        self._boxes: dict[FrameworkId, dict[TaskId, PendingUpdate]] = {}

    def add(self, framework_id: FrameworkId, status: TaskStatus, now: float, interval: float) -> None:
        """Remember ``status`` (which has a uuid) until acknowledged; supersede an older one."""
        box = self._boxes.setdefault(framework_id, {})
        box.pop(status.task_id, None)  # re-inserted last: resends keep the order of events
        box[status.task_id] = PendingUpdate(status, now + interval, interval)

    def acknowledge(self, framework_id: FrameworkId, uuid: str, task_id: TaskId | None = None) -> TaskId | None:
        """Drop the pending update with ``uuid`` (of ``task_id`` when given and it matches)
        and return its task; None when there is none (already acknowledged, or superseded)."""
        box = self._boxes.get(framework_id)
        if box is None:
            return None
        pending = box.get(task_id) if task_id is not None else None
        if pending is not None and pending.status.uuid == uuid:
            found: TaskId | None = task_id
        else:
            found = next((t for t, p in box.items() if p.status.uuid == uuid), None)
        if found is None:
            return None
        del box[found]
        if not box:
            del self._boxes[framework_id]
        return found

    def has(self, framework_id: FrameworkId, task_id: TaskId) -> bool:
        """Whether an update of this task waits for the framework's acknowledgement."""
        return task_id in self._boxes.get(framework_id, {})

    def count(self, framework_id: FrameworkId) -> int:
        return len(self._boxes.get(framework_id, {}))

    def pending(self, framework_id: FrameworkId) -> list[PendingUpdate]:
        return list(self._boxes.get(framework_id, {}).values())

    def resend_all(self, framework_id: FrameworkId, now: float, interval: float) -> list[TaskStatus]:
        """Every pending update, rescheduled from scratch (a framework re-subscribed)."""
        box = self._boxes.get(framework_id, {})
        for task_id, p in box.items():
            box[task_id] = PendingUpdate(p.status, now + interval, interval)
        return [p.status for p in box.values()]

    def due(self, framework_id: FrameworkId, now: float) -> list[TaskStatus]:
        """Updates whose retry time has come, rescheduled with a doubled interval."""
        box = self._boxes.get(framework_id, {})
        out = []
        for task_id, p in box.items():
            if p.next_retry <= now:
                interval = min(p.interval * 2, STATUS_RETRY_CAP)
                box[task_id] = replace(p, next_retry=now + interval, interval=interval)
                out.append(p.status)
        return out

    def drop_framework(self, framework_id: FrameworkId) -> list[TaskId]:
        """Forget a framework's pending updates; return their tasks."""
        return list(self._boxes.pop(framework_id, {}))
