"""Framework failover, driver side, against the real master and a real agent on 127.0.0.1.

A TCP proxy between the framework and the master cuts the event stream; the
driver reconnects by itself, resubscribes with its id and gets every update
it had not acknowledged. ``framework_id_file`` carries the id across
driver (process) lifetimes; ``failover_timeout`` reaches the master.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from edgerm import messages as m
from edgerm.agent.config import AgentConfig, ResourceCaps
from edgerm.agent.main import RunningAgent, start_agent
from edgerm.errors import ConfigError, WireError
from edgerm.frameworks import Framework, FrameworkDriver, HttpDriver, run, wasm_task
from edgerm.frameworks.http_driver import read_framework_id
from edgerm.ids import FrameworkId, TaskId
from edgerm.master.main import RunningMaster, start_master
from edgerm.model import Offer, TaskState, TaskStatus
from tests.chaos_support import Proxy, sleep_module
from tests.integration.frameworks.conftest import FakeMaster
from tests.support import eventually

AGENT = AgentConfig(heartbeat_interval=0.5, executors=frozenset({"wasm"}), resources=ResourceCaps(cpus=2, mem=512))


class Holder(Framework):
    """Launches one short task, acknowledges nothing unless told, records each stream's updates."""

    name = "failover"
    auto_acknowledge = False

    def __init__(self, module: bytes) -> None:
        self.module = module
        self.launched = False
        self.streams = 0  # SUBSCRIBED events seen
        self.disconnects = 0
        self.updates: list[tuple[int, TaskStatus]] = []  # (stream number, status)

    async def registered(self, driver: FrameworkDriver, framework_id: FrameworkId, master_id: str) -> None:
        self.streams += 1

    async def disconnected(self, driver: FrameworkDriver) -> None:
        self.disconnects += 1

    async def resource_offers(self, driver: FrameworkDriver, offers: list[Offer]) -> None:
        if self.launched:
            with contextlib.suppress(WireError):  # the test may cut the connection while this is in flight
                await driver.decline([o.id for o in offers], refuse_seconds=60)
            return
        self.launched = True
        task = dataclasses.replace(wasm_task(offers[0], "short", self.module), task_id=TaskId("short"))
        await driver.accept([offers[0].id], [task])

    async def status_update(self, driver: FrameworkDriver, status: TaskStatus) -> None:
        self.updates.append((self.streams, status))

    def on_stream(self, n: int) -> list[TaskStatus]:
        return [s for k, s in self.updates if k == n]


@pytest.fixture
async def master() -> AsyncIterator[RunningMaster]:
    async with start_master(allocation_interval=0.05, framework_heartbeat=0.2) as running:
        yield running


@pytest.fixture
async def agent(master: RunningMaster, tmp_path: Path) -> AsyncIterator[RunningAgent]:
    async with start_agent(master.url, AGENT, tmp_path / "agent") as running:
        yield running


async def test_the_driver_reconnects_by_itself_and_gets_every_unacknowledged_update_again(
    master: RunningMaster, agent: RunningAgent
) -> None:
    proxy = await Proxy(master.port).start()
    fw = Holder(sleep_module(0.1))
    assert master.tokens is not None
    token = master.tokens.framework  # the proxy's URL is not the master's: give the credential explicitly
    driver = HttpDriver(fw, proxy.url, backoff_initial=0.05, backoff_max=0.5, missed_heartbeats=3, token=token)
    runner = asyncio.create_task(driver.run())
    try:
        await eventually(lambda: any(s.state is TaskState.FINISHED for s in fw.on_stream(1)), what="FINISHED")
        [finished] = {s.uuid: s for s in fw.on_stream(1) if s.state is TaskState.FINISHED}.values()
        first_id = driver.framework_id
        proxy.cut()
        await eventually(lambda: fw.disconnects == 1, what="the driver noticed the stream was gone")
        await eventually(lambda: proxy.refused >= 3, what="the driver retried (and was refused) several times")
        assert not driver.subscribed and fw.streams == 1
        proxy.heal()
        await eventually(lambda: fw.streams == 2, what="resubscribed")
        assert driver.framework_id == first_id
        await eventually(lambda: finished.uuid in {s.uuid for s in fw.on_stream(2)}, what="the update re-sent")
        assert first_id is not None and master.service.core.framework_active(first_id)
        await driver.acknowledge(finished)
    finally:
        await driver.stop()
        await asyncio.gather(runner, return_exceptions=True)
        await proxy.stop()


class Quiet(Framework):
    name = "quiet"

    def __init__(self) -> None:
        self.ids: list[FrameworkId] = []

    async def registered(self, driver: FrameworkDriver, framework_id: FrameworkId, master_id: str) -> None:
        self.ids.append(framework_id)
        await driver.stop(teardown=False)


async def test_run_keeps_the_framework_id_in_a_file_and_subscribes_as_the_same_framework(
    master: RunningMaster, tmp_path: Path
) -> None:
    id_file = tmp_path / "fw" / "framework_id"
    first = Quiet()
    await asyncio.wait_for(run(first, master.url, framework_id_file=id_file, failover_timeout=120), 10)
    [framework_id] = first.ids
    assert read_framework_id(id_file) == framework_id
    second = Quiet()
    await asyncio.wait_for(run(second, master.url, framework_id_file=id_file), 10)
    assert second.ids == [framework_id]
    assert id_file.read_text().strip() == framework_id


async def test_subscribe_carries_the_failover_timeout(fake_master: FakeMaster) -> None:
    fw = Quiet()
    await asyncio.wait_for(run(fw, fake_master.url, framework_id=FrameworkId("fw-9"), failover_timeout=42.5), 10)
    [sub] = fake_master.subscriptions
    assert isinstance(sub, m.Subscribe)
    assert (sub.framework.id, sub.framework.failover_timeout) == ("fw-9", 42.5)


def test_a_bad_id_file_or_failover_timeout_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "framework_id"
    bad.write_text("not an id\n")
    with pytest.raises(ConfigError, match="is not a framework id"):
        HttpDriver(Quiet(), "http://127.0.0.1:1", framework_id_file=bad)
    with pytest.raises(ConfigError, match="failover_timeout"):
        HttpDriver(Quiet(), "http://127.0.0.1:1", failover_timeout=float("nan"))
    (tmp_path / "empty").write_text("")
    assert read_framework_id(tmp_path / "empty") is None
    assert read_framework_id(tmp_path / "missing") is None
