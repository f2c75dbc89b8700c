"""``/agents/{id}/commands`` over real UDP: notifications, confirmation, replacement, give-back.

Commands come from the real core: a heartbeat that lists a task the master
does not know makes it send KILL for that task (docs/protocol.md), so each
test steers the master only through the agent protocol.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import aiocoap
import pytest

from edgerm import messages as m
from edgerm import wire
from edgerm.coap_util import Cursor, decode_commands
from edgerm.ids import AgentId, TaskId
from edgerm.master.main import RunningMaster
from tests.integration.coap.helpers import WAIT, eventually, register, request

AGENT = AgentId("edge-1")


class Observation:
    """A raw observation of an agent's command resource, read notification by notification."""

    def __init__(self, ctx: Any, uri: str) -> None:
        self.request = ctx.request(aiocoap.Message(code=aiocoap.GET, uri=uri, observe=0))
        self._notifications: AsyncIterator[aiocoap.Message] | None = None

    async def first(self) -> aiocoap.Message:
        async with asyncio.timeout(WAIT):
            response: aiocoap.Message = await self.request.response
        return response

    async def next(self) -> aiocoap.Message:
        if self._notifications is None:
            self._notifications = aiter(self.request.observation)
        async with asyncio.timeout(WAIT):
            return await anext(self._notifications)

    async def ended(self) -> bool:
        """True if the master ended the observation: a final error (5.03 UNAVAILABLE), or its end."""
        try:
            final = await self.next()
        except StopAsyncIteration:
            return True  # aiocoap may drop the final notification and only end the iteration
        if final.code.is_successful():
            return False
        assert final.code == aiocoap.SERVICE_UNAVAILABLE
        assert wire.decode_error(final.payload).code == "UNAVAILABLE"
        return True

    def cancel(self) -> None:
        if not self.request.observation.cancelled:
            self.request.observation.cancel()


def kills(message: aiocoap.Message) -> list[str]:
    commands = decode_commands(message.payload)
    assert all(isinstance(c, m.KillCommand) for c in commands)
    return [c.task_id for c in commands if isinstance(c, m.KillCommand)]


async def heartbeat(ctx: Any, url: str, *task_ids: str) -> m.AgentEvent:
    call = m.AgentHeartbeat(AGENT, tuple(TaskId(t) for t in task_ids))
    reply = await request(ctx, aiocoap.POST, url + "/agent", wire.encode_agent_call(call))
    assert reply.code == aiocoap.CHANGED
    return wire.decode_agent_event(reply.payload)


async def confirm(ctx: Any, url: str, etag: bytes) -> None:
    reply = await request(ctx, aiocoap.POST, f"{url}/agents/{AGENT}/commands", etag)
    assert reply.code == aiocoap.CHANGED and reply.payload == b""


@pytest.fixture
def url(master: RunningMaster) -> str:
    assert master.coap_url is not None
    return master.coap_url


def window_size(master: RunningMaster) -> int:
    assert master.coap is not None
    window = master.coap.channels.window(AGENT)
    return -1 if window is None else len(window)


async def test_commands_arrive_at_once_and_leave_the_window_when_confirmed(
    master: RunningMaster, client: Any, url: str
) -> None:
    await register(client, url, AGENT)
    obs = Observation(client, f"{url}/agents/{AGENT}/commands")
    first = await obs.first()
    assert first.code == aiocoap.CONTENT and first.payload == b"" and first.opt.observe == 0
    assert master.coap is not None
    assert Cursor.decode(first.opt.etag) == Cursor(master.coap.channels.incarnation, 0)

    await heartbeat(client, url, "x1")
    note = await obs.next()
    assert kills(note) == ["x1"]
    cursor = Cursor.decode(note.opt.etag)
    assert cursor.incarnation == master.coap.channels.incarnation and cursor.seq >= 1
    await confirm(client, url, note.opt.etag)
    assert window_size(master) == 0

    await heartbeat(client, url, "x2")
    note = await obs.next()
    assert kills(note) == ["x2"]
    assert Cursor.decode(note.opt.etag).seq == cursor.seq + 1
    # A plain GET shows the same representation.
    plain = await request(client, aiocoap.GET, f"{url}/agents/{AGENT}/commands")
    assert plain.code == aiocoap.CONTENT and kills(plain) == ["x2"] and plain.opt.etag == note.opt.etag
    obs.cancel()


async def test_unconfirmed_commands_repeat_in_every_notification(master: RunningMaster, client: Any, url: str) -> None:
    await register(client, url, AGENT)
    obs = Observation(client, f"{url}/agents/{AGENT}/commands")
    await obs.first()
    await heartbeat(client, url, "x1")
    assert kills(await obs.next()) == ["x1"]
    await heartbeat(client, url, "x2")
    note = await obs.next()
    assert kills(note) == ["x1", "x2"]  # a lost notification would have cost nothing
    # A stale cursor (another master process) confirms nothing.
    stale = Cursor.decode(note.opt.etag)
    await confirm(client, url, Cursor(stale.incarnation ^ 1, stale.seq).encode())
    assert window_size(master) == 2
    await confirm(client, url, note.opt.etag)
    assert window_size(master) == 0
    obs.cancel()


async def test_a_newer_observation_replaces_the_older_and_inherits_the_window(
    master: RunningMaster, client: Any, url: str
) -> None:
    await register(client, url, AGENT)
    older = Observation(client, f"{url}/agents/{AGENT}/commands")
    await older.first()
    await heartbeat(client, url, "x1")
    assert kills(await older.next()) == ["x1"]

    other = await aiocoap.Context.create_client_context(transports=["udp6"])
    try:
        newer = Observation(other, f"{url}/agents/{AGENT}/commands")
        first = await newer.first()
        assert kills(first) == ["x1"]  # not confirmed yet: still there
        assert await older.ended()
        await heartbeat(client, url, "x2")
        assert kills(await newer.next()) == ["x1", "x2"]
        newer.cancel()
    finally:
        await other.shutdown()


async def test_when_the_observer_is_gone_unconfirmed_commands_go_back_to_the_outbox(
    master: RunningMaster, client: Any, url: str
) -> None:
    await register(client, url, AGENT)
    gone = await aiocoap.Context.create_client_context(transports=["udp6"])
    obs = Observation(gone, f"{url}/agents/{AGENT}/commands")
    await obs.first()
    await heartbeat(client, url, "x1")
    assert kills(await obs.next()) == ["x1"]
    await gone.shutdown()  # the agent vanished without confirming

    # The next notification is refused (ICMP port unreachable): the window ends
    # and both commands wait in the outbox, which the heartbeat now reports.
    await heartbeat(client, url, "x2")
    await eventually(lambda: window_size(master) == -1)
    assert master.service.commands_pending(AGENT)
    assert await heartbeat(client, url) == m.HeartbeatAck(commands_pending=True)

    again = Observation(client, f"{url}/agents/{AGENT}/commands")
    first = await again.first()
    assert kills(first) == ["x1", "x2"]
    await confirm(client, url, first.opt.etag)
    assert await heartbeat(client, url) == m.HeartbeatAck(commands_pending=False)
    again.cancel()


async def test_a_large_window_is_sent_block_wise(master: RunningMaster, client: Any, url: str) -> None:
    await register(client, url, AGENT)
    obs = Observation(client, f"{url}/agents/{AGENT}/commands")
    await obs.first()
    ids = [f"task-with-a-long-name-{i:04d}" for i in range(80)]
    await heartbeat(client, url, *ids)
    note = await obs.next()
    assert len(note.payload) > 2048
    assert kills(note) == ids
    await confirm(client, url, note.opt.etag)
    obs.cancel()


async def test_modules_download_block_wise_by_hash(master: RunningMaster, client: Any, url: str) -> None:
    module = b"\0asm\1\0\0\0" + bytes(range(256)) * 400  # ~100 KiB
    digest = master.service.modules.put(module)
    reply = await request(client, aiocoap.GET, f"{url}/modules/{digest}")
    assert reply.code == aiocoap.CONTENT
    assert reply.payload == module and hashlib.sha256(reply.payload).hexdigest() == digest
    assert reply.opt.content_format == 42


async def test_master_stop_ends_every_observation(client: Any) -> None:
    from edgerm.master.main import start_master

    master = await start_master(coap_port=0, allocation_interval=0.05, insecure=True)
    try:
        url = master.coap_url or ""
        await register(client, url, AGENT)
        obs = Observation(client, f"{url}/agents/{AGENT}/commands")
        await obs.first()
    finally:
        await master.stop()
    assert await obs.ended()


async def test_numbers_are_per_agent_and_consecutive(master: RunningMaster, client: Any, url: str) -> None:
    await register(client, url, AGENT)
    await register(client, url, "edge-2")
    mine = Observation(client, f"{url}/agents/{AGENT}/commands")
    theirs = Observation(client, f"{url}/agents/edge-2/commands")
    await mine.first()
    await theirs.first()
    other = m.AgentHeartbeat(AgentId("edge-2"), (TaskId("b1"),))
    await heartbeat(client, url, "a1")
    assert kills(await mine.next()) == ["a1"]
    await request(client, aiocoap.POST, url + "/agent", wire.encode_agent_call(other))
    assert kills(await theirs.next()) == ["b1"]
    await heartbeat(client, url, "a2")
    note = await mine.next()
    assert kills(note) == ["a1", "a2"]
    assert Cursor.decode(note.opt.etag).seq == 2  # record i of n is number seq - n + 1 + i: 1, 2
    mine.cancel()
    theirs.cancel()


async def test_open_observations_hold_no_task_and_still_get_their_commands(
    master: RunningMaster, client: Any, url: str
) -> None:
    # issue #13: an observation costs a constant, small amount per agent; it lives in callbacks, not in a task
    # (nor a drain task per window) suspended for its whole life with a chain of coroutine frames.
    agents = [f"edge-{i}" for i in range(20)]
    for agent in agents:
        await register(client, url, agent)
    await asyncio.sleep(0.2)

    def master_side() -> int:  # aiocoap's client half of each observation runs in this loop too: not counted
        return sum(not t.get_coro().__qualname__.startswith("BlockwiseRequest.") for t in asyncio.all_tasks())

    before = master_side()
    observations = [Observation(client, f"{url}/agents/{agent}/commands") for agent in agents]
    for obs in observations:
        assert (await obs.first()).code == aiocoap.CONTENT
    await asyncio.sleep(0.2)
    assert master.coap is not None and len(master.coap.channels) == len(agents)
    assert master_side() == before  # none per observation (two each before: a drain task and a render task)
    call = m.AgentHeartbeat(AgentId("edge-7"), (TaskId("stray"),))  # the master answers with a KILL of it
    reply = await request(client, aiocoap.POST, url + "/agent", wire.encode_agent_call(call))
    assert reply.code == aiocoap.CHANGED
    assert kills(await observations[7].next()) == ["stray"]
    for obs in observations:
        obs.cancel()


async def test_a_notification_that_fails_ends_the_observation_with_5_00_and_loses_no_command(
    master: RunningMaster, client: Any, url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from edgerm.master import coap as coap_module

    await register(client, url, AGENT)
    obs = Observation(client, f"{url}/agents/{AGENT}/commands")
    await obs.first()
    render = coap_module._Commands._notification

    def broken(self: Any, request: aiocoap.Message, window: Any, number: int) -> aiocoap.Message:
        if number > 0:
            raise RuntimeError("a bug while rendering a notification")
        return render(self, request, window, number)

    monkeypatch.setattr(coap_module._Commands, "_notification", broken)
    await heartbeat(client, url, "x1")
    final = await obs.next()
    assert final.code == aiocoap.INTERNAL_SERVER_ERROR
    assert "observation of agent edge-1 failed" in caplog.text  # logged once, with the traceback: a bug
    await eventually(lambda: window_size(master) == -1)  # the window ended, its command back in the outbox
    assert await heartbeat(client, url) == m.HeartbeatAck(commands_pending=True)
    monkeypatch.undo()
    again = Observation(client, f"{url}/agents/{AGENT}/commands")
    assert kills(await again.first()) == ["x1"]
    again.cancel()
