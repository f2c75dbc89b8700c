"""Fixtures for the Docker runtime's integration tests: a real engine, real containers.

Needs a Docker engine and the local test image (``scripts/setup_docker.sh``
makes both). Without them the tests skip on a developer's machine, but fail
in CI (``CI`` set): CI must run them for real.

Every test gets its own agent id (``test-docker-<hex>``), so its containers
carry their own ``edgerm.agent`` label; teardown removes them whatever
happened, and the session fails if any container of a test agent is left.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

import docker
import pytest

from edgerm.agent.docker import DockerRuntime
from edgerm.agent.docker_engine import DockerEngine
from edgerm.agent.docker_spec import LABEL_AGENT, container_name
from edgerm.agent.runtime import RuntimeReport, TaskEnded, TaskStarted
from edgerm.ids import AgentId, FrameworkId, TaskId
from edgerm.model import DockerSpec, Network, PortMapping, PullPolicy, TaskInfo
from edgerm.resources import Resources
from tests.support import docker_unavailable, require_docker

IMAGE = os.environ.get("EDGERM_TEST_IMAGE", "edgerm-test/busybox:latest")
AGENT_PREFIX = "test-docker-"
WAIT = 30.0  # seconds a test waits for a report before failing


_WHY_NOT = docker_unavailable(IMAGE)


@pytest.fixture(autouse=True)
def docker_required() -> None:
    """Skip without Docker on a developer's machine; fail in CI, which must run these tests."""
    require_docker(_WHY_NOT)


def _test_containers() -> list[tuple[str, str]]:
    """(name and status, agent label) of every container a test agent left."""
    client = docker.from_env(timeout=30)
    try:
        found = client.containers.list(all=True, filters={"label": LABEL_AGENT})
        return [
            (c.id, c.labels.get(LABEL_AGENT, ""))
            for c in found
            if c.labels.get(LABEL_AGENT, "").startswith(AGENT_PREFIX)
        ]
    finally:
        client.close()


@pytest.fixture(scope="session", autouse=True)
def no_container_left() -> Iterator[None]:
    """Fail the session if a test agent's container survived its test (and remove it)."""
    yield
    if _WHY_NOT:
        return
    left = _test_containers()
    client = docker.from_env(timeout=30)
    try:
        for cid, _ in left:
            client.api.remove_container(cid, force=True)
    finally:
        client.close()
    assert not left, f"containers left behind by tests: {left}"


class Recorder:
    """The ``report`` callback: keeps every report and lets a test await one."""

    def __init__(self) -> None:
        self.reports: list[RuntimeReport] = []
        self._changed = asyncio.Event()

    def __call__(self, report: RuntimeReport) -> None:
        self.reports.append(report)
        self._changed.set()

    def of(self, task_id: TaskId) -> list[RuntimeReport]:
        return [r for r in self.reports if r.task_id == task_id]

    async def wait(self, pred: Callable[[RuntimeReport], bool]) -> RuntimeReport:
        """The first report matching ``pred``, waiting up to ``WAIT`` seconds for it."""

        async def first() -> RuntimeReport:
            while True:
                for r in self.reports:
                    if pred(r):
                        return r
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(first(), WAIT)

    async def started(self, task_id: TaskId) -> TaskStarted:
        r = await self.wait(lambda r: isinstance(r, TaskStarted) and r.task_id == task_id)
        assert isinstance(r, TaskStarted)
        return r

    async def ended(self, task_id: TaskId) -> TaskEnded:
        r = await self.wait(lambda r: isinstance(r, TaskEnded) and r.task_id == task_id)
        assert isinstance(r, TaskEnded)
        return r


@dataclass(frozen=True, slots=True)
class Agent:
    """One test agent: its id, a factory of runtimes for it, and of its tasks."""

    agent_id: AgentId
    runtime: DockerRuntime
    new_runtime: Callable[..., DockerRuntime]

    def task(
        self,
        name: str,
        args: tuple[str, ...],
        resources: str = "cpus:0.2;mem:32",
        *,
        image: str = IMAGE,
        network: Network = Network.BRIDGE,
        ports: tuple[PortMapping, ...] = (),
        pull: PullPolicy = PullPolicy.IF_NOT_PRESENT,
        env: dict[str, str] | None = None,
    ) -> TaskInfo:
        return TaskInfo(
            task_id=TaskId(f"{name}-{uuid.uuid4().hex[:8]}"),
            name=name,
            agent_id=self.agent_id,
            resources=Resources.parse(resources),
            container=DockerSpec(image=image, network=network, port_mappings=ports, pull_policy=pull),
            args=args,
            env=env or {},
            framework_id=FrameworkId("fw-test"),
        )

    async def wait_for_output(self, task_id: TaskId, text: str) -> None:
        """Wait until the task's container log shows ``text`` (the task is past its set-up)."""
        name = container_name(self.agent_id, task_id)

        def logs() -> str:
            client = docker.from_env()
            try:
                return str(client.containers.get(name).logs().decode())
            finally:
                client.close()

        deadline = time.monotonic() + WAIT
        while text not in await asyncio.to_thread(logs):
            assert time.monotonic() < deadline, f"{text!r} never appeared in the log of {name}"
            await asyncio.sleep(0.05)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def agent() -> AsyncIterator[Agent]:
    """A fresh agent id and a runtime for it; every container it made is removed at teardown."""
    agent_id = AgentId(f"{AGENT_PREFIX}{uuid.uuid4().hex[:12]}")
    made: list[DockerRuntime] = []

    def new_runtime(**kwargs: object) -> DockerRuntime:
        kwargs.setdefault("port_host_ip", "127.0.0.1")
        rt = DockerRuntime(agent_id, **kwargs)  # type: ignore[arg-type]
        made.append(rt)
        return rt

    try:
        yield Agent(agent_id, new_runtime(), new_runtime)
    finally:
        for rt in made:
            await rt.close()
        engine = DockerEngine()
        await asyncio.to_thread(engine.remove_labelled, agent_id)
        await asyncio.to_thread(engine.close)
        lingering = [t.name for t in threading.enumerate() if t.name.startswith("edgerm-docker-events")]
        assert not lingering, f"event threads left running: {lingering}"
