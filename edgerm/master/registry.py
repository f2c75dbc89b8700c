"""What the master keeps across restarts, as plain rows (pure; no I/O).

The core (:mod:`edgerm.master.state`) reports every change to the state
that must survive a restart as one :class:`Changes` value inside a
``Persist`` action; the service hands it to a :class:`~edgerm.master.store.StateStore`.
On start the store loads a :class:`Registry` and the core rebuilds itself
from it (``MasterCore.restore``).

Rules:
- Rows are frozen values: the core hands them to a writer thread and never
  sees them again, so nothing is shared mutably across threads.
- What is kept: frameworks (info, when they disconnected), agents (info,
  last contact, whether they were unreachable and since when), tasks (their
  ``TaskInfo`` without inline module bytes, their latest status, and whether
  the framework acknowledged it). Offers, filters and streams are not kept:
  they are rebuilt by allocation after the restart.
- Module bytes are kept by content hash next to the database (the store
  writes them); a restored task names its module by ``module_sha256``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from edgerm.ids import AgentId, FrameworkId, TaskId
from edgerm.model import AgentInfo, FrameworkInfo, TaskInfo, TaskStatus, WasmSpec


@dataclass(frozen=True, slots=True)
class FrameworkRow:
    info: FrameworkInfo
    disconnected_at: float | None = None  # None: its stream was open when written


@dataclass(frozen=True, slots=True)
class AgentRow:
    info: AgentInfo
    last_seen: float
    unreachable_since: float | None = None


@dataclass(frozen=True, slots=True)
class TaskRow:
    info: TaskInfo  # without inline module bytes (see :func:`strip_module`)
    status: TaskStatus
    acknowledged: bool = True  # False: the framework has not acknowledged ``status`` yet


@dataclass(frozen=True, slots=True)
class Changes:
    """Upserts and deletions from one core event (or a group of them)."""

    frameworks: tuple[FrameworkRow, ...] = ()
    frameworks_gone: tuple[FrameworkId, ...] = ()
    agents: tuple[AgentRow, ...] = ()
    agents_gone: tuple[AgentId, ...] = ()
    tasks: tuple[TaskRow, ...] = ()
    tasks_gone: tuple[TaskId, ...] = ()
    modules: tuple[bytes, ...] = ()  # inline module bytes of newly launched tasks
    # Agents whose row is unchanged but for its last contact (agent id, last_seen): a column update, not a row.
    seen: tuple[tuple[AgentId, float], ...] = ()

    def __bool__(self) -> bool:
        return bool(
            self.seen
            or self.frameworks
            or self.frameworks_gone
            or self.agents
            or self.agents_gone
            or self.tasks
            or self.tasks_gone
            or self.modules
        )


@dataclass(frozen=True, slots=True)
class Registry:
    """Everything a store loaded: the input of ``MasterCore.restore``."""

    frameworks: tuple[FrameworkRow, ...] = ()
    agents: tuple[AgentRow, ...] = ()
    tasks: tuple[TaskRow, ...] = ()
    extra: dict[str, str] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.frameworks or self.agents or self.tasks)


def strip_module(info: TaskInfo) -> TaskInfo:
    """``info`` with an inline WASM module replaced by its hash (kept on disk instead)."""
    container = info.container
    if isinstance(container, WasmSpec) and container.module:
        return replace(info, container=WasmSpec(module_sha256=container.sha256, time_limit=container.time_limit))
    return info


class ModuleStripper:
    """:func:`strip_module` for a task's rows: a task's ``TaskInfo`` does not change while its status does,
    so the stripped copy (a hash of the module and a copy of the info) is made once, not at every row."""

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._done: dict[str, tuple[TaskInfo, TaskInfo]] = {}  # task id -> (info, stripped), oldest first

    def __call__(self, info: TaskInfo) -> TaskInfo:
        container = info.container
        if not (isinstance(container, WasmSpec) and container.module):
            return info
        done = self._done.get(info.task_id)
        if done is not None and done[0] is info:
            return done[1]
        stripped = strip_module(info)
        if len(self._done) >= self._size:
            del self._done[next(iter(self._done))]
        self._done[info.task_id] = (info, stripped)
        return stripped
