"""``FakeRuntime``: an in-memory runtime whose tasks do what their args say.

It implements :class:`~edgerm.agent.runtime.Runtime` exactly (reports come
on the event loop, after ``launch`` returns; one ``TaskEnded`` per task), so
services and contract tests run without wasmtime or Docker. Scripts, by the
task's ``args``:

==================  ===========================================================
``[]``/``finish``   RUNNING, then FINISHED (exit 0)
``fail N``          RUNNING, then FAILED, COMMAND_EXITED, exit code N (default 1)
``trap MESSAGE``    RUNNING, then FAILED, TRAP with that message
``hang``            RUNNING until killed
``sleep S``         RUNNING, FINISHED after S seconds (a loop timer)
``stuck``           never reports RUNNING; only a kill ends it
``launch-error``    ``launch`` raises :class:`~edgerm.errors.RuntimeFailure`
==================  ===========================================================

Anything else fails the task with INVALID_TASK. A task with a
``WasmSpec.time_limit`` that is still running when it passes ends FAILED,
TIME_LIMIT, as in WasmRuntime. It records what it was asked
(``launched``, ``killed``, ``cleaned``) for tests to inspect.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from edgerm.agent.runtime import RecoveredTask, ReportCallback, RuntimeReport, TaskEnded, TaskStarted
from edgerm.errors import RuntimeFailure
from edgerm.ids import TaskId
from edgerm.model import Reason, TaskInfo, TaskState, WasmSpec


@dataclass(slots=True)
class _FakeTask:
    task: TaskInfo
    report: ReportCallback
    ended: bool = False
    timer: asyncio.TimerHandle | None = None
    limit: asyncio.TimerHandle | None = None


@dataclass
class FakeRuntime:
    """A scripted runtime (see the module docstring)."""

    executor: str = "wasm"
    is_available: bool = True
    #: What :meth:`recover` returns (as if found after an agent restart).
    recoverable: list[RecoveredTask] = field(default_factory=list)
    launched: list[TaskInfo] = field(default_factory=list)
    killed: list[tuple[TaskId, float]] = field(default_factory=list)
    cleaned: list[TaskId] = field(default_factory=list)
    closed: bool = False
    _tasks: dict[TaskId, _FakeTask] = field(default_factory=dict)

    async def available(self) -> bool:
        return self.is_available and not self.closed

    async def launch(self, task: TaskInfo, workdir: Path, report: ReportCallback) -> None:
        self.launched.append(task)
        if task.task_id in self._tasks:
            return
        script = task.args[0] if task.args else "finish"
        if script == "launch-error":
            raise RuntimeFailure(f"scripted launch error for {task.task_id}")
        held = _FakeTask(task, report)
        self._tasks[task.task_id] = held
        loop = asyncio.get_running_loop()
        tid = task.task_id
        arg = task.args[1] if len(task.args) > 1 else ""
        spec = task.container
        if isinstance(spec, WasmSpec) and spec.time_limit > 0:
            over = TaskEnded(tid, TaskState.FAILED, Reason.TIME_LIMIT, f"ran longer than {spec.time_limit:g}s")
            held.limit = loop.call_later(spec.time_limit, self._end, held, over)
        if script == "stuck":
            return
        loop.call_soon(self._report, held, TaskStarted(tid))
        if script == "finish":
            loop.call_soon(self._end, held, TaskEnded(tid, TaskState.FINISHED, Reason.COMMAND_EXITED, "exited"))
        elif script == "fail":
            code = int(arg) if arg.lstrip("-").isdigit() else 1
            ended = TaskEnded(tid, TaskState.FAILED, Reason.COMMAND_EXITED, f"exited with code {code}", code)
            loop.call_soon(self._end, held, ended)
        elif script == "trap":
            loop.call_soon(self._end, held, TaskEnded(tid, TaskState.FAILED, Reason.TRAP, arg or "trap"))
        elif script == "sleep":
            delay = float(arg) if arg else 0.0
            ended = TaskEnded(tid, TaskState.FINISHED, Reason.COMMAND_EXITED, "exited")
            held.timer = loop.call_later(delay, self._end, held, ended)
        elif script != "hang":
            ended = TaskEnded(tid, TaskState.FAILED, Reason.INVALID_TASK, f"unknown fake script {script!r}")
            loop.call_soon(self._end, held, ended)

    async def kill(self, task_id: TaskId, grace: float) -> None:
        self.killed.append((task_id, grace))
        held = self._tasks.get(task_id)
        if held is None or held.ended:
            return
        self._end(held, TaskEnded(task_id, TaskState.KILLED, Reason.KILLED_BY_FRAMEWORK, "killed"))

    async def recover(self, report: ReportCallback) -> list[RecoveredTask]:
        return list(self.recoverable)

    async def cleanup(self, task_id: TaskId) -> None:
        self.cleaned.append(task_id)
        self._tasks.pop(task_id, None)

    async def close(self) -> None:
        for held in list(self._tasks.values()):
            if not held.ended:
                self._end(held, TaskEnded(held.task.task_id, TaskState.KILLED, Reason.KILLED_BY_FRAMEWORK, "stopped"))
        self.closed = True

    def running(self) -> list[TaskId]:
        """Tasks launched and not yet ended."""
        return [t for t, h in self._tasks.items() if not h.ended]

    @staticmethod
    def _report(held: _FakeTask, report: RuntimeReport) -> None:
        if not held.ended:
            held.report(report)

    @staticmethod
    def _end(held: _FakeTask, ended: TaskEnded) -> None:
        if held.ended:
            return
        held.ended = True
        for timer in (held.timer, held.limit):
            if timer is not None:
                timer.cancel()
        held.report(ended)
