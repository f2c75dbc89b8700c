"""Chaos: ``kill -9`` the master while 200 tasks run on 4 agents, and restart it.

Everything is a real process speaking the real protocol: the master
(``edgerm-master`` with a state dir), four ``edgerm-agent`` processes running
WASM tasks that sleep forever, and a framework in this process (the real
``HttpDriver``, which reconnects and re-subscribes with its id by itself).
The promise checked: after the restart every task is reconciled RUNNING, and
none is killed, lost or duplicated, at the framework and at the agents.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import aiohttp
import pytest

from edgerm.frameworks import load_module, wasm_task
from edgerm.model import Filters, TaskState
from tests.contract.cluster import Recorder
from tests.harness import Cluster, free_port
from tests.integration.chaos.state import master_state
from tests.support import eventually

pytestmark = pytest.mark.slow

TASKS = 200
AGENTS = 4
PER_AGENT = TASKS // AGENTS  # each agent runs them all at once (its wasm threads: 64)
SLEEP = load_module(Path(__file__).resolve().parents[3] / "examples" / "wasm" / "sleep.wat")
AGENT_CONFIG = """heartbeat_interval: 0.5
executors: [wasm]
resources: {mem: 8192}
wasm: {threads: 64, time_limit: 3600}
"""


class Launcher(Recorder):
    """Launches ``TASKS`` sleeping tasks from its offers, then keeps what it is offered."""

    def __init__(self) -> None:
        super().__init__()
        self.launched: list[str] = []
        self.per_agent: dict[str, int] = {}
        self.subscriptions = 0

    async def registered(self, driver, framework_id, master_id) -> None:  # type: ignore[no-untyped-def]
        self.subscriptions += 1
        await super().registered(driver, framework_id, master_id)

    async def resource_offers(self, driver, offers) -> None:  # type: ignore[no-untyped-def]
        await super().resource_offers(driver, offers)
        for offer in offers:
            want = min(TASKS - len(self.launched), PER_AGENT - self.per_agent.get(offer.agent_id, 0))
            if want <= 0:
                continue
            tasks = [wasm_task(offer, f"sleep-{len(self.launched) + i}", SLEEP, "cpus:0.01;mem:8") for i in range(want)]
            self.offers.pop(offer.id, None)
            await driver.accept([offer.id], tasks, Filters(refuse_seconds=0.0))
            self.launched += [t.task_id for t in tasks]
            self.per_agent[offer.agent_id] = self.per_agent.get(offer.agent_id, 0) + want

    def latest(self) -> dict[str, TaskState]:
        states: dict[str, TaskState] = {}
        for s in self.statuses:
            states[s.task_id] = s.state
        return states


async def test_kill_9_master_with_200_running_tasks_and_restart_it(cluster: Cluster, tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    master = await cluster.master_process(port, "--allocation-interval", "0.1")
    for i in range(AGENTS):
        await cluster.agent_process(url, tmp_path / f"agent-{i}", AGENT_CONFIG, "--name", f"agent-{i}")
    fw = Launcher()
    driver = cluster.framework(fw, url)
    await eventually(lambda: len(fw.launched) == TASKS, within=60, what="200 tasks launched")
    await eventually(
        lambda: list(fw.latest().values()) == [TaskState.RUNNING] * TASKS,
        within=60,
        what=lambda: f"200 tasks RUNNING: {Counter(fw.latest().values())}",
    )
    before = len(fw.statuses)

    await master.kill9()  # no goodbye, nothing flushed but what was durable
    await cluster.master_process(port, "--allocation-interval", "0.1")

    async def reconciled() -> bool:
        try:
            state = await master_state(url, cluster.admin_token)
        except aiohttp.ClientError:
            return False  # not listening yet
        tasks = state["tasks"]
        agents = state["agents"]
        assert isinstance(tasks, list) and isinstance(agents, list)
        return (
            len(agents) == AGENTS
            and all(a["state"] == "ACTIVE" for a in agents)
            and sum(1 for t in tasks if t["state"] == "RUNNING") == TASKS
        )

    await eventually(reconciled, within=60, what="every agent back and every task RUNNING at the master")
    await fw.until(lambda: fw.subscriptions >= 2, within=30)  # the driver re-subscribed by itself
    reconciled_at = len(fw.statuses)
    await driver.reconcile()  # implicit: all of mine
    await fw.until(lambda: len(fw.statuses) >= reconciled_at + TASKS, within=30)
    answers = fw.statuses[reconciled_at:]
    assert {s.task_id for s in answers} == set(fw.launched)
    assert all(s.state is TaskState.RUNNING for s in answers), {s.state for s in answers}
    # Nothing ended at the framework: no kill, no loss, no duplicate launch.
    assert not [s for s in fw.statuses[before:] if s.state is not TaskState.RUNNING]
    # And well past the settle period, the agents still hold them all.
    await asyncio.sleep(3.0)
    state = await master_state(url, cluster.admin_token)
    tasks = state["tasks"]
    assert isinstance(tasks, list)
    assert sorted(t["id"] for t in tasks if t["state"] == "RUNNING") == sorted(fw.launched)
