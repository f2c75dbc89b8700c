"""MasterService and the handler table over the real core, with an injected clock.

No sockets and no sleeps: the tick task is started with an interval it never
reaches; time moves by setting the clock and sending ``Tick()`` by hand.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from edgerm import messages as m
from edgerm.errors import MalformedMessage, NotSubscribed, Unavailable, UnknownAgent, UnknownCall
from edgerm.ids import AgentId, FrameworkId, TaskId
from edgerm.master.events import Tick
from edgerm.master.handlers import Handlers
from edgerm.master.service import EventStream, MasterService, ServiceOptions
from edgerm.master.state import MasterConfig
from edgerm.model import AgentInfo, FrameworkInfo, TaskInfo, TaskState, TaskStatus, WasmSpec
from edgerm.resources import Resources

MODULE = b"\0asm\1\0\0\0"
AGENT = AgentInfo(AgentId("a1"), "a1.test", Resources.parse("cpus:2;mem:1024"), {"executors": frozenset({"wasm"})}, 1.0)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(1000.0)


@pytest.fixture
async def service(clock: Clock) -> AsyncIterator[MasterService]:
    options = ServiceOptions(allocation_interval=3600, framework_heartbeat=3600, broker_url="mqtt://broker:1883")
    svc = MasterService(MasterConfig(master_id="m1", offer_timeout=30, unreachable_timeout=20), options, clock=clock)
    await svc.start()
    yield svc
    await svc.stop()


@pytest.fixture
def handlers(service: MasterService) -> Handlers:
    return Handlers(service)


async def _subscribe(handlers: Handlers, name: str = "fw", fid: str = "") -> EventStream:
    stream = await handlers.subscribe(m.Subscribe(FrameworkInfo(FrameworkId(fid), name)))
    first = await anext(stream)
    assert first == m.Subscribed(stream.framework_id, 3600, "m1")
    return stream


async def _launch(handlers: Handlers, stream: EventStream, task_id: str = "t1") -> TaskInfo:
    offers = await anext(stream)
    assert isinstance(offers, m.Offers)
    offer = offers.offers[0]
    task = TaskInfo(TaskId(task_id), "t", offer.agent_id, Resources.parse("cpus:1;mem:64"), WasmSpec(module=MODULE))
    await handlers.scheduler_call(m.Accept(stream.framework_id, (offer.id,), (task,)), stream.stream_id)
    return task


async def test_register_answers_with_master_id_and_broker(handlers: Handlers) -> None:
    reply = await handlers.agent_call(m.RegisterAgent(AGENT))
    assert reply == m.AgentRegistered(AgentId("a1"), "m1", "mqtt://broker:1883")
    assert handlers.service.core.agent_known(AgentId("a1"))


async def test_heartbeat_of_an_unknown_agent_is_refused(handlers: Handlers) -> None:
    with pytest.raises(UnknownAgent):
        await handlers.agent_call(m.AgentHeartbeat(AgentId("nobody")))
    with pytest.raises(UnknownAgent):
        handlers.agent_commands(AgentId("nobody"))


async def test_subscribe_assigns_an_id_and_streams_offers(handlers: Handlers) -> None:
    await handlers.agent_call(m.RegisterAgent(AGENT))
    stream = await _subscribe(handlers)
    assert stream.framework_id and stream.stream_id
    offers = await anext(stream)
    assert isinstance(offers, m.Offers) and offers.offers[0].agent_id == "a1"


async def test_accept_queues_a_launch_for_the_agent_and_keeps_the_module(handlers: Handlers) -> None:
    service = handlers.service
    await handlers.agent_call(m.RegisterAgent(AGENT))
    stream = await _subscribe(handlers)
    task = await _launch(handlers, stream)
    assert await handlers.agent_call(m.AgentHeartbeat(AgentId("a1"), (TaskId("t1"),))) == m.HeartbeatAck(True)
    commands = handlers.agent_commands(AgentId("a1"))
    launch = await anext(commands)
    assert isinstance(launch, m.LaunchCommand) and launch.task.task_id == task.task_id
    assert await handlers.agent_call(m.AgentHeartbeat(AgentId("a1"), (TaskId("t1"),))) == m.HeartbeatAck(False)
    assert handlers.module(WasmSpec(module=MODULE).sha256) == MODULE
    assert service.gauges()["edgerm_modules_stored"] == 1


async def test_status_update_is_acknowledged_and_forwarded(handlers: Handlers) -> None:
    await handlers.agent_call(m.RegisterAgent(AGENT))
    stream = await _subscribe(handlers)
    await _launch(handlers, stream)
    status = TaskStatus(TaskId("t1"), AgentId(""), TaskState.RUNNING, uuid="u1")
    reply = await handlers.agent_call(m.StatusUpdate(AgentId("a1"), status))
    assert reply == m.StatusAcknowledged(TaskId("t1"), "u1")
    update = await anext(stream)
    if isinstance(update, m.Offers):  # the accepted offer's leftovers, offered again at once
        update = await anext(stream)
    assert isinstance(update, m.Update)
    assert update.status.state is TaskState.RUNNING and update.status.agent_id == "a1"


async def test_status_of_another_agent_is_malformed(handlers: Handlers) -> None:
    await handlers.agent_call(m.RegisterAgent(AGENT))
    status = TaskStatus(TaskId("t1"), AgentId("a2"), TaskState.RUNNING, uuid="u1")
    with pytest.raises(MalformedMessage):
        await handlers.agent_call(m.StatusUpdate(AgentId("a1"), status))


async def test_stream_id_is_checked(handlers: Handlers) -> None:
    stream = await _subscribe(handlers)
    fid = stream.framework_id
    for bad in ("", "other"):
        with pytest.raises(NotSubscribed):
            await handlers.scheduler_call(m.Revive(fid), bad)
    with pytest.raises(NotSubscribed):
        await handlers.scheduler_call(m.Revive(FrameworkId("unknown")), stream.stream_id)
    await handlers.scheduler_call(m.Revive(fid), stream.stream_id)


async def test_streaming_calls_are_not_request_reply_calls(handlers: Handlers) -> None:
    with pytest.raises(UnknownCall):
        await handlers.agent_call(m.SubscribeAgent(AgentId("a1")))
    with pytest.raises(UnknownCall):
        await handlers.scheduler_call(m.Subscribe(FrameworkInfo(FrameworkId("f"), "f")), "s")


async def test_closing_the_stream_disconnects_the_framework(handlers: Handlers) -> None:
    service = handlers.service
    await handlers.agent_call(m.RegisterAgent(AGENT))
    stream = await _subscribe(handlers)
    await anext(stream)  # the offer
    await stream.aclose()
    assert not service.core.framework_active(stream.framework_id)
    assert service.core.offers_of(stream.framework_id) == []
    with pytest.raises(NotSubscribed):
        await handlers.scheduler_call(m.Revive(stream.framework_id), stream.stream_id)


async def test_resubscribing_replaces_the_stream(handlers: Handlers) -> None:
    service = handlers.service
    await handlers.agent_call(m.RegisterAgent(AGENT))
    old = await _subscribe(handlers)
    await anext(old)  # the offer, now stale
    new = await _subscribe(handlers, fid=old.framework_id)
    assert new.framework_id == old.framework_id and new.stream_id != old.stream_id
    with pytest.raises(StopAsyncIteration):
        await anext(old)
    await old.aclose()  # the old transport finishing does not disconnect the new stream
    assert service.core.framework_active(new.framework_id)
    offers = await anext(new)
    assert isinstance(offers, m.Offers)
    with pytest.raises(NotSubscribed):
        await handlers.scheduler_call(m.Revive(old.framework_id), old.stream_id)


async def test_teardown_ends_the_stream(handlers: Handlers) -> None:
    stream = await _subscribe(handlers)
    await handlers.scheduler_call(m.Teardown(stream.framework_id), stream.stream_id)
    with pytest.raises(StopAsyncIteration):
        await anext(stream)
    assert not handlers.service.core.framework_known(stream.framework_id)


async def test_lost_agent_closes_its_channel_and_frameworks_hear_failure(handlers: Handlers, clock: Clock) -> None:
    service = handlers.service
    await handlers.agent_call(m.RegisterAgent(AGENT))
    commands = handlers.agent_commands(AgentId("a1"))
    stream = await _subscribe(handlers)
    await anext(stream)  # the offer
    for _ in range(40):  # more than 3 heartbeat intervals of 1 s: unreachable, then past its timeout of 20 s
        clock.now += 0.6  # a longer gap between Ticks would look like a stall of the master itself
        service.handle(Tick())
    with pytest.raises(StopAsyncIteration):
        await anext(commands)
    events = [await anext(stream), await anext(stream)]
    assert m.Failure(AgentId("a1")) in events
    assert any(isinstance(e, m.Rescind) for e in events)
    with pytest.raises(UnknownAgent):
        await handlers.agent_call(m.AgentHeartbeat(AgentId("a1")))


async def test_a_framework_that_reads_too_slowly_is_disconnected(clock: Clock) -> None:
    options = ServiceOptions(allocation_interval=3600, framework_heartbeat=3600, max_stream_events=2)
    service = MasterService(MasterConfig(), options, clock=clock)
    await service.start()
    try:
        handlers = Handlers(service)
        stream = await handlers.subscribe(m.Subscribe(FrameworkInfo(FrameworkId("slow"), "slow")))
        await handlers.scheduler_call(
            m.Reconcile(FrameworkId("slow"), ((TaskId("x"), AgentId("a")),)), stream.stream_id
        )
        assert len(stream) == 2  # Subscribed and one update: full
        await handlers.scheduler_call(
            m.Reconcile(FrameworkId("slow"), ((TaskId("y"), AgentId("a")),)), stream.stream_id
        )
        assert stream.closed
        assert not service.core.framework_active(FrameworkId("slow"))
        assert service.metrics.events_dropped == 1
    finally:
        await service.stop()


async def test_stop_ends_streams_and_refuses_calls(handlers: Handlers) -> None:
    service = handlers.service
    await handlers.agent_call(m.RegisterAgent(AGENT))
    commands = handlers.agent_commands(AgentId("a1"))
    stream = await _subscribe(handlers)
    await service.stop()
    assert not service.running
    with pytest.raises(StopAsyncIteration):
        await anext(stream)
    with pytest.raises(StopAsyncIteration):
        await anext(commands)
    await stream.aclose()  # after stop: nothing to report, no error
    with pytest.raises(Unavailable):
        await handlers.agent_call(m.AgentHeartbeat(AgentId("a1")))
    with pytest.raises(Unavailable):
        await handlers.subscribe(m.Subscribe(FrameworkInfo(FrameworkId(""), "late")))


async def test_metrics_count_calls_errors_and_cluster_figures(handlers: Handlers) -> None:
    await handlers.agent_call(m.RegisterAgent(AGENT))
    await handlers.agent_call(m.AgentHeartbeat(AgentId("a1")))
    await _subscribe(handlers)
    handlers.failed(UnknownAgent("x"))
    text = handlers.metrics_text()
    assert 'edgerm_calls_total{api="agent",type="REGISTER"} 1' in text
    assert 'edgerm_calls_total{api="agent",type="HEARTBEAT"} 1' in text
    assert 'edgerm_calls_total{api="scheduler",type="SUBSCRIBE"} 1' in text
    assert 'edgerm_errors_total{code="UNKNOWN_AGENT"} 1' in text
    assert "edgerm_heartbeats_received_total 1" in text
    assert 'edgerm_agents{state="active"} 1\n' in text and 'edgerm_frameworks{state="active"} 1\n' in text
    assert "edgerm_offers_outstanding 1\n" in text
    assert "edgerm_framework_streams 1\n" in text
    assert "# TYPE edgerm_calls_total counter" in text
