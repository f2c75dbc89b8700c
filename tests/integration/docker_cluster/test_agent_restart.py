"""Agent restarts with Docker tasks, through the real master.

Stopping an agent (``RunningAgent.stop``, what SIGTERM does) leaves its
containers running; a new agent on the same work dir (so the same agent
id) re-attaches them and re-registers holding them. The master and the
framework keep seeing the task as it truly is, a container is never run
twice, and a container of a task the master does not know, or considers
ended, is killed and removed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from pathlib import Path

import pytest

from edgerm.agent.docker import DockerRuntime
from edgerm.agent.runtime import RuntimeReport, TaskStarted
from edgerm.agent.service import sandbox_name
from edgerm.frameworks import docker_task
from edgerm.ids import AgentId, FrameworkId, TaskId
from edgerm.model import DockerSpec, Reason, TaskInfo, TaskState
from edgerm.resources import Resources
from tests.integration.docker_cluster.conftest import (
    HEARTBEAT,
    IMAGE,
    WAIT,
    Cluster,
    Scheduler,
    containers,
    containers_of,
    eventually,
)

pytestmark = pytest.mark.docker

NEED = "cpus:0.1;mem:32"
# Runs until the test creates the file ``stop`` in the task's sandbox (its workdir on the host).
UNTIL_STOP = 'trap "exit 143" TERM; while [ ! -f /edgerm/sandbox/stop ]; do sleep 0.05; done; echo done'
LOOP = 'trap "exit 143" TERM; while true; do sleep 0.1; done'


def sandbox(work_dir: Path, task_id: TaskId) -> Path:
    return work_dir / "tasks" / sandbox_name(task_id)


async def start_orphan(agent_id: AgentId, workdir: Path) -> TaskId:
    """Start a container of ``agent_id`` for a task no master ever heard of, as a crashed agent may leave."""
    task = TaskInfo(
        task_id=TaskId(f"orphan-{uuid.uuid4().hex[:8]}"),
        name="orphan",
        agent_id=agent_id,
        resources=Resources.parse(NEED),
        container=DockerSpec(image=IMAGE),
        args=("sh", "-c", LOOP),
        framework_id=FrameworkId("a-framework-long-gone"),
    )
    reports: list[RuntimeReport] = []
    started = asyncio.Event()

    def report(r: RuntimeReport) -> None:
        reports.append(r)
        started.set()

    runtime = DockerRuntime(agent_id, mount_workdir=False)
    try:
        await runtime.launch(task, workdir, report)
        await asyncio.wait_for(started.wait(), WAIT)
        assert isinstance(reports[0], TaskStarted), reports
    finally:
        await runtime.close()  # stops watching only: the container keeps running
    return task.task_id


async def test_restart_reattaches_the_running_container_and_kills_an_unknown_one(
    cluster: Cluster, scheduler: Scheduler, tmp_path: Path
) -> None:
    first = await cluster.start_agent("a")
    agent_id = first.agent_id
    offer = await scheduler.docker_offer()
    task = docker_task(offer, "waiter", IMAGE, NEED, args=("sh", "-c", UNTIL_STOP))
    await scheduler.launch(offer, task)
    await scheduler.status(task.task_id, TaskState.RUNNING)
    container_id, status = (await containers(agent_id))[task.task_id]
    assert status == "running"

    await first.stop()
    assert (await containers(agent_id)) == {task.task_id: (container_id, "running")}, "stopping must not kill tasks"
    orphan = await start_orphan(agent_id, tmp_path / "orphan")

    second = await cluster.start_agent("a")
    assert second.agent_id == agent_id
    # The orphan is killed and removed; the task's container is re-attached, not started again.
    await eventually(lambda: orphan not in containers_of(agent_id), "the orphan's removal")
    assert (await containers(agent_id)) == {task.task_id: (container_id, "running")}
    assert await cluster.task_state(task.task_id) == "RUNNING"
    assert await cluster.task_state(orphan) == ""  # the master never adopted it

    (sandbox(second.work_dir, task.task_id) / "stop").touch()
    final = await scheduler.final(task.task_id)
    assert (final.state, final.exit_code) == (TaskState.FINISHED, 0)
    assert scheduler.states(task.task_id) == [TaskState.RUNNING, TaskState.FINISHED]
    assert await cluster.task_state(task.task_id) == "FINISHED"
    await eventually(lambda: not containers_of(agent_id), "the finished container's removal")


async def test_an_end_while_the_agent_was_away_is_reported_then_the_container_removed(
    cluster: Cluster, scheduler: Scheduler
) -> None:
    first = await cluster.start_agent("a")
    agent_id = first.agent_id
    offer = await scheduler.docker_offer()
    task = docker_task(offer, "waiter", IMAGE, NEED, args=("sh", "-c", UNTIL_STOP))
    await scheduler.launch(offer, task)
    await scheduler.status(task.task_id, TaskState.RUNNING)
    await first.stop()

    (sandbox(first.work_dir, task.task_id) / "stop").touch()
    # No agent has acknowledged the end yet, so the exited container is kept.
    await eventually(lambda: containers_of(agent_id).get(task.task_id, ("", ""))[1] == "exited", "the exit")

    await cluster.start_agent("a")
    final = await scheduler.final(task.task_id)
    assert (final.state, final.exit_code, final.reason) == (TaskState.FINISHED, 0, Reason.COMMAND_EXITED)
    assert scheduler.states(task.task_id) == [TaskState.RUNNING, TaskState.FINISHED]
    await eventually(lambda: not containers_of(agent_id), "the container's removal once its end was acknowledged")


async def test_a_task_lost_while_its_agent_was_away_is_killed_when_it_returns(
    cluster: Cluster, scheduler: Scheduler
) -> None:
    first = await cluster.start_agent("a", heartbeat=0.2)
    agent_id = first.agent_id
    offer = await scheduler.docker_offer()
    task = docker_task(offer, "waiter", IMAGE, NEED, args=("sh", "-c", UNTIL_STOP))
    await scheduler.launch(offer, task)
    await scheduler.status(task.task_id, TaskState.RUNNING)

    await first.stop()
    lost = await scheduler.final(task.task_id)  # 3 missed heartbeats: UNREACHABLE; LOST after the timeout
    assert (lost.state, lost.reason) == (TaskState.LOST, Reason.AGENT_LOST)
    assert (await containers(agent_id))[task.task_id][1] == "running"

    await cluster.start_agent("a", heartbeat=0.2)
    # The master considers the task ended: the returning agent is told to kill it.
    await eventually(lambda: not containers_of(agent_id), "the lost task's container's removal")
    assert await cluster.task_state(task.task_id) == "LOST"
    assert scheduler.states(task.task_id) == [TaskState.RUNNING, TaskState.UNREACHABLE, TaskState.LOST]


async def test_sigterm_of_edgerm_agent_leaves_its_containers_running(
    cluster: Cluster, scheduler: Scheduler, tmp_path: Path
) -> None:
    work_dir = cluster.work_dir("cli")
    agent_id = cluster.agent_id("cli")
    config = tmp_path / "agent.yaml"
    config.write_text(f"name: cli-agent\nwork_dir: {work_dir}\nheartbeat_interval: {HEARTBEAT}\nexecutors: [docker]\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "edgerm.agent.main", "--master", cluster.master.url, "--config", str(config)),
        env={**os.environ, "EDGERM_JOIN_TOKEN": cluster.master.tokens.join},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        offer = await scheduler.offer(agent_id)
        task = docker_task(offer, "waiter", IMAGE, NEED, args=("sh", "-c", UNTIL_STOP))
        await scheduler.launch(offer, task)
        await scheduler.status(task.task_id, TaskState.RUNNING)
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(WAIT):
            _, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert (await containers(agent_id))[task.task_id][1] == "running"

    await cluster.start_agent("cli")  # the same work dir: recovers the container
    (sandbox(work_dir, task.task_id) / "stop").touch()
    assert (await scheduler.final(task.task_id)).state is TaskState.FINISHED
    assert scheduler.states(task.task_id) == [TaskState.RUNNING, TaskState.FINISHED]
    await eventually(lambda: not containers_of(agent_id), "the container's removal")
