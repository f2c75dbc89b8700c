"""The durability contract of MasterService over a real SQLite store.

A gate in front of the store holds the writer thread, so the tests can see
what the master does while a write is not yet durable: it answers nothing
that promises durability, and it sends no launch, update or offer that
depends on it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from edgerm import messages as m
from edgerm.errors import Unavailable
from edgerm.ids import AgentId, FrameworkId, TaskId
from edgerm.master.handlers import Handlers
from edgerm.master.registry import Changes, Registry
from edgerm.master.service import MasterService, ServiceOptions
from edgerm.master.state import MasterConfig
from edgerm.master.store import SqliteStore
from edgerm.model import AgentInfo, FrameworkInfo, TaskInfo, TaskState, TaskStatus, WasmSpec
from edgerm.resources import Resources

AGENT = AgentInfo(AgentId("a1"), "a1.test", Resources.parse("cpus:2;mem:1024"), {"executors": frozenset({"wasm"})}, 1.0)
MODULE = b"\0asm\1\0\0\0"


class GatedStore(SqliteStore):
    """A SqliteStore whose writes wait for ``open()`` (the writer thread blocks in ``apply``)."""

    def __init__(self, state_dir: Path) -> None:
        super().__init__(state_dir)
        self.gate = threading.Event()
        self.gate.set()
        self.fail = False

    def apply(self, batches: Sequence[Changes]) -> None:
        self.gate.wait(10)
        if self.fail:
            raise OSError(28, "No space left on device")
        super().apply(batches)


@pytest.fixture
async def service(tmp_path: Path) -> AsyncIterator[MasterService]:
    options = ServiceOptions(allocation_interval=3600, framework_heartbeat=3600)
    svc = MasterService(MasterConfig(master_id="m1"), options, store=GatedStore(tmp_path))
    await svc.start()
    yield svc
    svc.store.gate.set()  # type: ignore[attr-defined]
    await svc.stop()


async def _ready(handlers: Handlers) -> tuple[str, m.Offers]:
    await handlers.agent_call(m.RegisterAgent(AGENT, (), "i1"))
    stream = await handlers.subscribe(m.Subscribe(FrameworkInfo(FrameworkId("f1"), "fw")))
    assert isinstance(await anext(stream), m.Subscribed)
    offers = await anext(stream)
    assert isinstance(offers, m.Offers)
    return stream.stream_id, offers


def _task(offer: m.Offers) -> TaskInfo:
    return TaskInfo(
        TaskId("t1"), "t1", offer.offers[0].agent_id, Resources.parse("cpus:1;mem:64"), WasmSpec(module=MODULE)
    )


async def test_accept_is_answered_and_the_launch_sent_only_once_the_task_is_durable(service: MasterService) -> None:
    handlers = Handlers(service)
    stream_id, offers = await _ready(handlers)
    commands = handlers.agent_commands(AgentId("a1"))
    gate: threading.Event = service.store.gate  # type: ignore[attr-defined]
    gate.clear()
    accept = asyncio.create_task(
        handlers.scheduler_call(m.Accept(FrameworkId("f1"), (offers.offers[0].id,), (_task(offers),)), stream_id)
    )
    await asyncio.sleep(0.2)
    assert not accept.done(), "ACCEPT answered before its task was durable"
    assert service.commands_pending(AgentId("a1")) is False, "LAUNCH sent before the task was durable"
    gate.set()
    await asyncio.wait_for(accept, 5)
    launch = await asyncio.wait_for(anext(commands), 5)
    assert isinstance(launch, m.LaunchCommand) and launch.task.task_id == "t1"
    registry = service.store.load()
    [row] = registry.tasks
    assert row.info.task_id == "t1" and row.status.state is TaskState.STAGING


async def test_an_update_is_acknowledged_only_once_durable(service: MasterService) -> None:
    handlers = Handlers(service)
    stream_id, offers = await _ready(handlers)
    await handlers.scheduler_call(m.Accept(FrameworkId("f1"), (offers.offers[0].id,), (_task(offers),)), stream_id)
    gate: threading.Event = service.store.gate  # type: ignore[attr-defined]
    gate.clear()
    update = asyncio.create_task(
        handlers.agent_call(
            m.StatusUpdate(AgentId("a1"), TaskStatus(TaskId("t1"), AgentId("a1"), TaskState.RUNNING, uuid="u1"))
        )
    )
    await asyncio.sleep(0.2)
    assert not update.done(), "UPDATE acknowledged before it was durable"
    gate.set()
    assert await asyncio.wait_for(update, 5) == m.StatusAcknowledged(TaskId("t1"), "u1")
    registry: Registry = service.store.load()
    [row] = registry.tasks
    assert row.status.state is TaskState.RUNNING and not row.acknowledged  # the framework has not acked it yet


async def test_a_registry_that_cannot_be_written_refuses_durable_calls(service: MasterService) -> None:
    handlers = Handlers(service)
    stream_id, offers = await _ready(handlers)
    service.store.fail = True  # type: ignore[attr-defined]
    with pytest.raises(Unavailable, match="cannot write its registry"):
        await handlers.scheduler_call(m.Accept(FrameworkId("f1"), (offers.offers[0].id,), (_task(offers),)), stream_id)
    assert service.commands_pending(AgentId("a1")) is False  # nothing launched that is not recorded
    # The master keeps answering what needs no durability.
    assert await handlers.agent_call(m.AgentHeartbeat(AgentId("a1"))) == m.HeartbeatAck(False)
