"""HttpAgentTransport against the real master, and against small aiohttp peers
on 127.0.0.1 for replies a correct master never sends (untyped errors, split
records, corrupt modules)."""

from __future__ import annotations

import asyncio
import hashlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from edgerm import messages as m
from edgerm import wire
from edgerm.agent.http_transport import HttpAgentTransport
from edgerm.auth.principal import Role
from edgerm.errors import TransportError, UnknownAgent, WireError
from edgerm.ids import AgentId, TaskId
from edgerm.master.main import RunningMaster, start_master
from edgerm.model import AgentInfo, TaskState, TaskStatus
from edgerm.resources import Resources
from tests.integration.agent.helpers import eventually

AGENT = AgentId("agent-t")
INFO = AgentInfo(AGENT, "t.test", Resources.parse("cpus:1;mem:128"), {"executors": frozenset({"wasm"})}, 5.0)


@pytest.fixture
async def master() -> AsyncIterator[RunningMaster]:
    async with start_master(allocation_interval=0.05) as running:
        yield running


@pytest.fixture
async def transport(master: RunningMaster) -> AsyncIterator[HttpAgentTransport]:
    t = HttpAgentTransport(master.url + "/", token=master.issue_token(Role.AGENT, agent_id=AGENT))
    yield t
    await t.close()


Route = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def peer() -> AsyncIterator[Callable[[str, str, Route], Awaitable[str]]]:
    """Start a one-route aiohttp server on an ephemeral port; returns its URL."""
    runners: list[web.AppRunner] = []

    async def serve(method: str, path: str, handler: Route) -> str:
        app = web.Application()
        app.router.add_route(method, path, handler)
        runner = web.AppRunner(app, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    yield serve
    for runner in runners:
        await runner.cleanup()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def test_calls_and_typed_errors(transport: HttpAgentTransport) -> None:
    with pytest.raises(UnknownAgent):
        await transport.call(m.AgentHeartbeat(AGENT))
    with pytest.raises(UnknownAgent):
        async for _ in transport.commands(AGENT):
            pass
    registered = await transport.call(m.RegisterAgent(INFO))
    assert isinstance(registered, m.AgentRegistered) and registered.agent_id == AGENT
    ack = await transport.call(m.AgentHeartbeat(AGENT, ()))
    assert ack == m.HeartbeatAck(commands_pending=False)
    status = TaskStatus(TaskId("nobody"), AGENT, TaskState.KILLED, uuid="u1")
    reply = await transport.call(m.StatusUpdate(AGENT, status))
    assert reply == m.StatusAcknowledged(TaskId("nobody"), "u1")


async def test_command_stream_opens_and_ends_with_the_master(master: RunningMaster) -> None:
    transport = HttpAgentTransport(master.url, token=master.issue_token(Role.AGENT, agent_id=AGENT))
    try:
        await transport.call(m.RegisterAgent(INFO))
        received: list[m.AgentEvent] = []

        async def listen() -> None:
            async for command in transport.commands(AGENT):
                received.append(command)

        listener = asyncio.create_task(listen())
        await eventually(lambda: master.service.gauges()["edgerm_agent_channels"] == 1)
        await master.stop()  # the master ends every agent channel: the iterator ends
        async with asyncio.timeout(5):
            await listener
        assert received == []
    finally:
        await transport.close()


async def test_fetch_module_from_the_master(master: RunningMaster, transport: HttpAgentTransport) -> None:
    module = b"\0asm\1\0\0\0"
    sha = master.service.modules.put(module)
    assert await transport.fetch_module(sha) == module
    with pytest.raises(WireError, match="no module"):
        await transport.fetch_module("0" * 64)


async def test_nobody_listening_is_a_transport_error() -> None:
    transport = HttpAgentTransport(f"http://127.0.0.1:{free_port()}", connect_timeout=1.0)
    try:
        with pytest.raises(TransportError):
            await transport.call(m.AgentHeartbeat(AGENT))
        with pytest.raises(TransportError):
            async for _ in transport.commands(AGENT):
                pass
        with pytest.raises(TransportError):
            await transport.fetch_module("0" * 64)
    finally:
        await transport.close()


async def test_untyped_and_unreadable_replies_are_transport_errors(
    peer: Callable[[str, str, Route], Awaitable[str]],
) -> None:
    async def bad_gateway(request: web.Request) -> web.Response:
        return web.Response(status=502, text="upstream is down")

    async def garbage(request: web.Request) -> web.Response:
        return web.Response(body=b"\xff\xff\xff", content_type="application/x-protobuf")

    for handler, needle in ((bad_gateway, "HTTP 502 upstream is down"), (garbage, "unreadable reply")):
        url = await peer("POST", "/api/v1/agent", handler)
        transport = HttpAgentTransport(url)
        try:
            with pytest.raises(TransportError, match=needle):
                await transport.call(m.AgentHeartbeat(AGENT))
        finally:
            await transport.close()


async def test_records_split_across_writes_are_reassembled(peer: Callable[[str, str, Route], Awaitable[str]]) -> None:
    commands = [m.KillCommand(TaskId(f"t{i}"), 1.5) for i in range(3)]
    data = b"".join(wire.frame(wire.encode_agent_event(c)) for c in commands)

    async def stream(request: web.Request) -> web.StreamResponse:
        call = wire.decode_agent_call(await request.read())
        assert call == m.SubscribeAgent(AGENT)
        response = web.StreamResponse(headers={"Content-Type": "application/x-protobuf"})
        await response.prepare(request)
        for i in range(0, len(data), 5):  # records cut at awkward places
            await response.write(data[i : i + 5])
            await asyncio.sleep(0)
        await response.write_eof()
        return response

    transport = HttpAgentTransport(await peer("POST", "/api/v1/agent", stream))
    try:
        got = [c async for c in transport.commands(AGENT)]
    finally:
        await transport.close()
    assert got == commands


async def test_a_corrupt_module_is_refused(peer: Callable[[str, str, Route], Awaitable[str]]) -> None:
    async def module(request: web.Request) -> web.Response:
        return web.Response(body=b"not the module you asked for", content_type="application/wasm")

    transport = HttpAgentTransport(await peer("GET", "/api/v1/modules/{sha}", module))
    try:
        with pytest.raises(TransportError, match="does not match"):
            await transport.fetch_module(hashlib.sha256(b"the real one").hexdigest())
    finally:
        await transport.close()
