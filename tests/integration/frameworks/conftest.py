"""Fixtures: a fake master speaking the real scheduler protocol, the real
master (``start_master``), and a scripted agent speaking the real agent protocol.

``fake_master`` lets driver tests steer the far side exactly. It is not a
mock: it serves ``POST /api/v1/scheduler`` on 127.0.0.1 with an
ephemeral port, answers SUBSCRIBE with a RecordIO stream of protobuf Events
and an ``Edgerm-Stream-Id`` header, answers other calls 202 or with a typed
``edgerm.v1.Error`` body, checks the stream id, re-sends unacknowledged
updates on re-subscription, and sends HEARTBEATs. Tests steer it (push
events, drop or silence the stream, make the next call fail) and read what
it received.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import pytest
from aiohttp import web

from edgerm import messages as m
from edgerm import wire
from edgerm.auth.client import bearer, resolve_token
from edgerm.auth.join import join
from edgerm.auth.principal import Role
from edgerm.errors import NotSubscribed, WireError
from edgerm.ids import AgentId, FrameworkId, TaskId, new_id
from edgerm.model import AgentInfo, TaskInfo, TaskState, TaskStatus
from edgerm.resources import Resources
from tests.harness import Checks

_DROP = object()
_T = TypeVar("_T")


@dataclass
class _Stream:
    stream_id: str
    framework_id: FrameworkId
    queue: asyncio.Queue[object] = field(default_factory=asyncio.Queue)
    closed: bool = False


class FakeMaster:
    def __init__(self, heartbeat_interval: float = 0.2) -> None:
        self.heartbeat_interval = heartbeat_interval
        self.heartbeats = True
        # "reset": drop the connection; "stall": never answer; "500"/"404": an untyped plain-text reply
        self.break_calls: str | None = None
        self.subscriptions: list[m.Subscribe] = []
        self.calls: list[m.SchedulerCall] = []
        self.unacked: dict[str, TaskStatus] = {}
        self.url = ""
        self._ids = itertools.count(1)
        self._stream: _Stream | None = None
        self._streams: list[_Stream] = []
        self._next_errors: dict[type, WireError] = {}
        self._subscribe_error: WireError | None = None
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._hb_task: asyncio.Task[None] | None = None
        self._released = asyncio.Event()

    # -- lifecycle ----------------------------------------------------------

    async def start(self, port: int = 0) -> None:
        app = web.Application()
        app.router.add_post("/api/v1/scheduler", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        server = site._server
        assert server is not None and server.sockets
        self.port = server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._hb_task = asyncio.create_task(self._heartbeats())

    async def stop(self) -> None:
        self._released.set()
        if self._hb_task is not None:
            self._hb_task.cancel()
            await asyncio.wait([self._hb_task])
        for s in self._streams:
            s.queue.put_nowait(_DROP)
        if self._runner is not None:
            await self._runner.cleanup()

    # -- steering -----------------------------------------------------------

    def push(self, event: m.SchedulerEvent) -> None:
        """Send an event on the current stream (an UPDATE with a uuid is kept until acknowledged)."""
        if isinstance(event, m.Update) and event.status.uuid:
            self.unacked[event.status.uuid] = event.status
        assert self._stream is not None, "no framework subscribed"
        self._stream.queue.put_nowait(event)

    def drop(self) -> None:
        """Close the current stream, as a master restart or a cut would."""
        assert self._stream is not None
        self._stream.queue.put_nowait(_DROP)

    def fail_next(self, kind: type, error: WireError) -> None:
        self._next_errors[kind] = error

    def fail_subscribe(self, error: WireError | None) -> None:
        self._subscribe_error = error

    async def wait_until(self, pred: Callable[[], bool], within: float = 5.0) -> None:
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(pred)

    def calls_of(self, kind: type[_T]) -> list[_T]:
        return [c for c in self.calls if isinstance(c, kind)]

    # -- protocol -------------------------------------------------------------

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    def _error(self, e: WireError) -> web.Response:
        return web.Response(status=e.http_status, body=wire.encode_error(e), content_type="application/x-protobuf")

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            call = wire.decode_call(await request.read())
        except WireError as e:
            return self._error(e)
        if isinstance(call, m.Subscribe):
            return await self._subscribe(request, call)
        if self.break_calls == "reset":
            assert request.transport is not None
            request.transport.close()
            return web.Response(status=202)  # never sent: the connection is gone
        if self.break_calls in ("500", "404"):
            return web.Response(status=int(self.break_calls), text="plain text, no typed error")
        if self.break_calls == "stall":
            await self._released.wait()  # the client times out first; stop() releases it
        stream = self._stream
        if stream is None or request.headers.get("Edgerm-Stream-Id") != stream.stream_id:
            return self._error(NotSubscribed("wrong or missing stream id"))
        if call.framework_id != stream.framework_id:
            return self._error(NotSubscribed("wrong framework id"))
        error = self._next_errors.pop(type(call), None)
        if error is not None:
            return self._error(error)
        self.calls.append(call)
        if isinstance(call, m.Acknowledge):
            for one in call.each():
                self.unacked.pop(one.uuid, None)
        if isinstance(call, m.Teardown):
            stream.queue.put_nowait(_DROP)
        await self._notify()
        return web.Response(status=202)

    async def _subscribe(self, request: web.Request, sub: m.Subscribe) -> web.StreamResponse:
        if self._subscribe_error is not None:
            return self._error(self._subscribe_error)
        self.subscriptions.append(sub)
        fid = sub.framework.id or FrameworkId(f"fw-{next(self._ids)}")
        stream = _Stream(stream_id=f"stream-{next(self._ids)}", framework_id=fid)
        if self._stream is not None:
            self._stream.queue.put_nowait(_DROP)
        self._stream = stream
        self._streams.append(stream)
        resp = web.StreamResponse(
            status=200, headers={"Content-Type": "application/x-protobuf", "Edgerm-Stream-Id": stream.stream_id}
        )
        await resp.prepare(request)
        await resp.write(wire.frame(wire.encode_event(m.Subscribed(fid, self.heartbeat_interval, "fake-master"))))
        for status in list(self.unacked.values()):
            await resp.write(wire.frame(wire.encode_event(m.Update(status))))
        await self._notify()
        try:
            while True:
                item = await stream.queue.get()
                if item is _DROP:
                    break
                assert isinstance(item, m.SchedulerEvent)
                await resp.write(wire.frame(wire.encode_event(item)))
        except ConnectionResetError:
            pass
        finally:
            stream.closed = True
            if self._stream is stream:
                self._stream = None
            await self._notify()
        return resp

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            if self.heartbeats and self._stream is not None:
                self._stream.queue.put_nowait(m.Heartbeat())

    @property
    def streams_opened(self) -> int:
        return len(self._streams)

    @property
    def stream_open(self) -> bool:
        return self._stream is not None


@pytest.fixture
async def fake_master() -> AsyncIterator[FakeMaster]:
    master = FakeMaster()
    await master.start()
    try:
        yield master
    finally:
        await master.stop()


# -- the real master, and a scripted agent speaking the real agent protocol ------------


class ScriptedAgent:
    """An agent that registers, heartbeats, holds its command stream, and
    answers each LAUNCH with RUNNING then FINISHED (each acknowledged by the
    master before the next), and each KILL with KILLED."""

    def __init__(self, master_url: str, agent_id: str = "agent-a1", resources: str = "cpus:1;mem:256") -> None:
        self.base = master_url
        self.url = master_url + "/api/v1/agent"
        self.headers = {"Content-Type": "application/x-protobuf"}
        self.info = AgentInfo(
            AgentId(agent_id),
            "scripted",
            Resources.parse(resources),
            {"executors": frozenset({"wasm"})},
            heartbeat_interval=0.2,
        )
        self.launched: list[TaskInfo] = []
        self._http: aiohttp.ClientSession | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def call(self, call: m.AgentCall) -> m.AgentEvent:
        assert self._http is not None
        async with self._http.post(self.url, data=wire.encode_agent_call(call), headers=self.headers) as resp:
            body = await resp.read()
            if resp.status != 200:
                wire.raise_error(wire.decode_error(body))
            return wire.decode_agent_event(body)

    async def start(self) -> None:
        join_token = resolve_token(None, self.base, Role.JOIN, env={})
        if join_token:  # join as a real agent does: a credential bound to this agent's id
            self.headers.update(bearer(await join(self.base, join_token, self.info.id)))
        self._http = aiohttp.ClientSession()
        await self.call(m.RegisterAgent(self.info))
        self._tasks = [asyncio.create_task(self._heartbeats()), asyncio.create_task(self._commands())]

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
        if self._http is not None:
            await self._http.close()

    async def _heartbeats(self) -> None:
        while True:
            await asyncio.sleep(self.info.heartbeat_interval)
            await self.call(m.AgentHeartbeat(self.info.id, tuple(t.task_id for t in self.launched)))

    async def _report(self, task_id: TaskId, state: TaskState) -> None:
        status = TaskStatus(task_id, self.info.id, state, uuid=new_id(), timestamp=time.time())
        ack = await self.call(m.StatusUpdate(self.info.id, status))
        assert ack == m.StatusAcknowledged(task_id, status.uuid)

    async def _commands(self) -> None:
        assert self._http is not None
        async with self._http.post(
            self.url,
            data=wire.encode_agent_call(m.SubscribeAgent(self.info.id)),
            headers=self.headers,
        ) as resp:
            assert resp.status == 200
            reader = wire.RecordReader()
            async for chunk in resp.content.iter_any():
                for record in reader.feed(chunk):
                    event = wire.decode_agent_event(record)
                    if isinstance(event, m.LaunchCommand):
                        self.launched.append(event.task)
                        await self._report(event.task.task_id, TaskState.RUNNING)
                        await self._report(event.task.task_id, TaskState.FINISHED)
                    elif isinstance(event, m.KillCommand):
                        await self._report(event.task_id, TaskState.KILLED)


@pytest.fixture
async def master() -> AsyncIterator[Any]:
    main = pytest.importorskip("edgerm.master.main")
    async with main.start_master(allocation_interval=0.05, framework_heartbeat=0.2) as running:
        yield running


@pytest.fixture
async def scripted_agent(master: Any) -> AsyncIterator[ScriptedAgent]:
    agent = ScriptedAgent(master.url)
    await agent.start()
    try:
        yield agent
    finally:
        await agent.stop()


@pytest.fixture(autouse=True)
def _checked(checks: Checks) -> Checks:
    """Every test here runs under the harness's checks (tests/harness.py): no logged ERROR or traceback,
    no leaked process, no warning."""
    return checks
