"""FakeRuntime keeps the Runtime contract: reports after launch, one end per task."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from edgerm.agent.fake import FakeRuntime
from edgerm.agent.runtime import RecoveredTask, RuntimeReport, TaskEnded, TaskStarted
from edgerm.errors import RuntimeFailure
from edgerm.ids import AgentId, TaskId
from edgerm.model import Reason, TaskInfo, TaskState, WasmSpec
from edgerm.resources import Resources


def task(task_id: str, *args: str) -> TaskInfo:
    return TaskInfo(TaskId(task_id), task_id, AgentId("a"), Resources.parse("cpus:1"), WasmSpec(b"\0asm"), args)


class Reports:
    def __init__(self) -> None:
        self.items: list[RuntimeReport] = []
        self.ended = asyncio.Event()

    def __call__(self, report: RuntimeReport) -> None:
        self.items.append(report)
        if isinstance(report, TaskEnded):
            self.ended.set()


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


@pytest.mark.parametrize(
    ("args", "state", "reason", "code"),
    [
        ((), TaskState.FINISHED, Reason.COMMAND_EXITED, 0),
        (("finish",), TaskState.FINISHED, Reason.COMMAND_EXITED, 0),
        (("fail", "3"), TaskState.FAILED, Reason.COMMAND_EXITED, 3),
        (("trap", "unreachable"), TaskState.FAILED, Reason.TRAP, 0),
        (("sleep", "0"), TaskState.FINISHED, Reason.COMMAND_EXITED, 0),
        (("dance",), TaskState.FAILED, Reason.INVALID_TASK, 0),
    ],
)
async def test_scripts_end_as_told(args: tuple[str, ...], state: TaskState, reason: Reason, code: int) -> None:
    rt = FakeRuntime()
    reports = Reports()
    await rt.launch(task("t", *args), Path("/nonexistent"), reports)
    assert reports.items == []  # reports come after launch returns
    await reports.ended.wait()
    *before, end = reports.items
    assert isinstance(end, TaskEnded) and (end.state, end.reason, end.exit_code) == (state, reason, code)
    if reason is not Reason.INVALID_TASK:
        assert before == [TaskStarted(TaskId("t"))]


async def test_hang_runs_until_killed_and_kill_is_idempotent() -> None:
    rt = FakeRuntime()
    reports = Reports()
    await rt.launch(task("h", "hang"), Path("."), reports)
    await settle()
    assert reports.items == [TaskStarted(TaskId("h"))] and rt.running() == [TaskId("h")]
    await rt.kill(TaskId("h"), 1.5)
    await rt.kill(TaskId("h"), 1.5)
    await rt.kill(TaskId("nobody"), 0.0)
    ends = [r for r in reports.items if isinstance(r, TaskEnded)]
    assert [(e.state, e.reason) for e in ends] == [(TaskState.KILLED, Reason.KILLED_BY_FRAMEWORK)]
    assert rt.killed == [(TaskId("h"), 1.5), (TaskId("h"), 1.5), (TaskId("nobody"), 0.0)]
    assert rt.running() == []


async def test_stuck_never_starts_and_close_stops_everything() -> None:
    rt = FakeRuntime()
    reports = Reports()
    await rt.launch(task("s", "stuck"), Path("."), reports)
    await rt.launch(task("h", "hang"), Path("."), reports)
    await settle()
    assert reports.items == [TaskStarted(TaskId("h"))]
    await rt.close()
    assert {r.task_id for r in reports.items if isinstance(r, TaskEnded)} == {"s", "h"}
    assert not await rt.available()


async def test_launch_error_raises_and_duplicate_launch_is_ignored() -> None:
    rt = FakeRuntime()
    with pytest.raises(RuntimeFailure):
        await rt.launch(task("x", "launch-error"), Path("."), Reports())
    reports = Reports()
    await rt.launch(task("d", "hang"), Path("."), reports)
    await rt.launch(task("d", "hang"), Path("."), reports)
    await settle()
    assert reports.items == [TaskStarted(TaskId("d"))]
    await rt.close()


async def test_recover_and_cleanup_are_recorded() -> None:
    found = [RecoveredTask(TaskId("old"), TaskState.RUNNING)]
    rt = FakeRuntime(executor="docker", recoverable=found)
    assert await rt.recover(Reports()) == found
    await rt.cleanup(TaskId("old"))
    assert rt.cleaned == [TaskId("old")]
    assert rt.executor == "docker"
