"""Docker tasks through the real master: FINISHED, FAILED with exit code and log tail, KILLED with grace.

Each test runs a real master, a real agent with the Docker runtime and the
framework of conftest.py, and checks what the framework hears, what the
master's cluster state says, and what the engine holds: a container is
removed once its task's end has been reported and acknowledged.
"""

from __future__ import annotations

import asyncio
import time
from functools import partial

import pytest

from edgerm.frameworks import docker_task
from edgerm.model import Reason, TaskInfo, TaskState, TaskStatus
from tests.integration.docker_cluster.conftest import (
    IMAGE,
    Cluster,
    Scheduler,
    container_log,
    containers_of,
    eventually,
)

pytestmark = pytest.mark.docker

NEED = "cpus:0.1;mem:32"
# Both print "ready" once their TERM trap is set, so a kill after it meets the trap.
POLITE = 'trap "exit 0" TERM; echo ready; while true; do sleep 0.1; done'
STUBBORN = 'trap "" TERM; echo ready; while true; do sleep 0.1; done'


def ready(agent_id: str, task_id: str) -> bool:
    return "ready" in container_log(agent_id, task_id)


async def test_a_task_finishes_and_its_container_is_removed(cluster: Cluster, scheduler: Scheduler) -> None:
    agent = await cluster.start_agent()
    offer = await scheduler.docker_offer()
    assert offer.agent_id == agent.agent_id
    task = docker_task(offer, "hello", IMAGE, NEED, args=("sh", "-c", "echo hello from edgerm"))
    await scheduler.launch(offer, task)

    final = await scheduler.final(task.task_id)
    assert (final.state, final.exit_code, final.reason) == (TaskState.FINISHED, 0, Reason.COMMAND_EXITED)
    assert final.agent_id == agent.agent_id
    assert scheduler.states(task.task_id) == [TaskState.RUNNING, TaskState.FINISHED]
    assert await cluster.task_state(task.task_id) == "FINISHED"
    await eventually(lambda: task.task_id not in containers_of(agent.agent_id), "the finished container's removal")


async def test_a_failed_task_reports_its_exit_code_and_last_output(cluster: Cluster, scheduler: Scheduler) -> None:
    agent = await cluster.start_agent()
    offer = await scheduler.docker_offer()
    script = "echo step one; echo 'cannot open /data/input' >&2; exit 3"
    task = docker_task(offer, "broken", IMAGE, NEED, args=("sh", "-c", script))
    await scheduler.launch(offer, task)

    final = await scheduler.final(task.task_id)
    assert (final.state, final.exit_code, final.reason) == (TaskState.FAILED, 3, Reason.COMMAND_EXITED)
    assert final.message.startswith("exited with code 3"), final.message
    assert "step one" in final.message and "cannot open /data/input" in final.message, final.message
    assert await cluster.task_state(task.task_id) == "FAILED"
    await eventually(lambda: not containers_of(agent.agent_id), "the failed container's removal")


async def test_kill_stops_politely_within_the_grace_then_forces(cluster: Cluster, scheduler: Scheduler) -> None:
    agent = await cluster.start_agent()
    offer = await scheduler.docker_offer()
    polite = docker_task(offer, "polite", IMAGE, NEED, args=("sh", "-c", POLITE), kill_grace=20.0)
    stubborn = docker_task(offer, "stubborn", IMAGE, NEED, args=("sh", "-c", STUBBORN), kill_grace=1.0)
    assert scheduler.driver is not None
    await scheduler.driver.accept([offer.id], [polite, stubborn])
    for task in (polite, stubborn):
        await scheduler.status(task.task_id, TaskState.RUNNING)
        await eventually(partial(ready, agent.agent_id, task.task_id), f"{task.name} ready")

    began = time.monotonic()

    async def end_of(task: TaskInfo) -> tuple[TaskStatus, float]:
        status = await scheduler.final(task.task_id)
        return status, time.monotonic() - began

    await asyncio.gather(*(scheduler.driver.kill(t.task_id, agent.agent_id) for t in (polite, stubborn)))
    (gentle, gentle_took), (forced, forced_took) = await asyncio.gather(end_of(polite), end_of(stubborn))

    # The polite task exited on SIGTERM by itself (code 0), long before its 20 s grace ran out.
    assert (gentle.state, gentle.reason, gentle.exit_code) == (TaskState.KILLED, Reason.KILLED_BY_FRAMEWORK, 0)
    assert gentle_took < 20.0
    # The stubborn one ignored SIGTERM and was SIGKILLed (137) once its 1 s grace had passed.
    assert (forced.state, forced.reason, forced.exit_code) == (TaskState.KILLED, Reason.KILLED_BY_FRAMEWORK, 137)
    assert forced_took >= 1.0
    for task in (polite, stubborn):
        assert scheduler.states(task.task_id) == [TaskState.RUNNING, TaskState.KILLED]
        assert await cluster.task_state(task.task_id) == "KILLED"
    await eventually(lambda: not containers_of(agent.agent_id), "the killed containers' removal")
