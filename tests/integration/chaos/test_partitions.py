"""Chaos: a frozen agent is a partition, not a death; a frozen master is not the fleet's fault.

Real processes: an ``edgerm-master`` and ``edgerm-agent`` children, frozen
with SIGSTOP and thawed with SIGCONT (a suspended device or host), and a
framework in this process on the real ``HttpDriver``.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from edgerm.frameworks import load_module, wasm_task
from edgerm.model import Filters, Reason, TaskState
from tests.contract.cluster import Recorder
from tests.harness import Cluster, Proc, free_port
from tests.integration.chaos.state import master_state
from tests.support import eventually

pytestmark = pytest.mark.slow

SLEEP = load_module(Path(__file__).resolve().parents[3] / "examples" / "wasm" / "sleep.wat")
HEARTBEAT = 0.3
TASKS = 5


class Runner(Recorder):
    """Launches TASKS sleeping tasks on the first agent it is offered."""

    def __init__(self) -> None:
        super().__init__()
        self.launched: list[str] = []

    async def resource_offers(self, driver, offers) -> None:  # type: ignore[no-untyped-def]
        await super().resource_offers(driver, offers)
        if self.launched or not offers:
            return
        offer = offers[0]
        tasks = [wasm_task(offer, f"sleep-{i}", SLEEP, "cpus:0.01;mem:8") for i in range(TASKS)]
        self.offers.pop(offer.id, None)
        await driver.accept([offer.id], tasks, Filters(refuse_seconds=0.0))
        self.launched = [t.task_id for t in tasks]

    def latest(self) -> dict[str, TaskState]:
        return {s.task_id: s.state for s in self.statuses}

    def all_in(self, state: TaskState) -> bool:
        latest = self.latest()
        return len(latest) == TASKS and all(s is state for s in latest.values())


async def _cluster(cluster: Cluster, tmp_path: Path, *master_flags: str) -> tuple[str, Proc, Proc]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    master = await cluster.master_process(port, *master_flags)
    config = f"heartbeat_interval: {HEARTBEAT}\nexecutors: [wasm]\n"
    agent = await cluster.agent_process(url, tmp_path / "agent", config, "--name", "frozen")
    return url, master, agent


async def _agent_state(url: str, token: str) -> str:
    agents = (await master_state(url, token))["agents"]
    assert isinstance(agents, list) and len(agents) == 1
    return str(agents[0]["state"])


async def test_a_frozen_agent_is_unreachable_then_running_again_with_no_duplicate(
    cluster: Cluster, tmp_path: Path
) -> None:
    url, _, agent = await _cluster(cluster, tmp_path, "--unreachable-timeout", "60")
    fw = Runner()
    cluster.framework(fw, url)
    await eventually(lambda: fw.all_in(TaskState.RUNNING), within=30, what=lambda: f"running: {fw.latest()}")
    agent.send_signal(signal.SIGSTOP)
    try:
        await eventually(lambda: fw.all_in(TaskState.UNREACHABLE), within=10, what=lambda: f"{fw.latest()}")
        unreachable = [s for s in fw.statuses if s.state is TaskState.UNREACHABLE]
        assert {s.reason for s in unreachable} == {Reason.AGENT_UNREACHABLE}
        assert await _agent_state(url, cluster.admin_token) == "UNREACHABLE"
        assert fw.lost == []  # no FAILURE event: a partition is not a death
        await asyncio.sleep(1.0)  # well past 3 heartbeats
    finally:
        agent.send_signal(signal.SIGCONT)
    await eventually(lambda: fw.all_in(TaskState.RUNNING), within=10, what=lambda: f"back: {fw.latest()}")
    back = [s for s in fw.statuses if s.state is TaskState.RUNNING and s.reason is Reason.AGENT_REREGISTERED]
    assert sorted(s.task_id for s in back) == sorted(fw.launched)  # each came back once
    assert await _agent_state(url, cluster.admin_token) == "ACTIVE"
    # No duplicate and nothing killed: the same tasks, still running, and no other.
    await asyncio.sleep(1.0)
    tasks = (await master_state(url, cluster.admin_token))["tasks"]
    assert isinstance(tasks, list)
    assert sorted(t["id"] for t in tasks if t["state"] == "RUNNING") == sorted(fw.launched)
    assert not [s for s in fw.statuses if s.state.terminal]


async def test_an_agent_frozen_past_the_unreachable_timeout_is_lost_and_told_to_kill_on_return(
    cluster: Cluster, tmp_path: Path
) -> None:
    url, master, agent = await _cluster(cluster, tmp_path, "--unreachable-timeout", "1.5")
    fw = Runner()
    cluster.framework(fw, url)
    await eventually(lambda: fw.all_in(TaskState.RUNNING), within=30, what=lambda: f"running: {fw.latest()}")
    agent.send_signal(signal.SIGSTOP)
    try:
        await eventually(lambda: fw.all_in(TaskState.LOST), within=15, what=lambda: f"{fw.latest()}")
        assert fw.lost, "FAILURE reaches the framework once the agent is lost"
    finally:
        agent.send_signal(signal.SIGCONT)

    def killed_on_return() -> bool:
        log = master.output()
        return all(f"killing task {t} on agent" in log for t in fw.launched)

    await eventually(killed_on_return, within=15, what="the returning agent is told to kill its LOST tasks")
    await eventually(lambda: _agent_state(url, cluster.admin_token), within=10)  # it re-registered
    tasks = (await master_state(url, cluster.admin_token))["tasks"]
    assert isinstance(tasks, list) and not [t for t in tasks if t["state"] == "RUNNING"]


async def test_a_frozen_master_does_not_declare_its_agents_unreachable(cluster: Cluster, tmp_path: Path) -> None:
    url, master, _ = await _cluster(cluster, tmp_path, "--unreachable-timeout", "60")
    fw = Runner()
    cluster.framework(fw, url)
    await eventually(lambda: fw.all_in(TaskState.RUNNING), within=30, what=lambda: f"running: {fw.latest()}")
    seen = len(fw.statuses)
    master.send_signal(signal.SIGSTOP)
    await asyncio.sleep(3.0)  # 10 heartbeat intervals: a suspended host, a long pause
    master.send_signal(signal.SIGCONT)
    await asyncio.sleep(3.0)  # the agents answer again within the settle period
    assert [s for s in fw.statuses[seen:] if s.state is not TaskState.RUNNING] == []
    assert await _agent_state(url, cluster.admin_token) == "ACTIVE"
    assert "stalled" in master.output()
