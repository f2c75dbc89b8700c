"""The master's /metrics through the real service, core and handler table, parsed by prometheus_client.

An injected clock moves time; Ticks are sent by hand. Each test drives what
an operator would alert on (a lost agent, late heartbeats, failed tasks, a
framework that declines or lets offers expire) and reads it back from the
exposition alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from edgerm import messages as m
from edgerm.ids import AgentId, FrameworkId, TaskId
from edgerm.master.events import Tick
from edgerm.master.handlers import Handlers
from edgerm.master.service import EventStream, MasterService, ServiceOptions
from edgerm.master.state import MasterConfig
from edgerm.model import AgentInfo, Filters, FrameworkInfo, Reason, TaskInfo, TaskState, TaskStatus, WasmSpec
from edgerm.promtext import Counter, Histogram, Writer
from edgerm.resources import Resources

MODULE = b"\0asm\1\0\0\0"


def agent(
    name: str, resources: str = "cpus:2;mem:1024;disk:100;cam:device(/dev/video0)", interval: float = 1.0
) -> AgentInfo:
    attributes = {"executors": frozenset({"wasm"})}
    return AgentInfo(AgentId(name), f"{name}.test", Resources.parse(resources), attributes, interval)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(1000.0)


@pytest.fixture
async def handlers(clock: Clock) -> AsyncIterator[Handlers]:
    options = ServiceOptions(allocation_interval=3600, framework_heartbeat=3600)
    config = MasterConfig(master_id="m1", offer_timeout=30, max_completed_tasks=1, unreachable_timeout=5.0)
    service = MasterService(config, options, clock=clock)
    await service.start()
    yield Handlers(service)
    await service.stop()


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(handlers: Handlers) -> Samples:
    """Every sample of the exposition, by (name, sorted labels); fails if prometheus_client cannot parse it."""
    out: Samples = {}
    for family in text_string_to_metric_families(handlers.metrics_text()):
        assert family.documentation, f"{family.name} has no HELP"
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def subscribe(handlers: Handlers, name: str = "fw") -> EventStream:
    stream = await handlers.subscribe(m.Subscribe(FrameworkInfo(FrameworkId(""), name)))
    assert isinstance(await anext(stream), m.Subscribed)
    return stream


async def next_offers(stream: EventStream) -> m.Offers:
    async with asyncio.timeout(5):  # no sleeping: the offers are queued already, or the test is wrong
        while True:
            event = await anext(stream)
            if isinstance(event, m.Offers):
                return event


async def test_resources_agents_and_tasks_are_exposed_per_agent_and_cluster(handlers: Handlers, clock: Clock) -> None:
    await handlers.agent_call(m.RegisterAgent(agent("a1")))
    await handlers.agent_call(m.RegisterAgent(agent("a2", "cpus:4;mem:2048")), transport="coap")
    stream = await subscribe(handlers)
    offers = (await next_offers(stream)).offers
    by_agent = {o.agent_id: o for o in offers}
    task = TaskInfo(TaskId("t1"), "t", AgentId("a1"), Resources.parse("cpus:0.5;mem:64"), WasmSpec(module=MODULE))
    await handlers.scheduler_call(
        m.Accept(stream.framework_id, (by_agent[AgentId("a1")].id,), (task,)), stream.stream_id
    )

    s = scrape(handlers)
    assert value(s, "edgerm_agent_resources", agent_id="a1", resource="cpus", kind="total") == 2
    assert value(s, "edgerm_agent_resources", agent_id="a1", resource="cpus", kind="used") == 0.5
    assert value(s, "edgerm_agent_resources", agent_id="a1", resource="devices", kind="total") == 1
    assert value(s, "edgerm_agent_resources", agent_id="a2", resource="mem", kind="offered") == 2048
    assert value(s, "edgerm_cluster_resources", resource="cpus", kind="total") == 6
    assert value(s, "edgerm_cluster_resources", resource="mem", kind="used") == 64
    assert value(s, "edgerm_agents", state="active") == 2
    assert value(s, "edgerm_agent_info", agent_id="a2", hostname="a2.test", transport="coap", state="active") == 1
    assert value(s, "edgerm_agent_registrations_total", kind="new") == 2
    assert value(s, "edgerm_tasks", state="STAGING") == 1
    assert value(s, "edgerm_tasks_launched_total", executor="wasm") == 1
    fid = stream.framework_id
    # One offer per agent, then the accepted offer's leftovers offered again at once (no filter on them).
    assert value(s, "edgerm_offers_total", framework_id=fid, outcome="sent") == 3
    assert value(s, "edgerm_offers_total", framework_id=fid, outcome="accepted") == 1
    assert value(s, "edgerm_offers_outstanding") == 2
    # DRF: it holds all of a2 and all of a1 (0.5 cpu used, the rest offered again): 6 of 6 cpus.
    assert value(s, "edgerm_framework_dominant_share", framework_id=fid) == pytest.approx(1.0)
    assert value(s, "edgerm_request_seconds_count", api="agent", type="REGISTER", transport="coap") == 1
    assert value(s, "edgerm_request_seconds_count", api="scheduler", type="ACCEPT", transport="http") == 1
    assert value(s, "edgerm_master_process_resident_memory_bytes") > 0
    assert any(name == "edgerm_master_build_info" for name, _ in s)


async def test_outcomes_survive_pruning_and_losses_are_counted(handlers: Handlers, clock: Clock) -> None:
    await handlers.agent_call(m.RegisterAgent(agent("a1")))
    stream = await subscribe(handlers)
    for n, state in enumerate((TaskState.FINISHED, TaskState.FAILED, TaskState.FAILED)):
        offer = (await next_offers(stream)).offers[0]
        task = TaskInfo(TaskId(f"t{n}"), "t", AgentId("a1"), Resources.parse("cpus:0.5"), WasmSpec(module=MODULE))
        accept = m.Accept(stream.framework_id, (offer.id,), (task,), Filters(refuse_seconds=0))
        await handlers.scheduler_call(accept, stream.stream_id)
        reason = Reason.COMMAND_EXITED if state is TaskState.FAILED else Reason.UNSPECIFIED
        status = TaskStatus(task.task_id, AgentId("a1"), state, reason, uuid=f"u{n}")
        await handlers.agent_call(m.StatusUpdate(AgentId("a1"), status))
        await handlers.scheduler_call(
            m.Acknowledge(stream.framework_id, AgentId("a1"), task.task_id, f"u{n}"), stream.stream_id
        )
    # a running task, then the agent goes silent and is lost
    offer = (await next_offers(stream)).offers[0]
    task = TaskInfo(TaskId("t9"), "t", AgentId("a1"), Resources.parse("cpus:0.5"), WasmSpec(module=MODULE))
    await handlers.scheduler_call(m.Accept(stream.framework_id, (offer.id,), (task,)), stream.stream_id)
    await handlers.agent_call(
        m.StatusUpdate(AgentId("a1"), TaskStatus(task.task_id, AgentId("a1"), TaskState.RUNNING, uuid="r"))
    )
    assert value(scrape(handlers), "edgerm_tasks", state="RUNNING") == 1

    clock.now += 2.0  # a heartbeat 1 s late
    await handlers.agent_call(m.AgentHeartbeat(AgentId("a1"), (task.task_id,)))
    clock.now += 1.6  # silent: more than 1.5 intervals without a heartbeat
    assert value(scrape(handlers), "edgerm_agents", state="silent") == 1
    for _ in range(50):  # unreachable after 3 intervals, lost 5 s later (ticks as the service makes them)
        clock.now += 0.25
        handlers.service.handle(Tick())

    s = scrape(handlers)
    assert len(handlers.service.core.tasks()) <= 2  # pruned: the core keeps at most one ended task (+ unacked)
    assert value(s, "edgerm_task_outcomes_total", state="FINISHED", reason="UNSPECIFIED") == 1
    assert value(s, "edgerm_task_outcomes_total", state="FAILED", reason="COMMAND_EXITED") == 2
    assert value(s, "edgerm_task_outcomes_total", state="LOST", reason="AGENT_LOST") == 1
    assert value(s, "edgerm_tasks", state="RUNNING") == 0
    assert value(s, "edgerm_agents_lost_total") == 1
    assert value(s, "edgerm_agents", state="lost") == 1 and value(s, "edgerm_agents", state="active") == 0
    assert value(s, "edgerm_heartbeat_lateness_seconds_count", transport="http") == 1
    assert value(s, "edgerm_heartbeat_lateness_seconds_bucket", transport="http", le="0.5") == 0
    assert value(s, "edgerm_heartbeat_lateness_seconds_bucket", transport="http", le="1.0") == 1
    assert value(s, "edgerm_cluster_resources", resource="cpus", kind="total") == 0
    assert value(s, "edgerm_allocation_cycle_seconds_count") == 50  # one per Tick

    await handlers.agent_call(m.RegisterAgent(agent("a1")))  # it comes back
    s = scrape(handlers)
    assert value(s, "edgerm_agent_registrations_total", kind="new") == 2  # it was forgotten when lost
    assert value(s, "edgerm_agents", state="lost") == 0 and value(s, "edgerm_agents", state="active") == 1


async def test_offer_outcomes_per_framework(handlers: Handlers, clock: Clock) -> None:
    await handlers.agent_call(m.RegisterAgent(agent("a1", interval=60)))
    await handlers.agent_call(m.RegisterAgent(agent("a2", interval=60)))
    decliner = await subscribe(handlers, "decliner")
    offers = (await next_offers(decliner)).offers
    assert len(offers) == 2
    fid = decliner.framework_id
    await handlers.scheduler_call(m.Decline(fid, (offers[0].id,)), decliner.stream_id)
    clock.now += 31  # the other one expires unanswered; the declined agent's filter is over, so it is offered again
    handlers.service.handle(Tick())
    s = scrape(handlers)
    assert value(s, "edgerm_offers_total", framework_id=fid, outcome="declined") == 1
    assert value(s, "edgerm_offers_total", framework_id=fid, outcome="expired") == 1
    assert value(s, "edgerm_offers_total", framework_id=fid, outcome="sent") == 3
    reoffered = (await next_offers(decliner)).offers
    assert [o.agent_id for o in reoffered] == [offers[0].agent_id]
    # re-registering rescinds its offer
    await handlers.agent_call(m.RegisterAgent(agent(offers[0].agent_id, interval=60)))
    s = scrape(handlers)
    assert value(s, "edgerm_offers_total", framework_id=fid, outcome="rescinded") == 1
    assert value(s, "edgerm_agent_registrations_total", kind="re") == 1
    assert value(s, "edgerm_offers_total", framework_id=fid, outcome="sent") == 4  # and it is offered afresh
    assert value(s, "edgerm_offers_outstanding") == 1

    await handlers.scheduler_call(m.Teardown(fid), decliner.stream_id)
    s = scrape(handlers)
    assert value(s, "edgerm_offers_total", framework_id=fid, outcome="sent") == 0  # its series are gone
    assert value(s, "edgerm_framework_teardowns_total") == 1


def test_histograms_and_counters_render_in_the_reference_format() -> None:
    c = Counter("x_total", "Things.", ("kind",))
    c.inc('we"ird\nlabel\\')
    h = Histogram("lat_seconds", "Latency.", ("op",), (0.1, 1.0))
    for v in (0.05, 0.5, 5.0):
        h.observe(v, "get")
    w = Writer()
    w.counter(c)
    w.histogram(h)
    families = {f.name: f for f in text_string_to_metric_families(w.text())}
    assert families["x"].samples[0].labels == {"kind": 'we"ird\nlabel\\'}
    buckets = [s for s in families["lat_seconds"].samples if s.name == "lat_seconds_bucket"]
    assert [(s.labels["le"], s.value) for s in buckets] == [("0.1", 1), ("1.0", 2), ("+Inf", 3)]
    with pytest.raises(ValueError):
        Counter("bad", "no _total")


async def test_a_sliced_scrape_yields_the_loop_and_renders_what_one_pass_renders(
    handlers: Handlers, clock: Clock
) -> None:
    import edgerm.master.metrics as metrics_module

    for i in range(25):
        await handlers.agent_call(m.RegisterAgent(agent(f"a{i:02d}")))
    whole = handlers.metrics_text()
    turns = 0

    async def count_turns() -> None:
        nonlocal turns
        while True:
            await asyncio.sleep(0)
            turns += 1

    counter = asyncio.create_task(count_turns())
    await asyncio.sleep(0)
    service = handlers.service
    text = await metrics_module.render_metrics_sliced(
        handlers._metrics, service.core, service.gauges, service.now(), service.lost_recently, slice_size=4
    )
    counter.cancel()
    assert turns >= 25 // 4  # the loop ran between the slices
    skip = ("edgerm_event_loop", "edgerm_gc_", "edgerm_master_process_", "edgerm_request")  # they move alone

    def stable(t: str) -> list[str]:
        return [line for line in t.splitlines() if not line.startswith(skip)]

    assert stable(text) == stable(whole)
    assert await handlers.metrics_text_sliced() and text.count('edgerm_agent_info{agent_id="a') == 25
