"""``edgerm kill`` / ``POST /api/v1/tasks/{id}/kill`` against a real master and a real agent: the task's
own framework hears KILLED (reason KILLED_BY_FRAMEWORK); an unknown task is a typed 404."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from edgerm import cli, examples
from edgerm.agent.main import start_agent
from edgerm.frameworks import Framework, FrameworkDriver, HttpDriver, load_module, wasm_task
from edgerm.model import Offer, Reason, TaskState, TaskStatus
from tests.support import eventually

LOOP = load_module(examples.path("wasm/loop.wat"))


class Forever(Framework):
    name = "forever"

    def __init__(self) -> None:
        self.task_id = ""
        self.statuses: list[TaskStatus] = []

    async def resource_offers(self, driver: FrameworkDriver, offers: list[Offer]) -> None:
        for offer in offers:
            if not self.task_id:
                task = wasm_task(offer, "forever", LOOP, resources="cpus:0.1;mem:32")
                self.task_id = task.task_id
                await driver.accept([offer.id], [task])
            else:
                await driver.decline([offer.id], refuse_seconds=60)

    async def status_update(self, driver: FrameworkDriver, status: TaskStatus) -> None:
        self.statuses.append(status)


async def test_an_operator_kill_reaches_the_tasks_framework(master: Any) -> None:
    framework = Forever()
    async with start_agent(master.url):
        driver = HttpDriver(framework, master.url)
        running = asyncio.create_task(driver.run())
        try:
            await eventually(lambda: any(s.state is TaskState.RUNNING for s in framework.statuses), what="RUNNING")
            before = await asyncio.to_thread(cli.post_kill, master.url, framework.task_id)
            assert before["state"] == "RUNNING" and before["id"] == framework.task_id
            await eventually(lambda: framework.statuses[-1].state is TaskState.KILLED, what="KILLED")
            assert framework.statuses[-1].reason is Reason.KILLED_BY_FRAMEWORK
            again = await asyncio.to_thread(cli.post_kill, master.url, framework.task_id)
            assert again["state"] == "KILLED"  # already ended: answered as it is
            with pytest.raises(cli.TaskNotFound, match="no-such-task"):
                await asyncio.to_thread(cli.post_kill, master.url, "no-such-task")
        finally:
            await driver.stop()
            await running
