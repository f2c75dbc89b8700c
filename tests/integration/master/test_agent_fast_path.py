"""The agents' HTTP fast path (edgerm.master.agent_http), tried with raw bytes on real sockets.

A secured master; each test opens raw TCP connections, writes requests byte for byte as a client
could, and parses the replies with llhttp (httptools). What is checked: calls served in order on
one connection (pipelined too), anything unusual handed to aiohttp and still answered, typed
refusals (closing the connection when the body was not read), the command stream's chunks and
its end, and that nothing stays counted once a connection is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any

import httptools
import pytest

from edgerm import messages as m
from edgerm import wire
from edgerm.auth.principal import Role
from edgerm.ids import AgentId, TaskId
from edgerm.master.agent_http import MAX_HEAD, MAX_WAITING, AgentFastPath
from edgerm.master.main import RunningMaster, start_master
from edgerm.model import AgentInfo
from edgerm.resources import Resources
from tests.integration.master.conftest import MAX_BODY, WAIT, agent_token


class Reply:
    """One HTTP reply as llhttp read it."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.headers: dict[str, str] = {}
        self.body = bytearray()
        self.complete = asyncio.Event()
        self.records: asyncio.Queue[m.AgentEvent] = asyncio.Queue()
        self._reader = wire.RecordReader()

    def error(self) -> m.ErrorEvent:
        return wire.decode_error(bytes(self.body))

    def event(self) -> m.AgentEvent:
        return wire.decode_agent_event(bytes(self.body))

    def feed(self, data: bytes) -> None:
        self.body += data
        if self.headers.get("transfer-encoding") == "chunked":
            for record in self._reader.feed(data):
                self.records.put_nowait(wire.decode_agent_event(record))


class Raw:
    """A raw HTTP/1.1 connection: what is written goes as is; replies are parsed as they come."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.replies: asyncio.Queue[Reply] = asyncio.Queue()  # each as soon as its head is read
        self.closed = asyncio.Event()
        self._reader = reader
        self._parser = httptools.HttpResponseParser(self)
        self._reply: Reply | None = None
        self._headers: dict[str, str] = {}
        self._task = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, master: RunningMaster) -> Raw:
        reader, writer = await asyncio.open_connection(master.host, master.port)
        return cls(reader, writer)

    async def _read(self) -> None:
        try:
            while data := await self._reader.read(65536):
                self._parser.feed_data(data)
        except ConnectionError:
            pass
        finally:
            self.closed.set()

    # llhttp's callbacks
    def on_headers_complete(self) -> None:
        self._reply = Reply(self._parser.get_status_code())
        self._reply.headers, self._headers = self._headers, {}
        self.replies.put_nowait(self._reply)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers[name.decode().lower()] = value.decode()

    def on_body(self, body: bytes) -> None:
        assert self._reply is not None
        self._reply.feed(body)

    def on_message_complete(self) -> None:
        assert self._reply is not None
        self._reply.complete.set()

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def reply(self) -> Reply:
        """The next complete reply."""
        reply = await asyncio.wait_for(self.replies.get(), WAIT)
        await asyncio.wait_for(reply.complete.wait(), WAIT)
        return reply

    async def wait_closed(self) -> None:
        await asyncio.wait_for(self.closed.wait(), WAIT)

    async def close(self) -> None:
        self.writer.transport.abort()  # at once, whatever it had left to send
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


def request(body: bytes, token: str, *, path: str = "/api/v1/agent", extra: str = "", length: bool = True) -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: master\r\nContent-Type: application/x-protobuf\r\n"
    head += f"Authorization: Bearer {token}\r\n" if token else ""
    head += f"Content-Length: {len(body)}\r\n" if length else ""
    return (head + extra + "\r\n").encode() + body


class Agent:
    """An agent's calls, as bytes, with its credential."""

    def __init__(self, master: RunningMaster, agent_id: str) -> None:
        self.id = AgentId(agent_id)
        self.token = agent_token(master, agent_id) if master.security is not None else ""
        self.info = AgentInfo(
            id=self.id,
            hostname=f"{agent_id}.test",
            resources=Resources.parse("cpus:2;mem:1024"),
            attributes={"executors": frozenset({"wasm"})},
        )

    def register(self, **kw: Any) -> bytes:
        return request(wire.encode_agent_call(m.RegisterAgent(self.info, ())), self.token, **kw)

    def heartbeat(self, **kw: Any) -> bytes:
        return request(wire.encode_agent_call(m.AgentHeartbeat(self.id, ())), self.token, **kw)

    def subscribe(self, **kw: Any) -> bytes:
        return request(wire.encode_agent_call(m.SubscribeAgent(self.id)), self.token, **kw)


@pytest.fixture
async def raw(master: RunningMaster) -> AsyncIterator[Callable[[], Any]]:
    opened: list[Raw] = []

    async def connect() -> Raw:
        connection = await Raw.open(master)
        opened.append(connection)
        return connection

    yield connect
    for connection in opened:
        await connection.close()


def fast(master: RunningMaster) -> AgentFastPath:
    assert master.agent_http is not None
    return master.agent_http


async def until(check: Callable[[], bool]) -> None:
    async with asyncio.timeout(WAIT):
        while not check():  # noqa: ASYNC110 (the master's counters have no event to wait on)
            await asyncio.sleep(0.01)


async def registered(master: RunningMaster, raw: Callable[[], Any], agent_id: str = "fast-1") -> tuple[Agent, Raw]:
    agent = Agent(master, agent_id)
    connection = await raw()
    connection.send(agent.register())
    assert isinstance((await connection.reply()).event(), m.AgentRegistered)
    return agent, connection


async def test_pipelined_calls_are_answered_in_order_on_the_fast_path(
    master: RunningMaster, raw: Callable[[], Any]
) -> None:
    agent = Agent(master, "fast-1")
    connection = await raw()
    handed = fast(master).handed_over
    # REGISTER waits for the registry in a task; the heartbeats behind it wait their turn
    connection.send(agent.register() + agent.heartbeat() + agent.heartbeat())
    replies = [await connection.reply() for _ in range(3)]
    assert [r.status for r in replies] == [200, 200, 200]
    assert isinstance(replies[0].event(), m.AgentRegistered)
    assert all(isinstance(r.event(), m.HeartbeatAck) for r in replies[1:])
    assert replies[1].headers["content-type"] == "application/x-protobuf"
    assert "date" in replies[1].headers
    assert fast(master).handed_over == handed
    assert len(fast(master).connections) >= 1


async def test_a_request_split_byte_by_byte_is_served(master: RunningMaster, raw: Callable[[], Any]) -> None:
    agent, connection = await registered(master, raw)
    for byte in agent.heartbeat():
        connection.send(bytes([byte]))
        await connection.writer.drain()
    assert isinstance((await connection.reply()).event(), m.HeartbeatAck)


async def test_other_routes_on_an_agent_connection_go_to_aiohttp(master: RunningMaster, raw: Callable[[], Any]) -> None:
    agent, connection = await registered(master, raw)
    handed = fast(master).handed_over
    admin = master.auth_headers(Role.ADMIN)["Authorization"]
    connection.send(
        f"GET /api/v1/state?agent={agent.id} HTTP/1.1\r\nHost: m\r\nAuthorization: {admin}\r\n\r\n".encode()
    )
    state = await connection.reply()
    assert state.status == 200 and state.headers["content-type"].startswith("application/json")
    assert agent.id in state.body.decode()
    assert fast(master).handed_over == handed + 1
    connection.send(agent.heartbeat())  # aiohttp serves the agent API too, for the rest of the connection
    assert isinstance((await connection.reply()).event(), m.HeartbeatAck)


@pytest.mark.parametrize(
    "variant",
    ["chunked", "http/1.0", "expect", "query", "gzip"],
)
async def test_unusual_agent_requests_are_served_by_aiohttp(
    master: RunningMaster, raw: Callable[[], Any], variant: str
) -> None:
    agent, connection = await registered(master, raw)
    body = wire.encode_agent_call(m.AgentHeartbeat(agent.id, ()))
    if variant == "chunked":
        data = request(
            b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body),
            agent.token,
            length=False,
            extra="Transfer-Encoding: chunked\r\n",
        )
    elif variant == "http/1.0":
        data = agent.heartbeat().replace(b"HTTP/1.1", b"HTTP/1.0", 1)
    elif variant == "expect":
        data = agent.heartbeat(extra="Expect: 100-continue\r\n")
    elif variant == "gzip":  # aiohttp inflates it
        data = request(gzip.compress(body), agent.token, extra="Content-Encoding: gzip\r\n")
    else:
        data = agent.heartbeat(path="/api/v1/agent?x=1")
    handed = fast(master).handed_over
    connection.send(data)
    reply = await connection.reply()
    while reply.status == 100:  # the interim reply to Expect
        reply = await connection.reply()
    assert reply.status == 200, reply.body
    assert isinstance(reply.event(), m.HeartbeatAck)
    assert fast(master).handed_over == handed + 1


async def test_an_oversized_body_is_refused_unread_and_the_connection_closed(
    master: RunningMaster, raw: Callable[[], Any]
) -> None:
    agent, connection = await registered(master, raw)
    connection.send(request(b"", agent.token, length=False, extra=f"Content-Length: {MAX_BODY + 1}\r\n"))
    reply = await connection.reply()
    assert reply.status == 413 and reply.error().code == "TOO_LARGE"
    await connection.wait_closed()


async def test_refusals_before_the_body_skip_it_and_the_connection_serves_on(
    master: RunningMaster, raw: Callable[[], Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "edgerm.master.http")
    agent, connection = await registered(master, raw)
    heartbeat = wire.encode_agent_call(m.AgentHeartbeat(agent.id, ()))
    # no credential: 401, its body skipped unread, then the next request on the same connection
    connection.send(request(heartbeat, "") + agent.heartbeat())
    reply = await connection.reply()
    assert reply.status == 401 and reply.error().code == "UNAUTHENTICATED"
    assert reply.headers["www-authenticate"].startswith("Bearer")
    assert isinstance((await connection.reply()).event(), m.HeartbeatAck)
    # a framework's credential may not use the agent API: 403, logged with who tried
    framework = master.auth_headers(Role.FRAMEWORK)["Authorization"].removeprefix("Bearer ")
    connection.send(request(heartbeat, framework) + agent.heartbeat())
    reply = await connection.reply()
    assert reply.status == 403 and reply.error().code == "FORBIDDEN"
    assert isinstance((await connection.reply()).event(), m.HeartbeatAck)
    assert any("refused POST /api/v1/agent for framework" in r.getMessage() for r in caplog.records)
    # another agent's id: refused by the policy once the call is read
    other = Agent(master, "fast-other")
    connection.send(request(wire.encode_agent_call(m.AgentHeartbeat(other.id, ())), agent.token))
    reply = await connection.reply()
    assert reply.status == 403 and reply.error().code == "FORBIDDEN"
    connection.send(agent.heartbeat())
    assert isinstance((await connection.reply()).event(), m.HeartbeatAck)
    # no credential and a body over the limit: answered, and the connection closed (no unbounded skip)
    connection.send(request(b"", "", length=False, extra=f"Content-Length: {MAX_BODY + 1}\r\n"))
    assert (await connection.reply()).status == 401
    await connection.wait_closed()


@pytest.mark.parametrize("header", ["Authorization", "Content-Type"])
async def test_a_repeated_header_is_left_to_aiohttp(master: RunningMaster, raw: Callable[[], Any], header: str) -> None:
    """So a request cannot be read one way here and another way there."""
    agent, connection = await registered(master, raw)
    value = "Bearer nope" if header == "Authorization" else "text/plain"
    answers = []
    for path in ("/api/v1/agent", "/api/v1/agent?aiohttp"):
        handed = fast(master).handed_over
        connection = await raw()
        connection.send(agent.heartbeat(path=path, extra=f"{header}: {value}\r\n"))
        answers.append((await connection.reply()).status)
        assert fast(master).handed_over == handed + 1
    assert answers[0] == answers[1]


@pytest.mark.parametrize("what", ["content type", "garbage body", "unknown agent"])
async def test_bad_calls_get_typed_errors_and_the_connection_serves_on(
    master: RunningMaster, raw: Callable[[], Any], what: str
) -> None:
    agent, connection = await registered(master, raw)
    if what == "content type":
        data = agent.heartbeat().replace(b"application/x-protobuf", b"text/plain", 1)
        expected = (400, "MALFORMED")
    elif what == "garbage body":
        data = request(b"\xff\xff\xff\xff", agent.token)
        expected = (400, "MALFORMED")
    else:
        stranger = Agent(master, "fast-stranger")
        data = stranger.heartbeat()
        expected = (404, "UNKNOWN_AGENT")
    connection.send(data)
    reply = await connection.reply()
    assert (reply.status, reply.error().code) == expected
    connection.send(agent.heartbeat())
    assert isinstance((await connection.reply()).event(), m.HeartbeatAck)


@pytest.mark.parametrize("head", ["duplicate length", "bare LF", "too long"])
async def test_heads_llhttp_refuses_get_aiohttps_answer_and_the_master_serves_on(
    master: RunningMaster, raw: Callable[[], Any], head: str
) -> None:
    agent, connection = await registered(master, raw)
    if head == "duplicate length":
        data = agent.heartbeat(extra="Content-Length: 3\r\n")
    elif head == "bare LF":
        data = agent.heartbeat().replace(b"Host: master\r\n", b"Host: master\n", 1)
    else:
        data = agent.heartbeat(extra="X-Filler: " + "x" * MAX_HEAD + "\r\n")
    connection.send(data)
    reply = await connection.reply()
    assert 400 <= reply.status < 500
    await connection.wait_closed()
    again = await raw()
    again.send(agent.heartbeat())
    assert isinstance((await again.reply()).event(), m.HeartbeatAck)


async def test_the_command_stream_carries_commands_and_ends_with_its_last_chunk(
    master: RunningMaster, raw: Callable[[], Any]
) -> None:
    agent, connection = await registered(master, raw)
    connection.send(agent.subscribe())
    stream = await asyncio.wait_for(connection.replies.get(), WAIT)
    assert stream.status == 200 and stream.headers["transfer-encoding"] == "chunked"
    for n in range(3):
        master.service.push_command(agent.id, m.SendLogsCommand(f"req-{n}", TaskId("t-1")))
    got = [await asyncio.wait_for(stream.records.get(), WAIT) for _ in range(3)]
    assert [g.request_id for g in got] == ["req-0", "req-1", "req-2"]  # type: ignore[union-attr]
    # a newer stream takes the outbox: the first ends with its last chunk, and its connection serves on
    newer = await raw()
    newer.send(agent.subscribe())
    second = await asyncio.wait_for(newer.replies.get(), WAIT)
    await asyncio.wait_for(stream.complete.wait(), WAIT)
    connection.send(agent.heartbeat())
    assert isinstance((await connection.reply()).event(), m.HeartbeatAck)
    master.service.push_command(agent.id, m.SendLogsCommand("req-3", TaskId("t-1")))
    assert (await asyncio.wait_for(second.records.get(), WAIT)).request_id == "req-3"  # type: ignore[union-attr]


async def test_every_queued_command_is_sent_not_just_one_batch(master: RunningMaster, raw: Callable[[], Any]) -> None:
    agent, connection = await registered(master, raw)
    for n in range(600):  # more than one read of the outbox (256) takes
        master.service.push_command(agent.id, m.SendLogsCommand(f"req-{n}", TaskId("t-1")))
    connection.send(agent.subscribe())
    stream = await asyncio.wait_for(connection.replies.get(), WAIT)
    got = [await asyncio.wait_for(stream.records.get(), WAIT) for _ in range(600)]
    assert [g.request_id for g in got] == [f"req-{n}" for n in range(600)]  # type: ignore[union-attr]


async def test_an_agent_that_does_not_read_its_replies_stops_being_read(
    master: RunningMaster, raw: Callable[[], Any]
) -> None:
    """Pipelined requests from a peer that never reads: the master's buffer stays bounded, and nothing
    is lost once the peer reads."""
    agent, _ = await registered(master, raw)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: its window stays small
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (master.host, master.port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
    connection = Raw(reader, writer)
    connection.send(agent.heartbeat())
    assert isinstance((await connection.reply()).event(), m.HeartbeatAck)
    (served,) = [c for c in fast(master).connections if c._peer_port() == sock.getsockname()[1]]
    assert served._transport is not None
    served._transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    writer.transport.pause_reading()  # the peer stops reading
    count = 3000
    connection.send(agent.heartbeat() * count)
    async with asyncio.timeout(WAIT):
        while not served._paused:  # noqa: ASYNC110 (the connection's state is what is tested)
            await asyncio.sleep(0.02)
    await asyncio.sleep(0.2)
    assert served._transport.get_write_buffer_size() < 256 * 1024
    assert not served._transport.is_reading()
    writer.transport.resume_reading()  # the peer reads again: every reply comes
    try:
        for _ in range(count):  # each request its reply (past the agent's call rate, a typed 429)
            reply = await connection.reply()
            assert isinstance(reply.event(), m.HeartbeatAck) if reply.status == 200 else reply.status == 429
    finally:
        await connection.close()


async def test_a_dropped_stream_leaves_nothing_counted_and_its_commands_queued(
    master: RunningMaster, raw: Callable[[], Any]
) -> None:
    agent, connection = await registered(master, raw)
    security = master.security
    assert security is not None
    name = f"agent-{agent.id}"
    connection.send(agent.subscribe())
    await asyncio.wait_for(connection.replies.get(), WAIT)
    await until(lambda: security.streams_of(name) == 1)
    open_before = len(fast(master).connections)
    await connection.close()
    await until(lambda: security.streams_of(name) == 0 and len(fast(master).connections) == open_before - 1)
    master.service.push_command(agent.id, m.SendLogsCommand("later", TaskId("t-1")))
    again = await raw()
    again.send(agent.subscribe())
    stream = await asyncio.wait_for(again.replies.get(), WAIT)
    assert (await asyncio.wait_for(stream.records.get(), WAIT)).request_id == "later"  # type: ignore[union-attr]


async def test_sending_too_much_while_streaming_closes_the_connection(
    master: RunningMaster, raw: Callable[[], Any]
) -> None:
    agent, connection = await registered(master, raw)
    connection.send(agent.subscribe())
    await asyncio.wait_for(connection.replies.get(), WAIT)
    connection.send(b"x" * (MAX_WAITING + 1))
    await connection.wait_closed()
    again = await raw()
    again.send(agent.heartbeat())
    assert isinstance((await again.reply()).event(), m.HeartbeatAck)


async def test_idle_and_half_sent_connections_are_closed(master: RunningMaster, raw: Callable[[], Any]) -> None:
    fast(master).keepalive = 0.3
    agent, served = await registered(master, raw)
    half = await raw()
    half.send(agent.heartbeat()[:20])
    await served.wait_closed()
    await half.wait_closed()
    streaming = await raw()  # a command stream never idles out
    streaming.send(agent.subscribe())
    await asyncio.wait_for(streaming.replies.get(), WAIT)
    await asyncio.sleep(0.6)
    assert not streaming.closed.is_set()


async def test_stopping_the_master_closes_its_agent_connections() -> None:
    async with start_master(allocation_interval=0.05) as master:
        agent = Agent(master, "fast-stop")
        connections = [await Raw.open(master) for _ in range(2)]
        connections[0].send(agent.register())
        await connections[0].reply()
        connections[0].send(agent.subscribe())
        await asyncio.wait_for(connections[0].replies.get(), WAIT)
        connections[1].send(agent.heartbeat())
        await connections[1].reply()
    for connection in connections:
        await connection.wait_closed()
        await connection.close()


async def test_the_access_log_has_a_line_for_each_agent_call(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "edgerm.master.access")
    async with start_master(allocation_interval=0.05, access_log=True, insecure=True) as master:
        agent = Agent(master, "fast-log")
        connection = await Raw.open(master)
        try:
            connection.send(agent.register() + agent.heartbeat())
            assert (await connection.reply()).status == 200
            assert (await connection.reply()).status == 200
        finally:
            await connection.close()
    lines = [r.getMessage() for r in caplog.records if r.name == "edgerm.master.access"]
    assert sum('"POST /api/v1/agent HTTP/1.1" 200' in line for line in lines) == 2, lines
