"""``CoapAgentTransport`` against the real master (and against nobody) on 127.0.0.1.

Commands come from the real core: a heartbeat listing a task the master does
not know makes it send KILL for that task.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import aiocoap
import pytest
from aiocoap import resource

from edgerm import messages as m
from edgerm.agent.coap_transport import CoapAgentTransport
from edgerm.coap_util import Cursor, encode_commands
from edgerm.errors import ConfigError, TransportError, UnknownAgent, WireError
from edgerm.ids import AgentId, TaskId
from edgerm.master.main import RunningMaster, start_master
from tests.integration.coap.helpers import WAIT, agent_info, eventually

AGENT = AgentId("edge-1")


@pytest.fixture
async def transport(master: RunningMaster) -> AsyncIterator[CoapAgentTransport]:
    assert master.coap_url is not None
    t = CoapAgentTransport(master.coap_url)
    try:
        yield t
    finally:
        await t.close()


async def next_command(commands: AsyncIterator[m.AgentEvent]) -> m.AgentEvent:
    async with asyncio.timeout(WAIT):
        return await anext(commands)


def window_size(master: RunningMaster) -> int:
    assert master.coap is not None
    window = master.coap.channels.window(AGENT)
    return -1 if window is None else len(window)


def udp_port_nobody_uses() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_calls_and_typed_errors(transport: CoapAgentTransport) -> None:
    with pytest.raises(UnknownAgent):
        await transport.call(m.AgentHeartbeat(AGENT))
    assert await transport.call(m.RegisterAgent(agent_info(AGENT))) == m.AgentRegistered(AGENT, "master", "")
    assert await transport.call(m.AgentHeartbeat(AGENT)) == m.HeartbeatAck(False)
    assert transport.lanes_opened == 1  # a typed error is an answer: the context is kept


def test_only_coap_urls() -> None:
    with pytest.raises(ConfigError, match="coap://"):
        CoapAgentTransport("http://127.0.0.1:5050")


async def test_nobody_listening_is_a_transport_error() -> None:
    t = CoapAgentTransport(f"coap://127.0.0.1:{udp_port_nobody_uses()}", call_timeout=5.0)
    try:
        with pytest.raises(TransportError):
            await t.call(m.AgentHeartbeat(AGENT))
    finally:
        await t.close()


async def test_a_silent_master_times_out_within_the_call_timeout() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # receives, never answers
        silent.bind(("127.0.0.1", 0))
        t = CoapAgentTransport(f"coap://127.0.0.1:{silent.getsockname()[1]}", call_timeout=0.3)
        try:
            started = time.monotonic()
            with pytest.raises(TransportError, match=r"no answer within 0\.3s"):
                await t.call(m.AgentHeartbeat(AGENT))
            assert time.monotonic() - started < 2.0
            with pytest.raises(TransportError):
                await t.call(m.AgentHeartbeat(AGENT))
            assert t.lanes_opened == 2  # the stuck context was replaced, not reused
        finally:
            await t.close()


async def test_commands_arrive_and_are_confirmed(master: RunningMaster, transport: CoapAgentTransport) -> None:
    await transport.call(m.RegisterAgent(agent_info(AGENT)))
    commands = aiter(transport.commands(AGENT))
    opened = asyncio.ensure_future(anext(commands))
    await eventually(lambda: window_size(master) == 0)  # the observation is open
    await transport.call(m.AgentHeartbeat(AGENT, (TaskId("x1"),)))
    async with asyncio.timeout(WAIT):
        first = await opened
    assert isinstance(first, m.KillCommand) and first.task_id == "x1"
    await transport.call(m.AgentHeartbeat(AGENT, (TaskId("x2"),)))
    second = await next_command(commands)
    assert isinstance(second, m.KillCommand) and second.task_id == "x2"
    # The agent's core took them once it asks for more: then they are confirmed.
    waiting = asyncio.ensure_future(anext(commands))
    await eventually(lambda: window_size(master) == 0)
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)


class ScriptedCommands(resource.ObservableResource):  # type: ignore[misc]
    """A command resource that shows what the test sets: (cursor, commands), and records confirmations."""

    def __init__(self) -> None:
        super().__init__()
        self.cursor = Cursor(7, 0)
        self.commands: list[m.AgentEvent] = []
        self.confirmed: list[Cursor] = []

    def show(self, cursor: Cursor, *commands: m.AgentEvent) -> None:
        self.cursor, self.commands = cursor, list(commands)
        self.updated_state()

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        return aiocoap.Message(payload=encode_commands(self.commands), etag=self.cursor.encode())

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        self.confirmed.append(Cursor.decode(request.payload))
        return aiocoap.Message(code=aiocoap.CHANGED)


async def test_a_repeated_command_is_handed_over_once() -> None:
    scripted = ScriptedCommands()
    site = resource.Site()
    site.add_resource(["agents", AGENT, "commands"], scripted)
    server = await aiocoap.Context.create_server_context(site, bind=("127.0.0.1", 0), transports=["udp6"])
    port = (
        server.request_interfaces[0]
        .token_interface.message_interface.transport.get_extra_info("socket")
        .getsockname()[1]
    )
    t = CoapAgentTransport(f"coap://127.0.0.1:{port}")
    kill = [m.KillCommand(TaskId(f"k{i}")) for i in range(4)]
    try:
        commands = aiter(t.commands(AGENT))
        scripted.show(Cursor(7, 1), kill[0])
        assert await next_command(commands) == kill[0]
        pending = asyncio.ensure_future(anext(commands))
        await eventually(lambda: scripted.confirmed == [Cursor(7, 1)])
        # Not confirmed in time, say: the next notification repeats k0 with k1.
        scripted.show(Cursor(7, 2), kill[0], kill[1])
        async with asyncio.timeout(WAIT):
            assert await pending == kill[1]
        pending = asyncio.ensure_future(anext(commands))
        await eventually(lambda: scripted.confirmed[-1] == Cursor(7, 2))
        # Another master process numbers afresh: its commands are new.
        scripted.show(Cursor(8, 1), kill[2])
        async with asyncio.timeout(WAIT):
            assert await pending == kill[2]
        await commands.aclose()  # type: ignore[attr-defined]
    finally:
        await t.close()
        await server.shutdown()


async def test_the_observation_ends_when_the_agent_registers_again(
    master: RunningMaster, transport: CoapAgentTransport
) -> None:
    await transport.call(m.RegisterAgent(agent_info(AGENT)))
    commands = aiter(transport.commands(AGENT))
    ended = asyncio.ensure_future(anext(commands))
    await eventually(lambda: window_size(master) == 0)
    await transport.call(m.RegisterAgent(agent_info(AGENT)))
    with pytest.raises(StopAsyncIteration):
        async with asyncio.timeout(WAIT):
            await ended


async def test_an_unknown_agent_cannot_observe(transport: CoapAgentTransport) -> None:
    with pytest.raises(UnknownAgent):
        async with asyncio.timeout(WAIT):
            await anext(aiter(transport.commands(AgentId("ghost"))))


async def test_modules_by_hash(master: RunningMaster, transport: CoapAgentTransport) -> None:
    module = b"\0asm\1\0\0\0" + b"\x01" * 5000
    digest = master.service.modules.put(module)
    assert await transport.fetch_module(digest) == module
    with pytest.raises(WireError) as missing:
        await transport.fetch_module("00" * 32)
    assert "no module" in str(missing.value)


async def test_coap_over_tcp_when_asked_for() -> None:
    async with start_master(coap_port=0, coap_tcp=True, insecure=True) as master:
        assert master.coap_tcp_url is not None and master.coap_tcp_url.startswith("coap+tcp://127.0.0.1:")
        t = CoapAgentTransport(master.coap_tcp_url)
        try:
            await t.call(m.RegisterAgent(agent_info(AGENT)))
            assert await t.call(m.AgentHeartbeat(AGENT)) == m.HeartbeatAck(False)
            commands: Any = aiter(t.commands(AGENT))
            pending = asyncio.ensure_future(anext(commands))
            await eventually(lambda: window_size(master) == 0)
            await t.call(m.AgentHeartbeat(AGENT, (TaskId("x1"),)))
            async with asyncio.timeout(WAIT):
                got = await pending
            assert isinstance(got, m.KillCommand) and got.task_id == "x1"
            many = [TaskId(f"task-with-a-long-name-{i:04d}") for i in range(80)]  # a window of several KiB
            await t.call(m.AgentHeartbeat(AGENT, tuple(many)))
            received = [await next_command(commands) for _ in many]
            assert [c.task_id for c in received if isinstance(c, m.KillCommand)] == many
            module = b"\0asm\1\0\0\0" + b"\x02" * 100_000
            assert await t.fetch_module(master.service.modules.put(module)) == module
            await commands.aclose()
        finally:
            await t.close()


async def test_close_ends_an_open_observation(master: RunningMaster, transport: CoapAgentTransport) -> None:
    await transport.call(m.RegisterAgent(agent_info(AGENT)))
    commands = aiter(transport.commands(AGENT))
    pending = asyncio.ensure_future(anext(commands))
    await eventually(lambda: window_size(master) == 0)
    await transport.close()
    with pytest.raises(StopAsyncIteration):
        async with asyncio.timeout(WAIT):
            await pending
