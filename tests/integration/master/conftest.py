"""Fixtures and test-side peers of the master that speak the real HTTP protocol.

``FakeAgent`` and ``FakeFramework`` encode calls with :mod:`edgerm.wire`, POST
them with aiohttp, decode replies (typed errors are re-raised as their
``WireError`` class) and read RecordIO streams with ``wire.RecordReader``.
No mocks: what they send is exactly what a real agent or framework sends.
The master runs with authentication on: each fake agent presents a token
bound to its id, every fake framework the master's framework token.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import aiohttp
import pytest

from edgerm import messages as m
from edgerm import wire
from edgerm.auth.client import bearer
from edgerm.auth.principal import Role
from edgerm.ids import AgentId, FrameworkId, TaskId
from edgerm.master.main import RunningMaster, start_master
from edgerm.master.state import MasterConfig
from edgerm.model import AgentInfo, FrameworkInfo, TaskState, TaskStatus
from edgerm.resources import Resources
from tests.harness import Checks

PROTOBUF = {"Content-Type": "application/x-protobuf"}
WAIT = 5.0  # generous bound on loopback; tests never sleep for a fixed time

T = TypeVar("T")


class Reply:
    """A raw HTTP reply: status, headers, body."""

    def __init__(self, status: int, headers: Any, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def error(self) -> m.ErrorEvent:
        return wire.decode_error(self.body)


async def post(session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str] | None = None) -> Reply:
    async with session.post(url, data=body, headers=PROTOBUF if headers is None else headers) as r:
        return Reply(r.status, r.headers, await r.read())


def _raise_typed(reply: Reply) -> None:
    if reply.status >= 300:
        wire.raise_error(reply.error())


class _Stream:
    """Reads a RecordIO response into a queue of decoded items."""

    def __init__(self, response: aiohttp.ClientResponse, decode: Callable[[bytes], Any]) -> None:
        self.response = response
        self.items: asyncio.Queue[Any] = asyncio.Queue()
        self.ended = asyncio.Event()
        self._decode = decode
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        reader = wire.RecordReader()
        try:
            async for chunk in self.response.content.iter_any():
                for record in reader.feed(chunk):
                    self.items.put_nowait(self._decode(record))
        except aiohttp.ClientError:
            pass
        finally:
            self.ended.set()

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self.response.close()


class FakeAgent:
    """An agent: REGISTER, HEARTBEAT, UPDATE, and a SUBSCRIBE command stream."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        agent_id: str = "agent-1",
        resources: str = "cpus:4;mem:4096",
        executors: frozenset[str] = frozenset({"wasm"}),
        heartbeat_interval: float = 5.0,
        token: str | None = None,
    ) -> None:
        self.session = session
        self.url = base_url + "/api/v1/agent"
        self.token = token
        self.headers = {**PROTOBUF, **bearer(token)}
        self.agent_id = AgentId(agent_id)
        self.info = AgentInfo(
            id=self.agent_id,
            hostname=f"{agent_id}.test",
            resources=Resources.parse(resources),
            attributes={"executors": executors, "os": "linux"},
            heartbeat_interval=heartbeat_interval,
        )
        self._stream: _Stream | None = None

    async def call(self, call: m.AgentCall) -> m.AgentEvent:
        reply = await post(self.session, self.url, wire.encode_agent_call(call), self.headers)
        _raise_typed(reply)
        assert reply.status == 200, reply.status
        return wire.decode_agent_event(reply.body)

    async def register(self, tasks: tuple[TaskStatus, ...] = ()) -> m.AgentRegistered:
        event = await self.call(m.RegisterAgent(self.info, tasks))
        assert isinstance(event, m.AgentRegistered)
        return event

    async def heartbeat(self, *task_ids: str) -> m.HeartbeatAck:
        event = await self.call(m.AgentHeartbeat(self.agent_id, tuple(TaskId(t) for t in task_ids)))
        assert isinstance(event, m.HeartbeatAck)
        return event

    async def update(self, task_id: str, state: TaskState, uuid: str) -> m.StatusAcknowledged:
        status = TaskStatus(TaskId(task_id), self.agent_id, state, uuid=uuid)
        event = await self.call(m.StatusUpdate(self.agent_id, status))
        assert isinstance(event, m.StatusAcknowledged)
        return event

    async def subscribe(self) -> None:
        """Open the command stream (raises the typed error if refused)."""
        body = wire.encode_agent_call(m.SubscribeAgent(self.agent_id))
        response = await self.session.post(self.url, data=body, headers=self.headers)
        if response.status != 200:
            reply = Reply(response.status, response.headers, await response.read())
            response.release()
            _raise_typed(reply)
        self._stream = _Stream(response, wire.decode_agent_event)

    async def next_command(self, within: float = WAIT) -> m.AgentEvent:
        assert self._stream is not None, "subscribe first"
        item: m.AgentEvent = await asyncio.wait_for(self._stream.items.get(), within)
        return item

    async def stream_ended(self, within: float = WAIT) -> None:
        assert self._stream is not None
        await asyncio.wait_for(self._stream.ended.wait(), within)

    async def close(self) -> None:
        if self._stream is not None:
            await self._stream.close()
            self._stream = None


class FakeFramework:
    """A framework: SUBSCRIBE (reading the event stream) and the other calls."""

    def __init__(
        self, session: aiohttp.ClientSession, base_url: str, name: str = "fake", token: str | None = None
    ) -> None:
        self.session = session
        self.url = base_url + "/api/v1/scheduler"
        self.headers = {**PROTOBUF, **bearer(token)}
        self.name = name
        self.framework_id = FrameworkId("")
        self.stream_id = ""
        self.subscribed: m.Subscribed | None = None
        self._stream: _Stream | None = None

    async def subscribe(self, framework_id: str = "") -> m.Subscribed:
        body = wire.encode_call(m.Subscribe(FrameworkInfo(FrameworkId(framework_id), self.name)))
        response = await self.session.post(self.url, data=body, headers=self.headers)
        if response.status != 200:
            reply = Reply(response.status, response.headers, await response.read())
            response.release()
            _raise_typed(reply)
        self.stream_id = response.headers["Edgerm-Stream-Id"]
        self._stream = _Stream(response, wire.decode_event)
        first = await asyncio.wait_for(self._stream.items.get(), WAIT)
        assert isinstance(first, m.Subscribed), first
        self.subscribed = first
        self.framework_id = first.framework_id
        return first

    async def call(self, call: m.SchedulerCall, stream_id: str | None = None) -> None:
        headers = dict(self.headers)
        sid = self.stream_id if stream_id is None else stream_id
        if sid:
            headers["Edgerm-Stream-Id"] = sid
        reply = await post(self.session, self.url, wire.encode_call(call), headers)
        _raise_typed(reply)
        assert reply.status == 202, reply.status
        assert reply.body == b""

    async def next_event(self, kind: type[T], within: float = WAIT) -> T:
        """The next event of type ``kind``, skipping heartbeats and other kinds."""
        assert self._stream is not None, "subscribe first"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            event = await asyncio.wait_for(self._stream.items.get(), max(0.0, deadline - loop.time()))
            if isinstance(event, kind):
                return event

    async def raw_event(self, within: float = WAIT) -> m.SchedulerEvent:
        assert self._stream is not None
        event: m.SchedulerEvent = await asyncio.wait_for(self._stream.items.get(), within)
        return event

    async def stream_ended(self, within: float = WAIT) -> None:
        assert self._stream is not None
        await asyncio.wait_for(self._stream.ended.wait(), within)

    async def close(self) -> None:
        if self._stream is not None:
            await self._stream.close()
            self._stream = None


# -- fixtures -------------------------------------------------------------------------


def agent_token(master: RunningMaster, agent_id: str) -> str:
    """A new agent credential on ``master`` bound to ``agent_id`` (as joining would make)."""
    return master.issue_token(Role.AGENT, f"agent-{agent_id}", agent_id=AgentId(agent_id))


MAX_BODY = 64 * 1024  # small, so the oversized-body test stays cheap


@pytest.fixture
async def master() -> AsyncIterator[RunningMaster]:
    config = MasterConfig(offer_timeout=60.0)
    async with start_master(config=config, allocation_interval=0.05, max_body=MAX_BODY) as running:
        yield running


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
async def make_agent(master: RunningMaster, session: aiohttp.ClientSession) -> AsyncIterator[Callable[..., FakeAgent]]:
    """A factory of fake agents bound to the master; their streams close at teardown."""
    made: list[FakeAgent] = []
    tokens: dict[str, str] = {}

    def make(agent_id: str = "agent-1", on: RunningMaster | None = None, **kwargs: Any) -> FakeAgent:
        target = on or master
        if "token" not in kwargs and not target.insecure:
            key = f"{target.url} {agent_id}"
            if key not in tokens:
                tokens[key] = agent_token(target, agent_id)
            kwargs["token"] = tokens[key]
        agent = FakeAgent(session, target.url, agent_id, **kwargs)
        made.append(agent)
        return agent

    yield make
    for agent in made:
        await agent.close()


@pytest.fixture
async def make_framework(
    master: RunningMaster, session: aiohttp.ClientSession
) -> AsyncIterator[Callable[..., FakeFramework]]:
    """A factory of fake frameworks bound to the master; their streams close at teardown."""
    made: list[FakeFramework] = []

    def make(name: str = "fake", on: RunningMaster | None = None, token: str | None = None) -> FakeFramework:
        target = on or master
        if token is None and target.tokens is not None:
            token = target.tokens.framework
        framework = FakeFramework(session, target.url, name, token)
        made.append(framework)
        return framework

    yield make
    for framework in made:
        await framework.close()


@pytest.fixture(autouse=True)
def _checked(checks: Checks) -> Checks:
    """Every test here runs under the harness's checks (tests/harness.py): no logged ERROR or traceback,
    no leaked process, no warning."""
    return checks
