"""Fixtures for Docker tasks end to end: a real master, real agents, a real framework, real containers.

Needs a Docker engine and the local test image (``scripts/setup_docker.sh``
makes both). Without them the tests skip on a developer's machine but fail
in CI (``CI`` set), which must run them for real.

- :class:`Cluster` (fixture ``cluster``) holds the master
  (``start_master``) and starts agents (``start_agent``) in test-owned work
  dirs whose agent ids start with :data:`AGENT_PREFIX`, so every container
  a test makes carries an ``edgerm.agent`` label that teardown finds.
- :class:`Scheduler` (fixture ``scheduler``) is a framework run by the real
  ``HttpDriver``: it holds the offers it gets, launches what a test asks on
  them, and records every status update so a test can wait for one.
- Teardown, whatever happened: the framework is torn down, agents are
  stopped (which leaves containers running, by design), then every
  container of a test agent is removed by label.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import aiohttp
import docker
import pytest

from edgerm.agent.config import AgentConfig
from edgerm.agent.docker_spec import LABEL_AGENT, LABEL_TASK
from edgerm.agent.main import RunningAgent, start_agent
from edgerm.agent.resources import AGENT_ID_FILE
from edgerm.agent.runtime import Runtime
from edgerm.frameworks import Framework, FrameworkDriver, HttpDriver, supports
from edgerm.ids import AgentId, OfferId, TaskId
from edgerm.master.main import RunningMaster, start_master
from edgerm.master.state import MasterConfig
from edgerm.model import Filters, Offer, TaskInfo, TaskState, TaskStatus
from tests.support import admin_headers, docker_unavailable, require_docker

IMAGE = os.environ.get("EDGERM_TEST_IMAGE", "edgerm-test/busybox:latest")
AGENT_PREFIX = "test-cluster-"
WAIT = 30.0  # seconds a test waits for something before failing
HEARTBEAT = 1.0  # agents' heartbeat interval: lost after 3 missed, so a restart fits well within


_WHY_NOT = docker_unavailable(IMAGE)


@pytest.fixture(autouse=True)
def docker_required() -> None:
    """Skip without Docker on a developer's machine; fail in CI, which must run these tests."""
    require_docker(_WHY_NOT)


# -- containers, seen from the engine -------------------------------------------------


def containers_of(agent_id: str) -> dict[str, tuple[str, str]]:
    """task id -> (container id, status) of every container labelled with the agent (blocking)."""
    client = docker.from_env(timeout=30)
    try:
        # One listing call (no per-container inspect that a removal could race).
        found = client.api.containers(all=True, filters={"label": f"{LABEL_AGENT}={agent_id}"})
        return {c["Labels"].get(LABEL_TASK, ""): (c["Id"], c["State"]) for c in found}
    finally:
        client.close()


async def containers(agent_id: str) -> dict[str, tuple[str, str]]:
    """:func:`containers_of`, off the event loop."""
    return await asyncio.to_thread(containers_of, agent_id)


def container_log(agent_id: str, task_id: str) -> str:
    """The output of the task's container so far, empty if it has none (blocking)."""
    client = docker.from_env(timeout=30)
    try:
        found = client.api.containers(
            all=True, filters={"label": [f"{LABEL_AGENT}={agent_id}", f"{LABEL_TASK}={task_id}"]}
        )
        return "".join(client.api.logs(c["Id"]).decode("utf-8", "replace") for c in found)
    finally:
        client.close()


def _remove_test_containers() -> list[str]:
    """Remove every container of a test agent of this module; return their names."""
    client = docker.from_env(timeout=30)
    try:
        found = client.api.containers(all=True, filters={"label": LABEL_AGENT})
        left = [c for c in found if c["Labels"].get(LABEL_AGENT, "").startswith(AGENT_PREFIX)]
        for c in left:
            with contextlib.suppress(docker.errors.NotFound):  # removed meanwhile by its agent
                client.api.remove_container(c["Id"], force=True)
        return [str(c["Names"]) for c in left]
    finally:
        client.close()


async def eventually(pred: Callable[[], Any], what: str, within: float = WAIT) -> Any:
    """Poll a blocking predicate (in a thread) until it returns something true."""
    deadline = time.monotonic() + within
    while True:
        value = await asyncio.to_thread(pred)
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


# -- the cluster ------------------------------------------------------------------------


class Cluster:
    """The master of one test and the agents it started."""

    def __init__(self, master: RunningMaster, root: Path) -> None:
        self.master = master
        self.root = root
        self.agents: list[RunningAgent] = []

    def work_dir(self, name: str) -> Path:
        """A work dir whose agent id is a test agent's (``AGENT_PREFIX``...), made once per name."""
        path = self.root / name
        if not (path / AGENT_ID_FILE).exists():
            path.mkdir(parents=True, exist_ok=True)
            (path / AGENT_ID_FILE).write_text(f"{AGENT_PREFIX}{uuid.uuid4().hex[:12]}\n", encoding="ascii")
        return path

    def agent_id(self, name: str) -> AgentId:
        return AgentId((self.work_dir(name) / AGENT_ID_FILE).read_text(encoding="ascii").strip())

    async def start_agent(
        self,
        name: str = "docker-agent",
        *,
        executors: Iterable[str] | None = ("docker",),
        runtimes: dict[str, Runtime] | None = None,
        heartbeat: float = HEARTBEAT,
    ) -> RunningAgent:
        """A real agent in work dir ``name`` (the same name again: the same agent id, as after a restart)."""
        config = AgentConfig(
            name=name,
            heartbeat_interval=heartbeat,
            executors=frozenset(executors) if executors is not None else None,
        )
        agent = await start_agent(self.master.url, config, self.work_dir(name), runtimes=runtimes)
        self.agents.append(agent)
        return agent

    async def task_state(self, task_id: TaskId) -> str:
        """The task's state in the master's cluster state, ``GET /api/v1/state`` ("" if unknown)."""
        async with (
            aiohttp.ClientSession() as http,
            http.get(self.master.url + "/api/v1/state", headers=admin_headers(self.master.url)) as resp,
        ):
            tasks = (await resp.json())["tasks"]
        return next((str(t["state"]) for t in tasks if t["id"] == task_id), "")


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    # A silent agent is UNREACHABLE after 3 heartbeats, then LOST after the unreachable timeout (1 s here).
    config = MasterConfig(unreachable_timeout=1.0)
    async with start_master(allocation_interval=0.05, framework_heartbeat=0.5, config=config) as master:
        running = Cluster(master, tmp_path)
        try:
            yield running
        finally:
            for agent in running.agents:
                await agent.stop()
            left = await asyncio.to_thread(_remove_test_containers)
            if left:
                print(f"removed containers left by the test: {left}")


# -- the framework ------------------------------------------------------------------------


class Scheduler(Framework):
    """A framework a test steers: it holds offers and records every status update."""

    name = "docker-cluster-test"

    def __init__(self) -> None:
        self.offers: dict[OfferId, Offer] = {}
        self.updates: list[TaskStatus] = []
        self.driver: HttpDriver | None = None
        self._changed = asyncio.Event()

    # callbacks

    async def resource_offers(self, driver: FrameworkDriver, offers: list[Offer]) -> None:
        self.offers.update((o.id, o) for o in offers)
        self._changed.set()

    async def offer_rescinded(self, driver: FrameworkDriver, offer_id: OfferId) -> None:
        self.offers.pop(offer_id, None)

    async def status_update(self, driver: FrameworkDriver, status: TaskStatus) -> None:
        self.updates.append(status)
        self._changed.set()

    # steering

    async def _until(self, pred: Callable[[], Any], what: str) -> Any:
        async def wait() -> Any:
            while not (value := pred()):
                self._changed.clear()
                await self._changed.wait()
            return value

        try:
            return await asyncio.wait_for(wait(), WAIT)
        except TimeoutError:
            raise AssertionError(f"timed out waiting for {what}; updates: {self.updates}") from None

    async def offer(self, agent_id: AgentId | None = None) -> Offer:
        """Take a held offer (of ``agent_id`` if given), waiting for one."""

        def pick() -> Offer | None:
            return next((o for o in self.offers.values() if agent_id in (None, o.agent_id)), None)

        offer: Offer = await self._until(pick, f"an offer of {agent_id or 'any agent'}")
        del self.offers[offer.id]
        return offer

    async def docker_offer(self) -> Offer:
        """Take an offer of an agent that advertises the docker executor."""
        offer: Offer = await self._until(
            lambda: next((o for o in self.offers.values() if supports(o, "docker")), None), "a docker offer"
        )
        del self.offers[offer.id]
        return offer

    async def launch(self, offer: Offer, task: TaskInfo) -> TaskInfo:
        assert self.driver is not None
        await self.driver.accept([offer.id], [task], Filters(refuse_seconds=0))
        return task

    def states(self, task_id: TaskId) -> list[TaskState]:
        return [s.state for s in self.updates if s.task_id == task_id]

    async def status(self, task_id: TaskId, state: TaskState) -> TaskStatus:
        """The first update of the task in ``state``, waiting for it."""
        status: TaskStatus = await self._until(
            lambda: next((s for s in self.updates if s.task_id == task_id and s.state is state), None),
            f"{state.value} of {task_id}",
        )
        return status

    async def final(self, task_id: TaskId) -> TaskStatus:
        """The task's first terminal update, waiting for it."""
        status: TaskStatus = await self._until(
            lambda: next((s for s in self.updates if s.task_id == task_id and s.state.terminal), None),
            f"the end of {task_id}",
        )
        return status


@pytest.fixture
async def scheduler(cluster: Cluster) -> AsyncIterator[Scheduler]:
    """The framework, subscribed to the cluster's master; torn down at the end."""
    fw = Scheduler()
    fw.driver = HttpDriver(fw, cluster.master.url, backoff_initial=0.05, backoff_max=0.5)
    running = asyncio.create_task(fw.driver.run())
    try:
        deadline = time.monotonic() + WAIT
        while fw.driver.framework_id is None:
            assert not running.done(), "the driver stopped before subscribing"
            assert time.monotonic() < deadline, "the framework did not subscribe"
            await asyncio.sleep(0.01)
        yield fw
    finally:
        await fw.driver.stop()
        async with asyncio.timeout(WAIT):
            await asyncio.gather(running, return_exceptions=True)
