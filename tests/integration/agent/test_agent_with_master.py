"""The real agent against the real master on 127.0.0.1 (ephemeral ports).

Frameworks are real too (HttpDriver). Tasks run on FakeRuntime where only
the conversation matters, and on WasmRuntime end to end.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edgerm.agent.config import AgentConfig, ResourceCaps
from edgerm.agent.fake import FakeRuntime
from edgerm.agent.main import RunningAgent, start_agent
from edgerm.agent.runtime import Runtime
from edgerm.errors import TransportError
from edgerm.frameworks import Framework, FrameworkDriver, HttpDriver, wasm_task
from edgerm.ids import TaskId
from edgerm.master.main import RunningMaster, start_master
from edgerm.model import Offer, TaskState, TaskStatus
from tests.integration.agent.helpers import WAIT, eventually
from tests.support import admin_headers

WASM_DIR = Path(__file__).resolve().parents[3] / "examples" / "wasm"
FAST = AgentConfig(heartbeat_interval=0.2, executors=frozenset({"wasm"}), resources=ResourceCaps(cpus=2, mem=1024))


async def cluster_state(url: str) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(url + "/api/v1/state", headers=admin_headers(url)) as resp:
        data: dict[str, Any] = await resp.json()
        return data


class Launcher(Framework):
    """Launches the tasks it is given on the first offer that ``on`` takes (any offer by default), and
    records every status."""

    name = "agent-tests"

    def __init__(self, make: Callable[[Offer], list[Any]], on: Callable[[Offer], bool] = lambda _: True) -> None:
        self.make = make
        self.on = on
        self.todo = True
        self.statuses: list[TaskStatus] = []
        self.changed = asyncio.Event()

    async def resource_offers(self, driver: FrameworkDriver, offers: list[Offer]) -> None:
        if not self.todo:
            await driver.decline([o.id for o in offers], refuse_seconds=60)
            return
        first = next((o for o in offers if self.on(o)), None)
        rest = [o.id for o in offers if o is not first]
        if first is not None:
            self.todo = False
            await driver.accept([first.id], self.make(first))
        if rest:
            await driver.decline(rest)

    async def status_update(self, driver: FrameworkDriver, status: TaskStatus) -> None:
        self.statuses.append(status)
        self.changed.set()

    def states(self, task_id: str) -> list[TaskState]:
        return [s.state for s in self.statuses if s.task_id == task_id]

    async def wait_state(self, task_id: str, state: TaskState) -> TaskStatus:
        async with asyncio.timeout(WAIT):
            while True:
                for s in self.statuses:
                    if s.task_id == task_id and s.state is state:
                        return s
                self.changed.clear()
                await self.changed.wait()


@pytest.fixture
async def master() -> AsyncIterator[RunningMaster]:
    async with start_master(allocation_interval=0.05) as running:
        yield running


@pytest.fixture
async def framework_runner(master: RunningMaster) -> AsyncIterator[Callable[[Launcher], HttpDriver]]:
    started: list[tuple[HttpDriver, asyncio.Task[None]]] = []

    def run(fw: Launcher) -> HttpDriver:
        driver = HttpDriver(fw, master.url)
        started.append((driver, asyncio.create_task(driver.run())))
        return driver

    yield run
    for driver, task in started:
        await driver.stop()
        await asyncio.gather(task, return_exceptions=True)


def fake_wasm() -> dict[str, Runtime]:
    return {"wasm": FakeRuntime(executor="wasm")}


def one_task(task_id: str, module: bytes | Path, *args: str, time_limit: float = 0.0) -> Callable[[Offer], list[Any]]:
    def make(offer: Offer) -> list[Any]:
        t = wasm_task(offer, task_id, module, args=args, time_limit=time_limit)
        return [dataclasses.replace(t, task_id=TaskId(task_id))]

    return make


# -- registration --------------------------------------------------------------------


async def test_agent_registers_with_measured_resources_and_attributes(master: RunningMaster, tmp_path: Path) -> None:
    config = AgentConfig(
        name="edge-7",
        heartbeat_interval=0.2,
        executors=frozenset({"wasm"}),
        resources=ResourceCaps(cpus=1, mem=256),
        attributes={"domain": "lab"},
    )
    async with start_agent(master.url, config, tmp_path, runtimes=fake_wasm()) as agent:
        assert agent.service.registered
        state = await cluster_state(master.url)
        [entry] = state["agents"]
        text = str(entry)
        assert agent.agent_id in text and "edge-7" in text and "lab" in text
    # The id is kept: the same work dir registers as the same agent.
    async with start_agent(master.url, config, tmp_path, runtimes=fake_wasm()) as again:
        assert again.agent_id == agent.agent_id


async def test_agent_waits_for_a_master_that_starts_later(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    agent = await start_agent(url, FAST, tmp_path, runtimes=fake_wasm(), register_timeout=None)
    try:
        await asyncio.sleep(0.3)  # a few failed attempts
        assert not agent.service.registered
        async with start_master(port=port, allocation_interval=0.05):
            async with asyncio.timeout(WAIT):
                await agent.wait_registered()
    finally:
        await agent.stop()


async def test_start_agent_gives_up_when_nobody_answers(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(TransportError, match="did not answer"):
        await start_agent(f"http://127.0.0.1:{port}", FAST, tmp_path, runtimes=fake_wasm(), register_timeout=0.3)


# -- tasks ---------------------------------------------------------------------------


async def test_wasm_hello_runs_end_to_end(
    master: RunningMaster, framework_runner: Callable[[Launcher], HttpDriver], tmp_path: Path
) -> None:
    async with start_agent(master.url, FAST, tmp_path):
        fw = Launcher(one_task("hello-1", WASM_DIR / "hello.wat"))
        framework_runner(fw)
        finished = await fw.wait_state("hello-1", TaskState.FINISHED)
        assert fw.states("hello-1") == [TaskState.RUNNING, TaskState.FINISHED]
        assert finished.exit_code == 0
        assert (tmp_path / "tasks" / "hello-1" / "stdout").read_text() == "hello from edgerm\n"


async def test_wasm_trap_and_time_limit_reach_the_framework(
    master: RunningMaster, framework_runner: Callable[[Launcher], HttpDriver], tmp_path: Path
) -> None:
    def make(offer: Offer) -> list[Any]:
        return [
            *one_task("trap-1", WASM_DIR / "trap.wat")(offer),
            *one_task("loop-1", WASM_DIR / "loop.wat", time_limit=0.3)(offer),
        ]

    async with start_agent(master.url, FAST, tmp_path):
        fw = Launcher(make)
        framework_runner(fw)
        trapped = await fw.wait_state("trap-1", TaskState.FAILED)
        assert "unreachable" in trapped.message
        timed_out = await fw.wait_state("loop-1", TaskState.FAILED)
        assert timed_out.reason.value == "TIME_LIMIT"


async def test_kill_reaches_a_running_task(
    master: RunningMaster, framework_runner: Callable[[Launcher], HttpDriver], tmp_path: Path
) -> None:
    async with start_agent(master.url, FAST, tmp_path, runtimes=fake_wasm()) as agent:
        fw = Launcher(one_task("long-1", b"\0asm\1\0\0\0", "hang"))
        driver = framework_runner(fw)
        await fw.wait_state("long-1", TaskState.RUNNING)
        await driver.kill(TaskId("long-1"), agent.agent_id)
        killed = await fw.wait_state("long-1", TaskState.KILLED)
        assert killed.reason.value == "KILLED_BY_FRAMEWORK"
        fake = agent.service.runtimes["wasm"]
        assert isinstance(fake, FakeRuntime)
        assert [t for t, _ in fake.killed] == ["long-1"]
        # Acknowledged, then cleaned up and no longer held.
        await eventually(lambda: fake.cleaned == ["long-1"])
        assert agent.service.core.task_ids() == ()


async def test_a_failing_launch_fails_the_task_not_the_agent(
    master: RunningMaster, framework_runner: Callable[[Launcher], HttpDriver], tmp_path: Path
) -> None:
    def make(offer: Offer) -> list[Any]:
        return [*one_task("bad", b"\0asm", "launch-error")(offer), *one_task("good", b"\0asm", "finish")(offer)]

    async with start_agent(master.url, FAST, tmp_path, runtimes=fake_wasm()):
        fw = Launcher(make)
        framework_runner(fw)
        bad = await fw.wait_state("bad", TaskState.FAILED)
        assert bad.reason.value == "RUNTIME_ERROR" and "scripted launch error" in bad.message
        await fw.wait_state("good", TaskState.FINISHED)


# -- reconnection -----------------------------------------------------------------------


async def test_agent_re_registers_after_a_master_restart_and_delivers_pending_updates(tmp_path: Path) -> None:
    first = await start_master(allocation_interval=0.05)
    port = first.port
    fake = FakeRuntime(executor="wasm")
    agent = await start_agent(first.url, FAST, tmp_path, runtimes={"wasm": fake})
    try:
        fw = Launcher(one_task("t-1", b"\0asm", "hang"))
        driver = HttpDriver(fw, first.url)
        run = asyncio.create_task(driver.run())
        await fw.wait_state("t-1", TaskState.RUNNING)
        await driver.stop(teardown=False)  # the task keeps running
        await asyncio.gather(run, return_exceptions=True)
        await first.stop()
        assert fake.running() == ["t-1"]
        # The task ends while no master answers: its update waits, retried.
        await fake.kill(TaskId("t-1"), 0.0)
        await eventually(lambda: agent.service.core.unacknowledged() == 1)
        async with start_master(port=port, allocation_interval=0.05) as second:
            # A new master does not know the agent: UNKNOWN_AGENT, then REGISTER again.
            await eventually(lambda: agent.service.registered and agent.service.core.unacknowledged() == 0)
            state = await cluster_state(second.url)
            assert [a for a in state["agents"] if agent.agent_id in str(a)]
            assert agent.service.core.task_ids() == ()
            await eventually(lambda: fake.cleaned == ["t-1"])
    finally:
        await agent.stop()


async def test_running_agent_context_cleans_its_temporary_work_dir(master: RunningMaster) -> None:
    agent: RunningAgent
    async with start_agent(master.url, FAST, runtimes=fake_wasm()) as agent:
        work = agent.work_dir
        assert (work / "agent_id").is_file()
    assert not work.exists()
