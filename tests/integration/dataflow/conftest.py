"""A real cluster for the dataflow framework's tests: a master with a broker, real agents
(wasmtime, the operator host), and the framework running a DAG through ``DataflowRun``.

``cluster`` is parametrized over the broker: the master's embedded one, and
Debian's mosquitto started on an ephemeral port (skipped when not installed).
Agents are started and stopped by the test (``cluster.agent(...)``); at
teardown every agent, the master and the broker are stopped, and the test
fails if a run left a task that is not terminal at the master.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from edgerm.agent.config import AgentConfig, ResourceCaps
from edgerm.agent.devices import DeviceDeclaration
from edgerm.agent.docker_spec import LABEL_AGENT
from edgerm.agent.main import RunningAgent, start_agent
from edgerm.frameworks.dataflow import DataflowRun, RunOptions, loads
from edgerm.master.main import RunningMaster, start_master
from edgerm.master.state import MasterConfig
from edgerm.scheduler import Dag
from tests import support
from tests.integration.dataflow_plane.brokers import Mosquitto, mosquitto_binary
from tests.support import admin_headers

WAIT = 20.0


class Cluster:
    def __init__(self, master: RunningMaster, work: Path) -> None:
        self.master = master
        self.work = work
        self.agents: dict[str, RunningAgent] = {}
        self.runs: list[DataflowRun] = []

    @property
    def broker_url(self) -> str:
        return self.master.broker_url

    async def agent(
        self,
        name: str,
        *,
        domain: str = "edge",
        sensor: str = "",
        cpus: float = 1.0,
        mem: float = 512,
        executors: frozenset[str] = frozenset({"wasm"}),
        **attrs: str,
    ) -> RunningAgent:
        devices = (DeviceDeclaration("temperature", sensor),) if sensor else ()
        config = AgentConfig(
            name=name,
            heartbeat_interval=0.2,
            resources=ResourceCaps(cpus=cpus, mem=mem),
            attributes={"domain": domain, **attrs},
            devices=devices,
            executors=executors,
        )
        agent = await start_agent(self.master.url, config, self.work / name)
        self.agents[name] = agent
        return agent

    async def kill_agent(self, name: str) -> None:
        """Stop an agent as a crash would look to the master: it just goes silent."""
        await self.agents.pop(name).stop()

    def run(self, dag: Dag, **options: Any) -> DataflowRun:
        opts = RunOptions(**{"deadline": 15.0, "status_interval": 0, "retry_seconds": 0.5, **options})
        run = DataflowRun(dag, self.master.url, broker_url=self.broker_url, options=opts)
        self.runs.append(run)
        return run

    async def tasks(self) -> list[dict[str, Any]]:
        async with (
            aiohttp.ClientSession() as http,
            http.get(self.master.url + "/api/v1/state", headers=admin_headers(self.master.url)) as resp,
        ):
            tasks: list[dict[str, Any]] = (await resp.json())["tasks"]
            return tasks

    async def close(self) -> None:
        for run in self.runs:
            await run.stop()
        for agent in list(self.agents.values()):
            await agent.stop()
        self.agents.clear()


async def eventually(check: Callable[[], Any], within: float = WAIT, what: str = "") -> None:
    """:func:`tests.support.eventually` with this suite's longer default wait (pipelines start processes)."""
    await support.eventually(check, within, what)


def dag(text: str) -> Dag:
    return loads(text, source="test.yaml")


def agent_containers(agent_id: str) -> list[str]:
    """The ids of the Docker containers an agent started (its label), running or not."""
    import docker  # lazily: only the Docker tests need the SDK

    client = docker.from_env(timeout=30)
    try:
        found = client.api.containers(all=True, filters={"label": f"{LABEL_AGENT}={agent_id}"})
        return [c["Id"] for c in found]
    finally:
        client.close()


def remove_containers(ids: list[str]) -> None:
    import docker

    client = docker.from_env(timeout=30)
    try:
        for cid in ids:
            client.api.remove_container(cid, force=True)
    finally:
        client.close()


@pytest.fixture(scope="module")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    binary = mosquitto_binary()
    if binary is None:
        pytest.skip("mosquitto is not installed (scripts/setup_mosquitto.sh)")
    broker = Mosquitto(binary, tmp_path_factory.mktemp("mosquitto"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


async def _cluster(broker: str, tmp_path: Path) -> AsyncIterator[Cluster]:
    # A killed agent's tasks are UNREACHABLE, then LOST after the unreachable timeout (1 s here).
    config = MasterConfig(unreachable_timeout=1.0)
    async with start_master(
        broker=broker, allocation_interval=0.05, framework_heartbeat=0.5, broker_port=0, config=config
    ) as master:
        cluster = Cluster(master, tmp_path)
        try:
            yield cluster
        finally:
            await cluster.close()

        async def nothing_left() -> bool:
            return not [t for t in (await _state_tasks(master.url)) if t["state"] not in _TERMINAL]

        await eventually(nothing_left, within=10.0, what="every task ended (none left running)")


_TERMINAL = {"FINISHED", "FAILED", "KILLED", "LOST", "ERROR", "DROPPED", "UNKNOWN"}


async def _state_tasks(url: str) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(url + "/api/v1/state", headers=admin_headers(url)) as resp:
        tasks: list[dict[str, Any]] = (await resp.json())["tasks"]
        return tasks


@pytest.fixture(params=["embedded", "mosquitto"])
async def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Cluster]:
    broker = "embedded" if request.param == "embedded" else request.getfixturevalue("mosquitto").url
    async for c in _cluster(broker, tmp_path):
        yield c


@pytest.fixture
async def embedded_cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async for c in _cluster("embedded", tmp_path):
        yield c
