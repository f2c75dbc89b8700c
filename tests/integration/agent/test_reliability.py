"""An agent keeps its promises through its own restart and a master it cannot reach.

Real master, real agent, real WebAssembly tasks, real framework (HttpDriver),
all on 127.0.0.1. A TCP proxy between agent and master cuts the link.
"""

from __future__ import annotations

import asyncio
import dataclasses
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from edgerm.agent.config import AgentConfig, ResourceCaps
from edgerm.agent.dataflow.runtime import DataflowRuntime
from edgerm.agent.main import RunningAgent, start_agent
from edgerm.agent.wasm import WasmRuntime
from edgerm.frameworks import HttpDriver, wasm_task
from edgerm.ids import TaskId
from edgerm.master.main import RunningMaster, start_master
from edgerm.model import Offer, Reason, RestartPolicy, TaskState
from tests.chaos_support import Proxy, sleep_module
from tests.contract.cluster import TRANSPORTS, agent_url
from tests.integration.agent.helpers import eventually
from tests.integration.agent.test_agent_with_master import Launcher

# Heartbeats every second: the master waits 3 s before it declares the agent lost,
# far more than an in-process restart takes.
CONFIG = AgentConfig(heartbeat_interval=1.0, executors=frozenset({"wasm"}), resources=ResourceCaps(cpus=4, mem=1024))
LONG = sleep_module(60.0)


def _join(master: RunningMaster) -> str:
    """The master's join token: an agent behind a proxy cannot find it by the master's URL."""
    assert master.tokens is not None
    return master.tokens.join


@pytest.fixture
async def master() -> AsyncIterator[RunningMaster]:
    async with start_master(allocation_interval=0.05, coap_port=0) as running:
        yield running


@pytest.fixture
async def framework(master: RunningMaster) -> AsyncIterator[Callable[[Launcher], HttpDriver]]:
    started: list[tuple[HttpDriver, asyncio.Task[None]]] = []

    def run(fw: Launcher) -> HttpDriver:
        driver = HttpDriver(fw, master.url)
        started.append((driver, asyncio.create_task(driver.run())))
        return driver

    yield run
    for driver, task in started:
        await driver.stop()
        await asyncio.gather(task, return_exceptions=True)


def tasks(*specs: tuple[str, bytes, RestartPolicy]) -> Callable[[Offer], list[Any]]:
    def make(offer: Offer) -> list[Any]:
        out = []
        for task_id, module, policy in specs:
            t = wasm_task(offer, task_id, module, restart_policy=policy)
            out.append(dataclasses.replace(t, task_id=TaskId(task_id)))
        return out

    return make


def wasm_running(agent: RunningAgent) -> list[TaskId]:
    runtime = agent.service.runtimes["wasm"]
    assert isinstance(runtime, DataflowRuntime) and isinstance(runtime.inner, WasmRuntime)
    return runtime.inner.running()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_wasm_tasks_follow_their_restart_policy_across_an_agent_restart(
    master: RunningMaster, framework: Callable[[Launcher], HttpDriver], tmp_path: Path, transport: str
) -> None:
    url = agent_url(master, transport)
    fw = Launcher(tasks(("never", LONG, RestartPolicy.NEVER), ("again", LONG, RestartPolicy.ON_AGENT_RESTART)))
    driver = framework(fw)
    async with start_agent(url, CONFIG, tmp_path) as first:
        await fw.wait_state("never", TaskState.RUNNING)
        await fw.wait_state("again", TaskState.RUNNING)
        assert sorted(wasm_running(first)) == ["again", "never"]
        # Stop only once the master's acknowledgements are in: a RUNNING still unacknowledged at the restart
        # is what the relaunched task reports again (its first RUNNING "says all there is"), not a second one.
        await eventually(lambda: first.service.core.unacknowledged() == 0, what="the RUNNING updates acknowledged")
    # The process is gone, and its WebAssembly tasks with it. The same work dir starts again.
    async with start_agent(url, CONFIG, tmp_path) as second:
        assert second.agent_id == first.agent_id
        failed = await fw.wait_state("never", TaskState.FAILED)
        assert failed.reason is Reason.AGENT_RESTARTED
        await eventually(lambda: len(fw.states("again")) == 2, what="the relaunched task's RUNNING")
        again = [s for s in fw.statuses if s.task_id == "again"][-1]
        assert (again.state, again.reason) == (TaskState.RUNNING, Reason.AGENT_RESTARTED)
        assert wasm_running(second) == ["again"]
        await driver.kill(TaskId("again"), second.agent_id)
        await fw.wait_state("again", TaskState.KILLED)
        await eventually(lambda: second.service.core.task_ids() == (), what="both tasks settled")
    assert fw.states("never") == [TaskState.RUNNING, TaskState.FAILED]
    assert fw.states("again") == [TaskState.RUNNING, TaskState.RUNNING, TaskState.KILLED]
    assert second.service.journal.live() == (0, 0)


async def test_a_task_asking_to_be_restarted_runs_again_while_no_master_answers(
    master: RunningMaster, framework: Callable[[Launcher], HttpDriver], tmp_path: Path
) -> None:
    fw = Launcher(tasks(("again", LONG, RestartPolicy.ON_AGENT_RESTART)))
    framework(fw)
    async with start_agent(master.url, CONFIG, tmp_path):
        await fw.wait_state("again", TaskState.RUNNING)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        nobody = f"http://127.0.0.1:{s.getsockname()[1]}"
    # Module bytes come from the work dir: nothing is fetched from anyone.
    async with start_agent(nobody, CONFIG, tmp_path, register_timeout=None) as alone:
        await eventually(lambda: wasm_running(alone) == ["again"], what="the task relaunched")
        assert not alone.service.registered


async def test_updates_made_while_the_master_is_unreachable_are_delivered_in_order(
    master: RunningMaster, framework: Callable[[Launcher], HttpDriver], tmp_path: Path
) -> None:
    names = [f"t{n}" for n in range(4)]
    fw = Launcher(tasks(*[(name, sleep_module(1.0 + 0.2 * n), RestartPolicy.NEVER) for n, name in enumerate(names)]))
    framework(fw)
    proxy = await Proxy(master.port).start()
    try:
        async with start_agent(proxy.url, CONFIG, tmp_path, join_token=_join(master)) as agent:
            for name in names:
                await fw.wait_state(name, TaskState.RUNNING)
            proxy.cut()
            core = agent.service.core
            await eventually(
                lambda: all(core.status_of(TaskId(n)).state is TaskState.FINISHED for n in names),  # type: ignore[union-attr]
                what="every task finished on the agent",
            )
            assert all(TaskState.FINISHED not in fw.states(n) for n in names)  # the master heard nothing
            assert core.unacknowledged() == len(names)
            assert agent.service.journal.live()[1] == len(names)  # kept in the work dir too
            proxy.heal()
            for name in names:
                await fw.wait_state(name, TaskState.FINISHED)
            await eventually(lambda: core.unacknowledged() == 0 and core.task_ids() == ())
        for name in names:
            assert fw.states(name) == [TaskState.RUNNING, TaskState.FINISHED]
    finally:
        await proxy.stop()


async def test_updates_kept_while_the_master_is_unreachable_survive_an_agent_restart(
    master: RunningMaster, framework: Callable[[Launcher], HttpDriver], tmp_path: Path
) -> None:
    fw = Launcher(tasks(("short", sleep_module(0.5), RestartPolicy.NEVER)))
    framework(fw)
    proxy = await Proxy(master.port).start()
    try:
        async with start_agent(proxy.url, CONFIG, tmp_path, join_token=_join(master)) as agent:
            await fw.wait_state("short", TaskState.RUNNING)
            proxy.cut()
            await eventually(lambda: agent.service.core.status_of(TaskId("short")).state is TaskState.FINISHED)  # type: ignore[union-attr]
        # Restarted while the link is still down: the FINISHED update comes back from the journal.
        async with start_agent(proxy.url, CONFIG, tmp_path, register_timeout=None, join_token=_join(master)) as again:
            assert again.service.core.unacknowledged() == 1
            proxy.heal()
            done = await fw.wait_state("short", TaskState.FINISHED)
            assert done.reason is Reason.COMMAND_EXITED
            await eventually(lambda: again.service.core.task_ids() == ())
        assert fw.states("short") == [TaskState.RUNNING, TaskState.FINISHED]
    finally:
        await proxy.stop()
