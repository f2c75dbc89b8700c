"""A Docker task's life with real containers: finish, fail, OOM, kill with grace, cleanup."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Any

import docker
import pytest

from edgerm.agent.docker_spec import container_name
from edgerm.agent.runtime import TaskEnded, TaskStarted
from edgerm.model import Reason, TaskState

pytestmark = pytest.mark.docker


def _container_exists(name: str) -> bool:
    client = docker.from_env()
    try:
        client.containers.get(name)
        return True
    except docker.errors.NotFound:
        return False
    finally:
        client.close()


async def test_exit_zero_finishes_after_running(agent: Any, recorder: Any, tmp_path: Path) -> None:
    task = agent.task(
        "finish",
        (
            "sh",
            "-c",
            'test "$GREETING" = hello && test "$EDGERM_TASK_ID" = "$1" && echo done > /edgerm/sandbox/out',
            "-",
        ),
        env={"GREETING": "hello"},
    )
    task = dataclasses.replace(task, args=(*task.args, task.task_id))

    await agent.runtime.launch(task, tmp_path, recorder)
    ended = await recorder.ended(task.task_id)

    assert ended.state is TaskState.FINISHED, ended.message
    assert ended.exit_code == 0
    assert recorder.of(task.task_id) == [TaskStarted(task.task_id), ended]
    assert (tmp_path / "out").read_text() == "done\n"


async def test_nonzero_exit_fails_with_code_and_log_tail(agent: Any, recorder: Any, tmp_path: Path) -> None:
    task = agent.task("fail", ("sh", "-c", "echo first line; echo second line >&2; exit 3"))

    await agent.runtime.launch(task, tmp_path, recorder)
    ended = await recorder.ended(task.task_id)

    assert ended.state is TaskState.FAILED
    assert ended.reason is Reason.COMMAND_EXITED
    assert ended.exit_code == 3
    assert "exited with code 3" in ended.message
    assert "first line" in ended.message and "second line" in ended.message
    assert [type(r) for r in recorder.of(task.task_id)] == [TaskStarted, TaskEnded]


async def test_out_of_memory_fails_with_memory_limit(agent: Any, recorder: Any, tmp_path: Path) -> None:
    # dd allocates and fills one 64 MiB block: far over the 16 MiB limit, and swap is forbidden. It waits a
    # moment first: an OOM kill within milliseconds of the start comes before the engine watches for it.
    script = "sleep 0.5; dd if=/dev/zero of=/dev/null bs=64M count=1"
    task = agent.task("oom", ("sh", "-c", script), "cpus:0.2;mem:16")

    await agent.runtime.launch(task, tmp_path, recorder)
    ended = await recorder.ended(task.task_id)

    assert ended.state is TaskState.FAILED
    assert ended.reason is Reason.MEMORY_LIMIT, ended.message
    assert ended.message == "memory limit"
    assert ended.exit_code == 137


async def test_kill_stops_politely_when_the_task_handles_sigterm(agent: Any, recorder: Any, tmp_path: Path) -> None:
    script = "trap 'echo got term; exit 0' TERM; echo ready; while true; do sleep 0.05; done"
    task = agent.task("polite", ("sh", "-c", script))
    await agent.runtime.launch(task, tmp_path, recorder)
    await recorder.started(task.task_id)
    await agent.wait_for_output(task.task_id, "ready")

    began = time.monotonic()
    await agent.runtime.kill(task.task_id, 20.0)
    took = time.monotonic() - began

    ended = await recorder.ended(task.task_id)
    assert ended.state is TaskState.KILLED
    assert ended.reason is Reason.KILLED_BY_FRAMEWORK
    assert ended.exit_code == 0  # its trap ran: it was SIGTERM, not SIGKILL, that stopped it
    assert took < 10.0


async def test_kill_forces_after_the_grace_period(agent: Any, recorder: Any, tmp_path: Path) -> None:
    # As PID 1 without a handler, sleep ignores SIGTERM: only SIGKILL stops it.
    task = agent.task("stubborn", ("sleep", "600"))
    await agent.runtime.launch(task, tmp_path, recorder)
    await recorder.started(task.task_id)

    began = time.monotonic()
    await agent.runtime.kill(task.task_id, 1.0)
    took = time.monotonic() - began

    ended = await recorder.ended(task.task_id)
    assert ended.state is TaskState.KILLED
    assert ended.exit_code == 137
    assert took >= 1.0
    assert len([r for r in recorder.of(task.task_id) if isinstance(r, TaskEnded)]) == 1


async def test_kill_of_unknown_or_finished_task_does_nothing(agent: Any, recorder: Any, tmp_path: Path) -> None:
    task = agent.task("short", ("true",))
    await agent.runtime.launch(task, tmp_path, recorder)
    await recorder.ended(task.task_id)

    await agent.runtime.kill(task.task_id, 1.0)
    await agent.runtime.kill(type(task.task_id)("never-launched"), 1.0)

    assert [type(r) for r in recorder.reports] == [TaskStarted, TaskEnded]
    assert recorder.reports[-1].state is TaskState.FINISHED


async def test_cleanup_removes_the_container_only_after_the_end(agent: Any, recorder: Any, tmp_path: Path) -> None:
    task = agent.task("clean", ("sleep", "600"))
    name = container_name(agent.agent_id, task.task_id)
    await agent.runtime.launch(task, tmp_path, recorder)
    await recorder.started(task.task_id)

    await agent.runtime.cleanup(task.task_id)  # still running: refused
    assert await asyncio.to_thread(_container_exists, name)

    await agent.runtime.kill(task.task_id, 0.0)
    await recorder.ended(task.task_id)
    assert await asyncio.to_thread(_container_exists, name)  # kept for its logs until the status is acknowledged

    await agent.runtime.cleanup(task.task_id)
    assert not await asyncio.to_thread(_container_exists, name)


async def test_second_launch_of_a_task_runs_nothing_more(agent: Any, recorder: Any, tmp_path: Path) -> None:
    task = agent.task("twice", ("sleep", "600"))
    await agent.runtime.launch(task, tmp_path, recorder)
    await agent.runtime.launch(task, tmp_path, recorder)
    await recorder.started(task.task_id)

    # Even a runtime that never heard of the task adopts its container instead of starting another.
    other = agent.new_runtime()
    again = type(recorder)()
    await other.launch(task, tmp_path, again)
    assert again.reports == [TaskStarted(task.task_id)]

    client = docker.from_env()
    try:
        running = client.containers.list(filters={"label": f"edgerm.task={task.task_id}"})
    finally:
        client.close()
    assert len(running) == 1
    assert [type(r) for r in recorder.of(task.task_id)] == [TaskStarted]


async def test_a_task_that_cannot_start_fails_and_the_agent_goes_on(agent: Any, recorder: Any, tmp_path: Path) -> None:
    broken = agent.task("nocmd", ("/bin/does-not-exist",))
    await agent.runtime.launch(broken, tmp_path, recorder)
    ended = await recorder.ended(broken.task_id)
    assert ended.state is TaskState.FAILED
    assert ended.reason is Reason.RUNTIME_ERROR
    assert "does-not-exist" in ended.message
    assert not await asyncio.to_thread(_container_exists, container_name(agent.agent_id, broken.task_id))

    fine = agent.task("after", ("true",))
    await agent.runtime.launch(fine, tmp_path, recorder)
    assert (await recorder.ended(fine.task_id)).state is TaskState.FINISHED
