"""The ``FrameworkDriver`` protocol (what a framework can ask of the master)
and ``RecordingDriver``, a fake of it for unit tests of framework classes.

Rules:

- A driver method returns once the master has accepted the call (HTTP 202)
  and raises the matching :class:`~edgerm.errors.WireError` subclass when the
  master refused it (``UnknownOffer``, ``InsufficientResources``, ...). A
  call made while not subscribed raises ``NotSubscribed``; a master that
  cannot be reached raises ``Unavailable``. Nothing else escapes.
- Calls carry internal messages (:mod:`edgerm.messages`); encoding is the
  concrete driver's business (:mod:`edgerm.frameworks.http_driver`).
- ``RecordingDriver`` records each call as that internal message, in order,
  so a test compares plain dataclasses; it never touches a socket.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Protocol, TypeVar

from edgerm import messages as m
from edgerm.errors import NotSubscribed, WireError
from edgerm.ids import AgentId, FrameworkId, OfferId, TaskId
from edgerm.model import Filters, TaskInfo, TaskStatus


class FrameworkDriver(Protocol):
    """The actions a framework takes. Every method is a coroutine."""

    @property
    def framework_id(self) -> FrameworkId | None:
        """The id the master gave this framework; ``None`` before SUBSCRIBED."""
        ...

    async def accept(
        self, offer_ids: Iterable[OfferId], tasks: Iterable[TaskInfo], filters: Filters | None = None
    ) -> None:
        """Launch ``tasks`` on the offers' agent; what they leave unused goes
        back to the pool and may be offered again at once (to this framework
        too). ``filters`` apply only when ``tasks`` is empty (a decline)."""
        ...

    async def decline(self, offer_ids: Iterable[OfferId], refuse_seconds: float = 5.0) -> None:
        """Give offers back; their agents are not re-offered to this framework
        for ``refuse_seconds`` unless it revives, or more than was declined is
        free on them (a task there ended)."""
        ...

    async def kill(self, task_id: TaskId, agent_id: AgentId | None = None) -> None:
        """Ask for a task to be stopped; KILLED (or its real end) follows as
        a status update."""
        ...

    async def acknowledge(self, status: TaskStatus) -> None:
        """Confirm a status update that carries a uuid (needed only when the
        framework sets ``auto_acknowledge = False``)."""
        ...

    async def revive(self) -> None:
        """Drop all decline filters and resume offers after ``suppress``."""
        ...

    async def suppress(self) -> None:
        """Stop receiving offers until ``revive``."""
        ...

    async def reconcile(self, tasks: Iterable[tuple[TaskId, AgentId]] = ()) -> None:
        """Ask for the latest status of these tasks (all of mine if empty);
        answers arrive as status updates without a uuid."""
        ...

    async def stop(self, teardown: bool = True) -> None:
        """Stop the driver. ``teardown=True`` also removes the framework at
        the master (its tasks are killed); ``False`` only disconnects, and a
        later driver can resume with the same framework id."""
        ...


@dataclasses.dataclass(frozen=True, slots=True)
class Stopped:
    """What ``RecordingDriver`` records for ``stop(teardown=False)``."""


Recorded = m.SchedulerCall | Stopped

_T = TypeVar("_T")


class RecordingDriver:
    """A ``FrameworkDriver`` that records calls instead of sending them.

    ``calls`` holds each call as its internal message (``m.Accept``,
    ``m.Decline``, ``m.Teardown`` for ``stop()``, :class:`Stopped` for
    ``stop(teardown=False)``; a second ``stop`` records nothing). :meth:`fail_next` makes the next call raise a
    typed error, as a master refusing it would.
    """

    def __init__(self, framework_id: str | None = "framework-1") -> None:
        self._framework_id = FrameworkId(framework_id) if framework_id is not None else None
        self.calls: list[Recorded] = []
        self.stopped = False
        self._errors: list[WireError] = []

    @property
    def framework_id(self) -> FrameworkId | None:
        return self._framework_id

    def fail_next(self, error: WireError) -> None:
        """Make the next call raise ``error`` (and record nothing)."""
        self._errors.append(error)

    def of_type(self, kind: type[_T]) -> list[_T]:
        """The recorded calls of one kind, in order."""
        return [c for c in self.calls if isinstance(c, kind)]

    def _record(self, call: Recorded) -> None:
        if self._errors:
            raise self._errors.pop(0)
        self.calls.append(call)

    def _fid(self) -> FrameworkId:
        if self._framework_id is None or self.stopped:
            raise NotSubscribed("the framework is not subscribed")
        return self._framework_id

    async def accept(
        self, offer_ids: Iterable[OfferId], tasks: Iterable[TaskInfo], filters: Filters | None = None
    ) -> None:
        fid = self._fid()
        owned = tuple(t if t.framework_id else dataclasses.replace(t, framework_id=fid) for t in tasks)
        self._record(m.Accept(fid, tuple(offer_ids), owned, filters or Filters()))

    async def decline(self, offer_ids: Iterable[OfferId], refuse_seconds: float = 5.0) -> None:
        self._record(m.Decline(self._fid(), tuple(offer_ids), Filters(refuse_seconds)))

    async def kill(self, task_id: TaskId, agent_id: AgentId | None = None) -> None:
        self._record(m.Kill(self._fid(), task_id, agent_id or AgentId("")))

    async def acknowledge(self, status: TaskStatus) -> None:
        self._record(m.Acknowledge(self._fid(), status.agent_id, status.task_id, status.uuid))

    async def revive(self) -> None:
        self._record(m.Revive(self._fid()))

    async def suppress(self) -> None:
        self._record(m.Suppress(self._fid()))

    async def reconcile(self, tasks: Iterable[tuple[TaskId, AgentId]] = ()) -> None:
        self._record(m.Reconcile(self._fid(), tuple(tasks)))

    async def stop(self, teardown: bool = True) -> None:
        if self.stopped:  # idempotent, as a real driver's
            return
        self._record(m.Teardown(self._fid()) if teardown else Stopped())
        self.stopped = True
