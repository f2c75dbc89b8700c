"""The ``Runtime`` protocol every task runtime implements, and its reports.

A runtime runs tasks of one executor kind (``wasm``, ``docker``). The agent
service calls it; the runtime answers through the ``report`` callback it was
given with :class:`TaskStarted` and exactly one :class:`TaskEnded` per task it
accepted. Rules:

- ``launch`` returns once the task is under way (or has already failed);
  it never blocks the event loop (blocking SDK calls run in threads) and
  never raises for a task's own failure: that is a ``TaskEnded(FAILED)``.
- ``kill`` stops a task politely, waits ``grace`` seconds, then forces it;
  the runtime then reports ``TaskEnded(KILLED)``. Killing an unknown or
  finished task does nothing.
- ``recover`` (after an agent restart) returns what the runtime still finds
  of earlier tasks and resumes watching the live ones.
- ``cleanup`` drops what a finished task left (containers, work files it
  does not need) once its final status was acknowledged.
- ``close`` is called when the agent process stops, for a restart or for
  good (SIGTERM of ``edgerm-agent``): as a Mesos agent does, it keeps tasks
  running wherever they can outlive the agent (containers), for the next
  agent on the same work dir to ``recover``. An agent that comes back after
  the master declared it lost is told to kill them (they were reported
  LOST). Tasks that live inside the agent process (WebAssembly) end with it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from edgerm.ids import TaskId
from edgerm.model import Reason, TaskInfo, TaskState


@dataclass(frozen=True, slots=True)
class TaskStarted:
    """The task is running."""

    task_id: TaskId


@dataclass(frozen=True, slots=True)
class TaskEnded:
    """The task reached a terminal state (FINISHED, FAILED or KILLED)."""

    task_id: TaskId
    state: TaskState
    reason: Reason = Reason.UNSPECIFIED
    message: str = ""
    exit_code: int = 0


@dataclass(frozen=True, slots=True)
class TaskProgress:
    """The task is still starting; ``message`` says how far (e.g. an image pull). Rate-limited by the runtime."""

    task_id: TaskId
    message: str


RuntimeReport = TaskStarted | TaskEnded | TaskProgress
ReportCallback = Callable[[RuntimeReport], None]


@dataclass(frozen=True, slots=True)
class RecoveredTask:
    """A task a runtime found after an agent restart, with its true state."""

    task_id: TaskId
    state: TaskState  # RUNNING, or the terminal state it reached meanwhile
    reason: Reason = Reason.UNSPECIFIED
    message: str = ""
    exit_code: int = 0


class Runtime(Protocol):
    """What the agent needs of a task runtime."""

    #: The executor name agents advertise for it (``wasm``, ``docker``).
    executor: str

    async def available(self) -> bool:
        """Whether this runtime can run tasks on this machine right now."""
        ...

    async def launch(self, task: TaskInfo, workdir: Path, report: ReportCallback) -> None:
        """Start ``task`` with ``workdir`` as its private directory."""
        ...

    async def kill(self, task_id: TaskId, grace: float) -> None:
        """Stop a task: polite stop, ``grace`` seconds, then forced."""
        ...

    async def recover(self, report: ReportCallback) -> list[RecoveredTask]:
        """Find tasks left from before an agent restart and resume watching them."""
        ...

    async def cleanup(self, task_id: TaskId) -> None:
        """Release what a finished task left behind."""
        ...

    async def close(self) -> None:
        """Stop watching tasks and release the runtime's resources (threads, connections).

        Tasks that can outlive the agent process keep running, with no
        report for them, until a later ``recover``; tasks that cannot are
        stopped. Called once, when the agent stops.
        """
        ...
