"""Image pull progress end to end: a real master, a real agent and a real framework over HTTP.

The agent's Docker runtime runs on the in-memory engine of the Docker unit
tests (no registry is reachable here), which replays a two-layer pull's
events slowly. The framework must see STARTING updates whose messages count
layers and bytes, at most about one a second, then RUNNING; the master keeps
them in the task's history (``edgerm task``, the dashboard) and forwards
every one of them although the state does not change.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

import aiohttp

from edgerm.agent.config import AgentConfig, ResourceCaps
from edgerm.agent.docker import DockerRuntime
from edgerm.agent.main import start_agent
from edgerm.agent.resources import load_agent_id
from edgerm.frameworks import HttpDriver, docker_task
from edgerm.ids import TaskId
from edgerm.master.main import start_master
from edgerm.model import Offer, TaskState
from tests.integration.agent.test_agent_with_master import Launcher
from tests.support import admin_headers
from tests.unit.agent.pull_events import TWO_LAYERS
from tests.unit.docker.test_docker_runtime import FakeEngine

CONFIG = AgentConfig(heartbeat_interval=0.2, executors=frozenset({"docker"}), resources=ResourceCaps(cpus=2, mem=1024))


async def test_the_framework_sees_the_pull_progress_then_running(tmp_path: Path) -> None:
    engine = FakeEngine()
    engine.pullable["big:1.0"] = TWO_LAYERS
    engine.pull_event_delay = 0.1  # about 2.4 s of pulling
    runtime = DockerRuntime(load_agent_id(tmp_path), engine=engine, mount_workdir=False)

    def make(offer: Offer) -> list[Any]:
        return [dataclasses.replace(docker_task(offer, "big", "big:1.0"), task_id=TaskId("big-1"))]

    async with (
        start_master(allocation_interval=0.05) as master,
        start_agent(master.url, CONFIG, tmp_path, runtimes={"docker": runtime}),
    ):
        fw = Launcher(make)
        driver = HttpDriver(fw, master.url)
        run = asyncio.create_task(driver.run())
        try:
            await fw.wait_state("big-1", TaskState.RUNNING)
            starting = [s for s in fw.statuses if s.task_id == "big-1" and s.state is TaskState.STARTING]
            assert len(starting) >= 2, fw.statuses
            assert len({s.uuid for s in starting}) == len(starting)
            assert all(s.message.startswith("pulling big:1.0") for s in starting)
            assert any("layers" in s.message and "MB" in s.message for s in starting)
            assert fw.states("big-1")[-1] is TaskState.RUNNING

            async with (
                aiohttp.ClientSession(headers=admin_headers(master.url)) as http,
                http.get(f"{master.url}/api/v1/tasks/big-1") as r,
            ):
                task = await r.json()
            messages = [h["message"] for h in task["history"] if h["state"] == "STARTING"]
            assert messages and messages == [s.message for s in reversed(starting)][: len(messages)]

            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "edgerm.cli",
                "--master",
                master.url,
                "task",
                "big-1",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env={**os.environ, "EDGERM_TOKEN": admin_headers(master.url)["Authorization"].removeprefix("Bearer ")},
            )
            out, _ = await asyncio.wait_for(proc.communicate(), 30)
            assert proc.returncode == 0 and "pulling big:1.0" in out.decode()
            await driver.kill(TaskId("big-1"))
            await fw.wait_state("big-1", TaskState.KILLED)
        finally:
            await driver.stop()
            await asyncio.gather(run, return_exceptions=True)
