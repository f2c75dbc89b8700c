"""AgentService over an in-memory transport that plays the master's part.

The transport implements ``AgentTransport`` exactly (typed errors raised,
commands yielded), so these tests provoke what a healthy master rarely does:
refused registrations, UNKNOWN_AGENT in the middle of a conversation, and
``commands_pending`` while the agent believes its stream is open.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TypeVar

from edgerm import messages as m
from edgerm.agent.config import AgentConfig
from edgerm.agent.fake import FakeRuntime
from edgerm.agent.main import start_agent
from edgerm.agent.service import sandbox_name
from edgerm.errors import TransportError, UnknownAgent
from edgerm.ids import AgentId, TaskId
from edgerm.model import DockerSpec, Reason, TaskInfo, TaskState, WasmSpec
from edgerm.resources import Resources
from tests.integration.agent.helpers import eventually

C = TypeVar("C")

CONFIG = AgentConfig(heartbeat_interval=0.05, executors=frozenset({"wasm"}))


class MemoryMaster:
    """An ``AgentTransport`` whose other end is this object."""

    def __init__(self) -> None:
        self.calls: list[m.AgentCall] = []
        self.known = False
        self.refuse_registrations = 0
        self.forget_on_next_update = False
        self.commands_pending = False
        self.subscriptions = 0
        self.queue: asyncio.Queue[m.AgentEvent | None] = asyncio.Queue()
        self.closed = False
        self.ack_first_only = False  # as a master from before batched UPDATEs: ``more`` is not acknowledged

    def of(self, kind: type[C]) -> list[C]:
        return [c for c in self.calls if isinstance(c, kind)]

    def statuses(self, task_id: str) -> list[TaskState]:
        return [s.state for c in self.of(m.StatusUpdate) for s in c.statuses if s.task_id == task_id]

    async def call(self, call: m.AgentCall) -> m.AgentEvent:
        self.calls.append(call)
        if isinstance(call, m.RegisterAgent):
            if self.refuse_registrations > 0:
                self.refuse_registrations -= 1
                raise TransportError("connection refused")
            self.known = True
            return m.AgentRegistered(call.agent.id, "memory-master")
        if not self.known:
            raise UnknownAgent("who are you?")
        if isinstance(call, m.AgentHeartbeat):
            return m.HeartbeatAck(self.commands_pending)
        if isinstance(call, m.StatusUpdate):
            if self.forget_on_next_update:
                self.forget_on_next_update = False
                self.known = False
                raise UnknownAgent("forgotten")
            more = () if self.ack_first_only else tuple((s.task_id, s.uuid) for s in call.more)
            return m.StatusAcknowledged(call.status.task_id, call.status.uuid, more)
        raise AssertionError(f"unexpected call {call!r}")

    async def commands(self, agent_id: AgentId) -> AsyncIterator[m.AgentEvent]:
        if not self.known:
            raise UnknownAgent("who are you?")
        self.subscriptions += 1
        self.commands_pending = False
        while (command := await self.queue.get()) is not None:
            yield command

    async def fetch_module(self, sha256: str) -> bytes:
        raise TransportError("no modules here")

    async def close(self) -> None:
        self.closed = True


def launch(task_id: str, *args: str) -> m.LaunchCommand:
    task = TaskInfo(TaskId(task_id), task_id, AgentId(""), Resources.parse("cpus:1"), WasmSpec(b"\0asm"), args)
    return m.LaunchCommand(task)


async def test_registration_is_retried_until_answered(tmp_path: Path) -> None:
    master = MemoryMaster()
    master.refuse_registrations = 2
    async with start_agent("http://memory", CONFIG, tmp_path, runtimes={"wasm": FakeRuntime()}, transport=master):
        assert len(master.of(m.RegisterAgent)) == 3
        await eventually(lambda: master.subscriptions == 1 and master.of(m.AgentHeartbeat))
    assert master.closed


async def test_launch_and_kill_over_the_command_stream(tmp_path: Path) -> None:
    master = MemoryMaster()
    fake = FakeRuntime()
    async with start_agent("http://memory", CONFIG, tmp_path, runtimes={"wasm": fake}, transport=master) as agent:
        await eventually(lambda: master.subscriptions == 1)
        master.queue.put_nowait(launch("ok", "finish"))
        master.queue.put_nowait(launch("long", "hang"))
        master.queue.put_nowait(launch("long", "hang"))  # a repeated LAUNCH is ignored
        await eventually(lambda: master.statuses("ok") == [TaskState.RUNNING, TaskState.FINISHED])
        await eventually(lambda: master.statuses("long") == [TaskState.RUNNING])
        assert [t.task_id for t in fake.launched] == ["ok", "long"]
        assert (tmp_path / "tasks" / sandbox_name(TaskId("ok"))).is_dir()
        # Heartbeats list what the agent holds.
        await eventually(lambda: any("long" in hb.task_ids for hb in master.of(m.AgentHeartbeat)))
        master.queue.put_nowait(m.KillCommand(TaskId("long"), 0.5))
        master.queue.put_nowait(m.KillCommand(TaskId("ghost"), 0.5))
        await eventually(lambda: master.statuses("long") == [TaskState.RUNNING, TaskState.KILLED])
        await eventually(lambda: master.statuses("ghost") == [TaskState.KILLED])
        await eventually(lambda: agent.service.core.task_ids() == ())
        assert sorted(fake.cleaned) == ["long", "ok"]


async def test_unknown_agent_on_an_update_registers_again_and_resends(tmp_path: Path) -> None:
    master = MemoryMaster()
    async with start_agent("http://memory", CONFIG, tmp_path, runtimes={"wasm": FakeRuntime()}, transport=master):
        await eventually(lambda: master.subscriptions == 1)
        master.forget_on_next_update = True
        master.queue.put_nowait(launch("t", "finish"))
        await eventually(lambda: len(master.of(m.RegisterAgent)) == 2)
        # The new registration carried the task; the refused update went out again at once.
        second = master.of(m.RegisterAgent)[1]
        assert [s.task_id for s in second.tasks] == ["t"]
        await eventually(lambda: master.statuses("t") == [TaskState.RUNNING, TaskState.RUNNING, TaskState.FINISHED])


async def test_commands_pending_reopens_the_stream(tmp_path: Path) -> None:
    master = MemoryMaster()
    async with start_agent("http://memory", CONFIG, tmp_path, runtimes={"wasm": FakeRuntime()}, transport=master):
        await eventually(lambda: master.subscriptions == 1)
        master.commands_pending = True  # the master sees no channel for this agent
        await eventually(lambda: master.subscriptions == 2)
        master.queue.put_nowait(launch("after", "finish"))
        await eventually(lambda: master.statuses("after") == [TaskState.RUNNING, TaskState.FINISHED])


async def test_a_stream_closed_by_the_master_is_reopened(tmp_path: Path) -> None:
    master = MemoryMaster()
    async with start_agent("http://memory", CONFIG, tmp_path, runtimes={"wasm": FakeRuntime()}, transport=master):
        await eventually(lambda: master.subscriptions == 1)
        master.queue.put_nowait(None)  # the master ends the stream
        await eventually(lambda: master.subscriptions == 2)


async def test_a_launch_without_a_runtime_fails_the_task(tmp_path: Path) -> None:
    master = MemoryMaster()
    # The docker runtime is absent: a docker LAUNCH fails at once with EXECUTOR_UNAVAILABLE.
    async with start_agent("http://memory", CONFIG, tmp_path, runtimes={"wasm": FakeRuntime()}, transport=master):
        await eventually(lambda: master.subscriptions == 1)
        task = TaskInfo(TaskId("d"), "d", AgentId(""), Resources.parse("cpus:1"), DockerSpec("busybox"))
        master.queue.put_nowait(m.LaunchCommand(task))
        await eventually(lambda: master.statuses("d") == [TaskState.FAILED])
        [update] = master.of(m.StatusUpdate)
        assert update.status.reason is Reason.EXECUTOR_UNAVAILABLE


async def test_stop_stops_running_tasks(tmp_path: Path) -> None:
    master = MemoryMaster()
    fake = FakeRuntime()
    agent = await start_agent("http://memory", CONFIG, tmp_path, runtimes={"wasm": fake}, transport=master)
    await eventually(lambda: master.subscriptions == 1)
    master.queue.put_nowait(launch("h", "hang"))
    await eventually(lambda: fake.running() == ["h"])
    await agent.stop()
    assert fake.running() == [] and fake.closed and master.closed
    await agent.stop()  # idempotent


async def test_a_kill_right_behind_its_launch_is_not_lost_while_the_launch_record_is_written(tmp_path: Path) -> None:
    master = MemoryMaster()
    fake = FakeRuntime()
    async with start_agent("http://memory", CONFIG, tmp_path, runtimes={"wasm": fake}, transport=master) as agent:
        await eventually(lambda: master.subscriptions == 1)
        master.queue.put_nowait(launch("quick", "hang"))
        master.queue.put_nowait(m.KillCommand(TaskId("quick"), 0.0))  # arrives before the runtime has the task
        await eventually(lambda: master.statuses("quick")[-1:] == [TaskState.KILLED])
        await eventually(lambda: agent.service.core.task_ids() == ())
        assert fake.running() == []
        assert agent.service.journal.live() == (0, 0)


async def test_statuses_that_come_together_go_in_one_update(tmp_path: Path) -> None:
    master = MemoryMaster()
    async with start_agent("http://memory", CONFIG, tmp_path, runtimes={"wasm": FakeRuntime()}, transport=master):
        await eventually(lambda: master.subscriptions == 1)
        for i in range(20):
            master.queue.put_nowait(launch(f"t{i}", "finish"))
        for i in range(20):
            await eventually(lambda i=i: master.statuses(f"t{i}") == [TaskState.RUNNING, TaskState.FINISHED])
        updates = master.of(m.StatusUpdate)
        assert any(u.more for u in updates)  # batched: fewer calls than statuses
        assert len(updates) < 40
        assert all(len(u.statuses) <= 64 for u in updates)


async def test_a_master_that_acknowledges_only_the_first_of_a_batch_still_gets_every_status(tmp_path: Path) -> None:
    master = MemoryMaster()
    master.ack_first_only = True
    config = AgentConfig(heartbeat_interval=0.05, executors=frozenset({"wasm"}))
    async with start_agent("http://memory", config, tmp_path, runtimes={"wasm": FakeRuntime()}, transport=master) as a:
        await eventually(lambda: master.subscriptions == 1)
        for i in range(10):
            master.queue.put_nowait(launch(f"t{i}", "finish"))
        # The unacknowledged rest of each batch is retried until each is acknowledged first in a call of its own.
        every = [f"t{i}" for i in range(10)]
        await eventually(lambda: all(TaskState.FINISHED in master.statuses(t) for t in every), within=30)
        await eventually(lambda: a.service.core.task_ids() == (), within=30)
        for i in range(10):
            got = master.statuses(f"t{i}")
            assert set(got) == {TaskState.RUNNING, TaskState.FINISHED}
            assert got.index(TaskState.RUNNING) < len(got) - 1 - got[::-1].index(TaskState.FINISHED)
