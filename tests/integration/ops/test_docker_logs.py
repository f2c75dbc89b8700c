"""A Docker task's output through the master: the agent reads its container's stdout and stderr from the engine.

Real master, real agent with the Docker runtime, real containers (the
docker_cluster suite's fixtures, which remove every container they made).
"""

from __future__ import annotations

import aiohttp
import pytest

from edgerm.frameworks import docker_task
from edgerm.model import TaskState
from tests.integration.docker_cluster.conftest import (  # fixtures, used by name
    IMAGE,
    Cluster,
    Scheduler,
    cluster,
    container_log,
    containers_of,
    docker_required,
    eventually,
    scheduler,
)
from tests.support import admin_headers

__all__ = ["cluster", "docker_required", "scheduler"]

pytestmark = pytest.mark.docker

TALK = 'trap "exit 0" TERM; echo ready; echo "to stderr" >&2; while true; do sleep 0.1; done'


async def test_a_running_containers_output_comes_through_the_master(cluster: Cluster, scheduler: Scheduler) -> None:
    agent = await cluster.start_agent()
    offer = await scheduler.docker_offer()
    task = docker_task(offer, "talker", IMAGE, "cpus:0.1;mem:32", args=("sh", "-c", TALK))
    await scheduler.launch(offer, task)
    await scheduler.status(task.task_id, TaskState.RUNNING)
    await eventually(lambda: "ready" in container_log(agent.agent_id, task.task_id), "the container's first line")
    async with aiohttp.ClientSession(headers=admin_headers(cluster.master.url)) as http:
        url = f"{cluster.master.url}/api/v1/tasks/{task.task_id}/logs"
        async with http.get(url, params={"stream": "stdout"}) as r:
            assert r.status == 200, await r.text()
            out = await r.json()
        async with http.get(url, params={"stream": "stderr", "offset": "-100"}) as r:
            assert r.status == 200, await r.text()
            err = await r.json()
    assert out["data"] == "ready\n" and out["size"] == 6
    assert err["data"] == "to stderr\n"
    assert scheduler.driver is not None
    await scheduler.driver.kill(task.task_id, agent.agent_id)
    assert (await scheduler.final(task.task_id)).state is TaskState.KILLED
    await eventually(lambda: task.task_id not in containers_of(agent.agent_id), "the killed container's removal")
