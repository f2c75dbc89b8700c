"""HttpDriver against a master speaking the real scheduler protocol on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

import pytest

from edgerm import messages as m
from edgerm.errors import (
    InsufficientResources,
    MalformedMessage,
    NotSubscribed,
    Unavailable,
    UnknownOffer,
    WireError,
)
from edgerm.frameworks import Framework, FrameworkDriver, HttpDriver, run, wasm_task
from edgerm.ids import AgentId, FrameworkId, OfferId, TaskId
from edgerm.model import Filters, Offer, TaskState, TaskStatus
from edgerm.resources import Resources

WASM = b"\0asm\1\0\0\0"


def offer(n: int = 1) -> Offer:
    return Offer(
        OfferId(f"o{n}"),
        FrameworkId("fw-1"),
        AgentId("a1"),
        "host-a",
        Resources.parse("cpus:2;mem:256"),
        {"executors": frozenset({"wasm"})},
    )


def status(task: str, state: TaskState, uuid: str = "") -> TaskStatus:
    return TaskStatus(TaskId(task), AgentId("a1"), state, uuid=uuid)


class Recorder(Framework):
    """Records every callback as a tuple, in order; optional hooks per callback."""

    name = "recorder"

    def __init__(self) -> None:
        self.seen: list[tuple[Any, ...]] = []
        self.hooks: dict[str, Callable[[FrameworkDriver, tuple[Any, ...]], Any]] = {}
        self._changed = asyncio.Condition()

    async def _note(self, driver: FrameworkDriver, entry: tuple[Any, ...]) -> None:
        self.seen.append(entry)
        async with self._changed:
            self._changed.notify_all()
        hook = self.hooks.get(entry[0])
        if hook is not None:
            await hook(driver, entry)

    async def wait_until(self, pred: Callable[[], bool], within: float = 5.0) -> None:
        async with asyncio.timeout(within), self._changed:
            await self._changed.wait_for(pred)

    def kinds(self) -> list[str]:
        return [e[0] for e in self.seen]

    async def registered(self, driver: FrameworkDriver, framework_id: FrameworkId, master_id: str) -> None:
        await self._note(driver, ("registered", framework_id, master_id))

    async def resource_offers(self, driver: FrameworkDriver, offers: list[Offer]) -> None:
        await self._note(driver, ("offers", [o.id for o in offers]))

    async def offer_rescinded(self, driver: FrameworkDriver, offer_id: OfferId) -> None:
        await self._note(driver, ("rescinded", offer_id))

    async def status_update(self, driver: FrameworkDriver, status: TaskStatus) -> None:
        await self._note(driver, ("status", status.task_id, status.state, status.uuid))

    async def agent_lost(self, driver: FrameworkDriver, agent_id: AgentId) -> None:
        await self._note(driver, ("agent_lost", agent_id))

    async def error(self, driver: FrameworkDriver, code: str, message: str) -> None:
        await self._note(driver, ("error", code, message))

    async def disconnected(self, driver: FrameworkDriver) -> None:
        await self._note(driver, ("disconnected",))


async def started(fake: Any, fw: Recorder, **opts: Any) -> tuple[HttpDriver, asyncio.Task[None]]:
    opts.setdefault("backoff_initial", 0.01)
    driver = HttpDriver(fw, fake.url, **opts)
    task = asyncio.create_task(driver.run())
    await fw.wait_until(lambda: "registered" in fw.kinds())
    return driver, task


async def finish(driver: HttpDriver, task: asyncio.Task[None]) -> None:
    await driver.stop(teardown=False)
    async with asyncio.timeout(5):
        await task


async def test_events_reach_callbacks_in_order(fake_master: Any) -> None:
    fw = Recorder()
    driver, task = await started(fake_master, fw)
    assert driver.framework_id == "fw-1" and driver.master_id == "fake-master" and driver.subscribed
    assert fake_master.subscriptions == [m.Subscribe(m.FrameworkInfo(FrameworkId(""), "recorder"))]
    fake_master.push(m.Offers((offer(1), offer(2))))
    fake_master.push(m.Rescind(OfferId("o2")))
    fake_master.push(m.Update(status("t1", TaskState.RUNNING)))
    fake_master.push(m.Failure(AgentId("a9")))
    fake_master.push(m.ErrorEvent("UNAVAILABLE", "going down"))
    await fw.wait_until(lambda: len(fw.seen) == 6)
    assert fw.seen == [
        ("registered", "fw-1", "fake-master"),
        ("offers", ["o1", "o2"]),
        ("rescinded", "o2"),
        ("status", "t1", TaskState.RUNNING, ""),
        ("agent_lost", "a9"),
        ("error", "UNAVAILABLE", "going down"),
    ]
    await finish(driver, task)
    assert fake_master.calls == []  # no uuid, no acknowledgement; stop without teardown


async def test_calls_reach_the_master_with_the_stream_id(fake_master: Any) -> None:
    fw = Recorder()
    driver, task = await started(fake_master, fw)
    t = wasm_task(offer(), "w", WASM)
    await driver.accept([OfferId("o1")], [t], Filters(7.0))
    await driver.decline([OfferId("o2")], refuse_seconds=30)
    await driver.kill(TaskId("t1"), AgentId("a1"))
    await driver.kill(TaskId("t2"))
    await driver.revive()
    await driver.suppress()
    await driver.reconcile([(TaskId("t1"), AgentId("a1"))])
    await driver.reconcile()
    fid = FrameworkId("fw-1")
    import dataclasses

    assert fake_master.calls == [
        m.Accept(fid, (OfferId("o1"),), (dataclasses.replace(t, framework_id=fid),), Filters(7.0)),
        m.Decline(fid, (OfferId("o2"),), Filters(30)),
        m.Kill(fid, TaskId("t1"), AgentId("a1")),
        m.Kill(fid, TaskId("t2"), AgentId("")),
        m.Revive(fid),
        m.Suppress(fid),
        m.Reconcile(fid, ((TaskId("t1"), AgentId("a1")),)),
        m.Reconcile(fid, ()),
    ]
    await finish(driver, task)


@pytest.mark.parametrize("error", [UnknownOffer("offer o1 is gone"), InsufficientResources("cpus: 3 > 2")])
async def test_typed_error_reply_raises_its_class(fake_master: Any, error: WireError) -> None:
    fw = Recorder()
    driver, task = await started(fake_master, fw)
    fake_master.fail_next(m.Accept, error)
    with pytest.raises(type(error)) as caught:
        await driver.accept([OfferId("o1")], [wasm_task(offer(), "w", WASM)])
    assert caught.value.message == error.message
    assert fake_master.calls == []
    await driver.revive()  # the driver is still usable
    await finish(driver, task)


async def test_update_acknowledged_after_the_callback_returns(fake_master: Any) -> None:
    fw = Recorder()
    acks_during_callback: list[int] = []

    async def during(driver: FrameworkDriver, entry: tuple[Any, ...]) -> None:
        acks_during_callback.append(len(fake_master.calls_of(m.Acknowledge)))

    fw.hooks["status"] = during
    driver, task = await started(fake_master, fw)
    fake_master.push(m.Update(status("t1", TaskState.RUNNING, uuid="u1")))
    await fake_master.wait_until(lambda: not fake_master.unacked)
    assert acks_during_callback == [0]
    assert fake_master.calls == [m.Acknowledge(FrameworkId("fw-1"), AgentId("a1"), TaskId("t1"), "u1")]
    await finish(driver, task)


async def test_automatic_acknowledgements_are_batched_in_order(fake_master: Any) -> None:
    fw = Recorder()
    driver, task = await started(fake_master, fw)
    for i in range(50):
        fake_master.push(m.Update(status(f"t{i}", TaskState.RUNNING, uuid=f"u{i}")))
    await fake_master.wait_until(lambda: len(fake_master.calls_of(m.Acknowledge)) >= 1 and not fake_master.unacked)
    acks = fake_master.calls_of(m.Acknowledge)
    assert [one.uuid for call in acks for one in call.each()] == [f"u{i}" for i in range(50)]  # each once, in order
    assert len(acks) < 50  # those that came while one was in flight went together
    await finish(driver, task)


@pytest.mark.expect_errors("callback status_update raised")  # user code raising: logged with its traceback
async def test_failed_callback_is_redelivered_after_reconnect(fake_master: Any) -> None:
    fw = Recorder()
    failures = [RuntimeError("first delivery fails")]

    async def flaky(driver: FrameworkDriver, entry: tuple[Any, ...]) -> None:
        if failures:
            raise failures.pop()

    fw.hooks["status"] = flaky
    driver, task = await started(fake_master, fw)
    fake_master.push(m.Update(status("t1", TaskState.FINISHED, uuid="u1")))
    await fw.wait_until(lambda: "status" in fw.kinds())
    fake_master.push(m.Heartbeat())  # dispatch moved past the update without acknowledging it
    await asyncio.sleep(0.05)
    assert fake_master.calls_of(m.Acknowledge) == [] and "u1" in fake_master.unacked
    fake_master.drop()
    await fake_master.wait_until(lambda: not fake_master.unacked)
    assert fw.kinds() == ["registered", "status", "disconnected", "registered", "status"]
    assert fw.seen[3] == ("registered", "fw-1", "fake-master")
    assert fake_master.subscriptions[1].framework.id == "fw-1"  # resumed, not a new framework
    await finish(driver, task)


async def test_manual_acknowledgement(fake_master: Any) -> None:
    class Manual(Recorder):
        auto_acknowledge = False

    fw = Manual()
    kept: list[TaskStatus] = []

    async def keep(driver: FrameworkDriver, entry: tuple[Any, ...]) -> None:
        kept.append(status(entry[1], entry[2], entry[3]))

    fw.hooks["status"] = keep
    driver, task = await started(fake_master, fw)
    fake_master.push(m.Update(status("t1", TaskState.RUNNING, uuid="u1")))
    fake_master.push(m.Heartbeat())
    await fw.wait_until(lambda: bool(kept))
    await asyncio.sleep(0.05)
    assert fake_master.calls == []
    await driver.acknowledge(kept[0])
    assert fake_master.unacked == {}
    await finish(driver, task)


async def test_missed_heartbeats_make_the_driver_resubscribe(fake_master: Any) -> None:
    fw = Recorder()
    driver, task = await started(fake_master, fw)
    fake_master.heartbeats = False  # the link stays open but goes silent
    await fw.wait_until(lambda: fw.kinds().count("registered") == 2)
    assert fw.kinds() == ["registered", "disconnected", "registered"]
    assert [s.framework.id for s in fake_master.subscriptions] == ["", "fw-1"]
    await finish(driver, task)


async def test_heartbeats_keep_an_idle_stream_alive(fake_master: Any) -> None:
    fw = Recorder()
    driver, task = await started(fake_master, fw)
    await asyncio.sleep(fake_master.heartbeat_interval * 4)  # past the dead-stream limit (3)
    assert fw.kinds() == ["registered"] and fake_master.streams_opened == 1
    await finish(driver, task)


async def test_calls_while_disconnected_raise_not_subscribed(fake_master: Any) -> None:
    fw = Recorder()
    raised: list[type[Exception]] = []

    async def try_call(driver: FrameworkDriver, entry: tuple[Any, ...]) -> None:
        try:
            await driver.revive()
        except NotSubscribed as e:
            raised.append(type(e))

    fw.hooks["disconnected"] = try_call
    driver, task = await started(fake_master, fw)
    fake_master.drop()
    await fw.wait_until(lambda: fw.kinds().count("registered") == 2)
    assert raised == [NotSubscribed]
    await finish(driver, task)


async def test_stop_with_teardown_from_a_callback(fake_master: Any) -> None:
    fw = Recorder()

    async def stop_when_finished(driver: FrameworkDriver, entry: tuple[Any, ...]) -> None:
        if entry[2] is TaskState.FINISHED:
            await driver.stop()

    fw.hooks["status"] = stop_when_finished
    driver, task = await started(fake_master, fw)
    fake_master.push(m.Update(status("t1", TaskState.FINISHED, uuid="u1")))
    fake_master.push(m.Offers((offer(),)))  # after stop: never dispatched
    async with asyncio.timeout(5):
        await task
    assert fake_master.calls == [m.Teardown(FrameworkId("fw-1"))]  # stopped before acknowledging
    assert "offers" not in fw.kinds() and "disconnected" not in fw.kinds()
    with pytest.raises(NotSubscribed):
        await driver.revive()


async def test_stop_without_teardown_from_another_task(fake_master: Any) -> None:
    fw = Recorder()
    driver, task = await started(fake_master, fw)
    await driver.stop(teardown=False)
    assert task.done() and task.exception() is None
    await driver.stop()  # idempotent
    assert fake_master.calls == []
    await fake_master.wait_until(lambda: not fake_master.stream_open)


async def test_resume_with_a_known_framework_id(fake_master: Any) -> None:
    fw = Recorder()
    driver, task = await started(fake_master, fw, framework_id=FrameworkId("fw-old"), name="renamed")
    assert fake_master.subscriptions == [m.Subscribe(m.FrameworkInfo(FrameworkId("fw-old"), "renamed"))]
    assert fw.seen == [("registered", "fw-old", "fake-master")]
    await finish(driver, task)


async def test_refused_subscription_is_raised(fake_master: Any) -> None:
    fake_master.fail_subscribe(MalformedMessage("framework name missing"))
    driver = HttpDriver(Recorder(), fake_master.url)
    with pytest.raises(MalformedMessage, match="framework name missing"):
        await driver.run()


async def test_unavailable_subscription_is_retried(fake_master: Any) -> None:
    fake_master.fail_subscribe(Unavailable("starting up"))
    fw = Recorder()
    driver = HttpDriver(fw, fake_master.url, backoff_initial=0.01)
    task = asyncio.create_task(driver.run())
    await asyncio.sleep(0.05)
    assert "registered" not in fw.kinds()
    fake_master.fail_subscribe(None)
    await fw.wait_until(lambda: "registered" in fw.kinds())
    await finish(driver, task)


async def test_unreachable_master_gives_up_after_max_retries() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    driver = HttpDriver(Recorder(), f"http://127.0.0.1:{port}", backoff_initial=0.01, max_retries=2)
    with pytest.raises(NotSubscribed):
        await driver.revive()
    with pytest.raises(Unavailable, match="after 3 attempts"):
        await driver.run()


async def test_transport_failures_of_a_call_raise_unavailable(fake_master: Any) -> None:
    fw = Recorder()
    driver, task = await started(fake_master, fw, call_timeout=0.2)
    fake_master.break_calls = "reset"
    with pytest.raises(Unavailable, match="unreachable"):
        await driver.revive()
    fake_master.break_calls = "stall"
    with pytest.raises(Unavailable, match=r"did not answer within 0\.2s"):
        await driver.revive()
    fake_master.break_calls = "500"
    with pytest.raises(Unavailable, match="HTTP 500"):
        await driver.revive()
    fake_master.break_calls = "404"
    with pytest.raises(WireError, match="unexpected HTTP 404") as caught:
        await driver.revive()
    assert type(caught.value) is WireError
    fake_master.break_calls = None
    await driver.revive()
    assert fake_master.calls == [m.Revive(FrameworkId("fw-1"))] and fw.kinds() == ["registered"]
    await finish(driver, task)


async def test_run_returns_when_the_framework_stops(fake_master: Any) -> None:
    class StopAtOnce(Framework):
        name = "brief"

        async def registered(self, driver: FrameworkDriver, framework_id: FrameworkId, master_id: str) -> None:
            await driver.stop()

    async with asyncio.timeout(5):
        await run(StopAtOnce(), fake_master.url)
    assert fake_master.subscriptions[0].framework.name == "brief"
    assert fake_master.calls == [m.Teardown(FrameworkId("fw-1"))]
