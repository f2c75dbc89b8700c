"""The service's building blocks on their own: module store, agent outboxes, framework streams.

No sockets, no sleeps: every wait here is for an item already queued.
"""

from __future__ import annotations

import hashlib
import logging

import pytest

from edgerm import messages as m
from edgerm.ids import AgentId, FrameworkId, TaskId
from edgerm.master.service import CommandOutbox, EventStream, ModuleStore


def test_module_store_keeps_modules_by_hash() -> None:
    store = ModuleStore(max_bytes=100)
    digest = store.put(b"abc")
    assert digest == hashlib.sha256(b"abc").hexdigest()
    assert store.get(digest) == b"abc"
    assert store.put(b"abc") == digest and len(store) == 1 and store.total_bytes == 3
    assert store.get("0" * 64) is None


def test_module_store_evicts_least_recently_used_past_its_budget() -> None:
    store = ModuleStore(max_bytes=10)
    a = store.put(b"a" * 4)
    b = store.put(b"b" * 4)
    store.get(a)  # a is now the most recently used
    c = store.put(b"c" * 4)
    assert a in store and c in store and b not in store
    assert store.total_bytes == 8


def test_module_store_does_not_keep_a_module_over_the_whole_budget() -> None:
    store = ModuleStore(max_bytes=10)
    kept = store.put(b"k" * 5)
    digest = store.put(b"x" * 11)
    assert digest == hashlib.sha256(b"x" * 11).hexdigest()
    assert digest not in store and kept in store


async def test_command_stream_drains_the_outbox_in_order() -> None:
    outbox = CommandOutbox(AgentId("a"), limit=10)
    outbox.put(m.KillCommand(TaskId("t1")))
    outbox.put(m.KillCommand(TaskId("t2")))
    assert outbox.pending
    stream = outbox.attach()
    assert outbox.attached
    assert await anext(stream) == m.KillCommand(TaskId("t1"))
    assert await anext(stream) == m.KillCommand(TaskId("t2"))
    assert not outbox.pending


async def test_a_command_given_back_is_sent_first() -> None:
    outbox = CommandOutbox(AgentId("a"), limit=10)
    stream = outbox.attach()
    outbox.put(m.KillCommand(TaskId("t1")))
    outbox.put(m.KillCommand(TaskId("t2")))
    first = await anext(stream)
    stream.give_back(first)
    assert await anext(stream) == first


async def test_a_new_channel_ends_the_previous_one_and_keeps_the_commands() -> None:
    outbox = CommandOutbox(AgentId("a"), limit=10)
    old = outbox.attach()
    new = outbox.attach()
    with pytest.raises(StopAsyncIteration):
        await anext(old)
    old.close()  # the old transport finishing must not detach the new channel
    assert outbox.attached
    outbox.put(m.KillCommand(TaskId("t1")))
    assert await anext(new) == m.KillCommand(TaskId("t1"))


async def test_a_full_outbox_drops_its_oldest_command() -> None:
    outbox = CommandOutbox(AgentId("a"), limit=2)
    for n in range(3):
        outbox.put(m.KillCommand(TaskId(f"t{n}")))
    stream = outbox.attach()
    assert [await anext(stream), await anext(stream)] == [m.KillCommand(TaskId("t1")), m.KillCommand(TaskId("t2"))]


async def test_closing_the_outbox_ends_its_channel_and_refuses_commands() -> None:
    outbox = CommandOutbox(AgentId("a"), limit=10)
    stream = outbox.attach()
    outbox.put(m.KillCommand(TaskId("t1")))
    outbox.close()
    outbox.put(m.KillCommand(TaskId("t2")))
    assert not outbox.pending
    with pytest.raises(StopAsyncIteration):
        await anext(stream)


async def test_event_stream_yields_in_order_and_reports_its_close_once() -> None:
    closed: list[EventStream] = []
    stream = EventStream(FrameworkId("f"), "s1", 3600.0, closed.append)
    stream.push(m.Subscribed(FrameworkId("f"), 3600.0))
    stream.push(m.Failure(AgentId("a")))
    assert await anext(stream) == m.Subscribed(FrameworkId("f"), 3600.0)
    assert await anext(stream) == m.Failure(AgentId("a"))
    await stream.aclose()
    await stream.aclose()
    assert closed == [stream]
    with pytest.raises(StopAsyncIteration):
        await anext(stream)


async def test_a_closed_event_stream_discards_what_was_queued() -> None:
    stream = EventStream(FrameworkId("f"), "s1", 3600.0, lambda s: None)
    stream.push(m.Failure(AgentId("a")))
    stream.close()
    stream.push(m.Failure(AgentId("b")))
    assert len(stream) == 0 and stream.closed
    with pytest.raises(StopAsyncIteration):
        await anext(stream)


def test_a_full_outbox_logs_once_per_burst_not_once_per_command(caplog: pytest.LogCaptureFixture) -> None:

    outbox = CommandOutbox(AgentId("a1"), limit=10)
    with caplog.at_level(logging.WARNING, logger="edgerm.master.service"):
        for i in range(2_010):
            outbox.put(m.KillCommand(TaskId(f"t{i}"), 1.0))
    assert len(outbox) == 10 and outbox.dropped == 2_000
    assert len(caplog.records) == 3  # the first drop, the 1000th and the 2000th


async def test_an_outbox_keeps_no_queue_while_empty_and_gives_back_in_order() -> None:
    outbox = CommandOutbox(AgentId("a1"), limit=2)
    stream = outbox.attach()
    assert outbox._items is None and len(outbox) == 0 and not outbox.pending
    one, two, three = (m.KillCommand(TaskId(f"t{i}")) for i in (1, 2, 3))
    outbox.put(one)
    outbox.put(two)
    outbox.put(three)  # full: the oldest goes
    assert outbox.dropped == 1 and len(outbox) == 2
    assert await anext(stream) == two and await anext(stream) == three
    assert outbox._items is None  # drained: the queue went with it
    stream.give_back(three)
    stream.give_back(two)
    assert [await anext(stream), await anext(stream)] == [two, three]
    outbox.close()
    outbox.put(one)  # closed: ignored
    assert len(outbox) == 0


class _Handlers:
    """What a command window asks of the master's handler table: an agent's stream, that it is known."""

    def __init__(self, outbox: CommandOutbox) -> None:
        self.outbox = outbox
        self.known = True
        self.service = self
        self.core = self
        self.running = True

    def agent_known(self, agent_id: AgentId) -> bool:
        return self.known

    def agent_commands(self, agent_id: AgentId) -> object:
        return self.outbox.attach()

    def module(self, digest: str) -> None:
        return None


async def test_a_command_window_is_filled_by_callbacks_and_no_task_waits_for_it() -> None:
    import asyncio

    from edgerm.master.coap_commands import CommandChannels

    outbox = CommandOutbox(AgentId("a"), limit=10)
    outbox.put(m.KillCommand(TaskId("t1")))
    channels = CommandChannels(_Handlers(outbox), capacity=2)  # type: ignore[arg-type]
    tasks = len(asyncio.all_tasks())
    window, observer = await channels.observe(AgentId("a"))
    assert len(window) == 1  # what waited in the outbox is in the first representation
    told: list[object] = []
    observer.listen(lambda: told.append(observer.ended))
    outbox.put(m.KillCommand(TaskId("t2")))
    outbox.put(m.KillCommand(TaskId("t3")))
    assert len(window) == 1 and not told  # filled on the loop, once for both
    await asyncio.sleep(0)
    assert len(window) == 2 and told == [None]  # at capacity: t3 waits in the outbox
    assert outbox.pending and len(asyncio.all_tasks()) == tasks
    assert window.confirm(window.cursor) == 2
    await asyncio.sleep(0)
    assert len(window) == 1 and told == [None, None]  # room again: t3 came in
    channels.window(AgentId("a"))
    outbox.attach()  # another channel takes the outbox over: the window ends, its observer is told why
    await asyncio.sleep(0)
    assert window.closed and channels.window(AgentId("a")) is None
    assert told[-1] is not None and "another channel" in str(told[-1])
    assert len(outbox) == 1  # t3, unconfirmed, went back to the outbox
