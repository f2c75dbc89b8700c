"""Agent restarts: close() leaves containers running, recover() re-attaches with true states, kill_all() clears."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import docker
import pytest

from edgerm.agent.docker import DockerRuntime
from edgerm.agent.docker_spec import LABEL_AGENT, container_name
from edgerm.agent.runtime import RecoveredTask, TaskEnded
from edgerm.ids import AgentId
from edgerm.model import Reason, TaskState

pytestmark = pytest.mark.docker


def _containers(agent_id: str) -> dict[str, str]:
    """name -> status of every container of the agent."""
    client = docker.from_env()
    try:
        found = client.containers.list(all=True, filters={"label": f"{LABEL_AGENT}={agent_id}"})
        return {c.name: c.status for c in found}
    finally:
        client.close()


def _wait_exit(name: str) -> None:
    client = docker.from_env()
    try:
        client.containers.get(name).wait(timeout=30)
    finally:
        client.close()


async def test_restart_reattaches_running_and_reports_finished(agent: Any, recorder: Any, tmp_path: Path) -> None:
    first = agent.runtime
    long = agent.task("long", ("sleep", "600"))
    quick = agent.task("quick", ("sh", "-c", "echo goodbye; exit 4"))
    await first.launch(long, tmp_path / "long", recorder)
    await recorder.started(long.task_id)

    await first.close()  # the agent restarts: its containers keep running
    assert _containers(agent.agent_id) == {container_name(agent.agent_id, long.task_id): "running"}

    # While no agent watches, a task of it runs and fails (launched by hand, as if just before the restart).
    second = agent.new_runtime()
    await second.launch(quick, tmp_path / "quick", type(recorder)())
    await second.close()
    await asyncio.to_thread(_wait_exit, container_name(agent.agent_id, quick.task_id))

    third = agent.new_runtime()
    after = type(recorder)()
    found = {r.task_id: r for r in await third.recover(after)}

    assert found[long.task_id] == RecoveredTask(long.task_id, TaskState.RUNNING)
    failed = found[quick.task_id]
    assert failed.state is TaskState.FAILED
    assert failed.exit_code == 4
    assert "goodbye" in failed.message
    assert after.reports == []  # recovered states come back from recover(), not as reports

    # No duplicate: a LAUNCH re-sent for the recovered task is ignored.
    await third.launch(long, tmp_path / "long", after)
    assert len(_containers(agent.agent_id)) == 2
    assert after.reports == []

    # The running one is watched again: a kill reaches it and its end is reported once.
    await third.kill(long.task_id, 0.0)
    ended = await after.ended(long.task_id)
    assert ended.state is TaskState.KILLED
    assert [r for r in after.reports if isinstance(r, TaskEnded)] == [ended]

    # Finished containers go once their status is acknowledged.
    await third.cleanup(long.task_id)
    await third.cleanup(quick.task_id)
    assert _containers(agent.agent_id) == {}


async def test_recovered_task_that_exits_later_is_reported(agent: Any, recorder: Any, tmp_path: Path) -> None:
    task = agent.task("later", ("sh", "-c", "trap 'exit 7' TERM; echo ready; while true; do sleep 0.05; done"))
    await agent.runtime.launch(task, tmp_path, recorder)
    await agent.wait_for_output(task.task_id, "ready")  # its trap is set: SIGTERM will end it
    await agent.runtime.close()

    again = agent.new_runtime()
    after = type(recorder)()
    assert await again.recover(after) == [RecoveredTask(task.task_id, TaskState.RUNNING)]

    # Stopped from outside the agent: the events stream still tells the new runtime.
    client = docker.from_env()
    try:
        await asyncio.to_thread(client.api.kill, container_name(agent.agent_id, task.task_id), "SIGTERM")
    finally:
        client.close()
    ended = await after.ended(task.task_id)
    assert ended.state is TaskState.FAILED
    assert ended.reason is Reason.COMMAND_EXITED
    assert ended.exit_code == 7


async def test_recover_finds_nothing_of_other_agents(agent: Any, recorder: Any, tmp_path: Path) -> None:
    task = agent.task("mine", ("sleep", "600"))
    await agent.runtime.launch(task, tmp_path, recorder)
    await recorder.started(task.task_id)

    stranger = DockerRuntime(AgentId(agent.agent_id + "-other"))
    try:
        assert await stranger.recover(type(recorder)()) == []
    finally:
        await stranger.close()


async def test_kill_all_kills_and_removes_everything(agent: Any, recorder: Any, tmp_path: Path) -> None:
    tasks = [agent.task(f"all-{i}", ("sleep", "600")) for i in range(3)]
    for t in tasks:
        await agent.runtime.launch(t, tmp_path / t.task_id, recorder)
    for t in tasks:
        await recorder.started(t.task_id)

    removed = await agent.runtime.kill_all()

    assert removed == 3
    assert _containers(agent.agent_id) == {}
    for t in tasks:
        assert (await recorder.ended(t.task_id)).state is TaskState.KILLED
