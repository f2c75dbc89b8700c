"""Wire round trips are exact: from_pb(to_pb(x)) == x for every message kind."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from edgerm import messages as m
from edgerm import wire
from edgerm.ids import AgentId, FrameworkId, OfferId, TaskId
from edgerm.model import (
    AgentInfo,
    DockerSpec,
    Filters,
    FrameworkInfo,
    Network,
    Offer,
    PortMapping,
    PullPolicy,
    Reason,
    RestartPolicy,
    Source,
    TaskInfo,
    TaskState,
    TaskStatus,
    WasmSpec,
)
from edgerm.resources import Device, Range, Resources

names = st.from_regex(r"[a-z][a-z0-9_]{0,8}", fullmatch=True)
# Text as the wire accepts it (edgerm.limits): no control characters.
text = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=20)
ids = st.from_regex(r"[a-f0-9]{1,12}", fullmatch=True)
amounts = st.integers(min_value=1, max_value=10**6).map(lambda n: n / 1000)


@st.composite
def ranges(draw: st.DrawFn) -> tuple[Range, ...]:
    starts = draw(st.lists(st.integers(0, 60000), min_size=1, max_size=4))
    return tuple(Range(s, s + draw(st.integers(0, 100))) for s in starts)


resources = st.builds(
    Resources,
    scalars=st.dictionaries(names, amounts, max_size=4),
    ranges=st.dictionaries(names, ranges(), max_size=2),
    sets=st.dictionaries(names, st.frozensets(names, min_size=1, max_size=3), max_size=2),
    devices=st.dictionaries(names, st.builds(Device, handle=text, shared=st.booleans()), max_size=2),
)
attributes = st.dictionaries(names, st.one_of(text, st.frozensets(names, min_size=1, max_size=3)), max_size=4)
containers = st.one_of(
    st.builds(WasmSpec, module=st.binary(min_size=1, max_size=64), module_sha256=st.just(""), time_limit=amounts),
    st.builds(
        WasmSpec, module=st.just(b""), module_sha256=st.from_regex(r"[a-f0-9]{64}", fullmatch=True), time_limit=amounts
    ),
    st.builds(
        DockerSpec,
        image=names,
        network=st.sampled_from(Network),
        port_mappings=st.lists(
            st.builds(PortMapping, st.integers(1, 65535), st.integers(1, 65535), st.sampled_from(["tcp", "udp"])),
            max_size=2,
        ).map(tuple),
        pull_policy=st.sampled_from(PullPolicy),
    ),
)
tasks = st.builds(
    TaskInfo,
    task_id=ids.map(TaskId),
    name=text,
    agent_id=ids.map(AgentId),
    resources=resources,
    container=containers,
    args=st.lists(text, max_size=3).map(tuple),
    env=st.dictionaries(names, text, max_size=3),
    kill_grace=amounts,
    framework_id=ids.map(FrameworkId),
    restart_policy=st.sampled_from(RestartPolicy),
    secret_env=st.dictionaries(names, text, max_size=2),
    labels=st.dictionaries(names, text, max_size=2),
)
statuses = st.builds(
    TaskStatus,
    task_id=ids.map(TaskId),
    agent_id=ids.map(AgentId),
    state=st.sampled_from(TaskState),
    reason=st.sampled_from(Reason),
    message=text,
    uuid=ids,
    timestamp=amounts,
    source=st.sampled_from(Source),
    exit_code=st.integers(-(2**31), 2**31 - 1),
)
agents = st.builds(
    AgentInfo,
    id=ids.map(AgentId),
    hostname=text,
    resources=resources,
    attributes=attributes,
    heartbeat_interval=amounts,
)
offers = st.builds(
    Offer,
    id=ids.map(OfferId),
    framework_id=ids.map(FrameworkId),
    agent_id=ids.map(AgentId),
    hostname=text,
    resources=resources,
    attributes=attributes,
    expires_at=amounts,
)
fid = ids.map(FrameworkId)
offer_ids = st.lists(ids.map(OfferId), max_size=3).map(tuple)
filters = st.builds(Filters, refuse_seconds=amounts)

scheduler_calls = st.one_of(
    st.builds(m.Subscribe, st.builds(FrameworkInfo, id=fid, name=text.filter(bool), failover_timeout=amounts)),
    st.builds(m.Teardown, fid),
    st.builds(m.Accept, fid, offer_ids, st.lists(tasks, max_size=2).map(tuple), filters),
    st.builds(m.Decline, fid, offer_ids, filters),
    st.builds(m.Revive, fid),
    st.builds(m.Suppress, fid),
    st.builds(m.Kill, fid, ids.map(TaskId), ids.map(AgentId)),
    st.builds(m.Acknowledge, fid, ids.map(AgentId), ids.map(TaskId), ids),
    st.builds(  # a batch (``more``)
        m.Acknowledge,
        fid,
        ids.map(AgentId),
        ids.map(TaskId),
        ids,
        st.lists(st.tuples(ids.map(AgentId), ids.map(TaskId), ids), max_size=3).map(tuple),
    ),
    st.builds(m.Reconcile, fid, st.lists(st.tuples(ids.map(TaskId), ids.map(AgentId)), max_size=3).map(tuple)),
)
error_codes = st.sampled_from(["MALFORMED", "UNKNOWN_OFFER", "INSUFFICIENT_RESOURCES", "UNAVAILABLE"])
scheduler_events = st.one_of(
    st.builds(m.Subscribed, fid, amounts, text),
    st.builds(m.Offers, st.lists(offers, max_size=3).map(tuple)),
    st.builds(m.Rescind, ids.map(OfferId)),
    st.builds(m.Update, statuses),
    st.builds(m.Failure, ids.map(AgentId)),
    st.builds(m.ErrorEvent, error_codes, text),
    st.just(m.Heartbeat()),
)
agent_calls = st.one_of(
    st.builds(m.RegisterAgent, agents, st.lists(statuses, max_size=3).map(tuple)),
    st.builds(m.AgentHeartbeat, ids.map(AgentId), st.lists(ids.map(TaskId), max_size=3).map(tuple)),
    st.builds(m.StatusUpdate, ids.map(AgentId), statuses),
    st.builds(m.StatusUpdate, ids.map(AgentId), statuses, st.lists(statuses, max_size=3).map(tuple)),
    st.builds(m.SubscribeAgent, ids.map(AgentId)),
    st.builds(
        m.TaskLogs,
        ids.map(AgentId),
        ids,
        ids.map(TaskId),
        st.sampled_from(m.LOG_STREAMS),
        st.integers(0, 2**40),
        st.binary(max_size=256),
        st.integers(0, 2**40),
        text,
    ),
)
agent_events = st.one_of(
    st.builds(m.AgentRegistered, ids.map(AgentId), text, text),
    st.builds(m.HeartbeatAck, st.booleans()),
    st.builds(m.StatusAcknowledged, ids.map(TaskId), ids),
    st.builds(
        m.StatusAcknowledged, ids.map(TaskId), ids, st.lists(st.tuples(ids.map(TaskId), ids), max_size=3).map(tuple)
    ),
    st.builds(m.LaunchCommand, tasks),
    st.builds(m.KillCommand, ids.map(TaskId), amounts),
    st.builds(
        m.SendLogsCommand,
        ids,
        ids.map(TaskId),
        st.sampled_from(m.LOG_STREAMS),
        st.integers(-(2**40), 2**40),
        st.integers(1, m.MAX_LOG_CHUNK),
    ),
    st.just(m.LogsReceived()),
    st.builds(m.ErrorEvent, error_codes, text),
)


@given(scheduler_calls)
def test_scheduler_call_round_trip(call: m.SchedulerCall) -> None:
    assert wire.decode_call(wire.encode_call(call)) == call


@given(scheduler_events)
def test_scheduler_event_round_trip(event: m.SchedulerEvent) -> None:
    assert wire.decode_event(wire.encode_event(event)) == event


@given(agent_calls)
def test_agent_call_round_trip(call: m.AgentCall) -> None:
    assert wire.decode_agent_call(wire.encode_agent_call(call)) == call


@given(agent_events)
def test_agent_event_round_trip(event: m.AgentEvent) -> None:
    assert wire.decode_agent_event(wire.encode_agent_event(event)) == event


@given(resources)
def test_resources_text_round_trip(res: Resources) -> None:
    # Device handles may hold ';' or ')' which the text form cannot carry; compare the rest.
    plain = Resources(res.scalars, res.ranges, res.sets)
    assert Resources.parse(str(plain)) == plain


@given(st.lists(st.binary(max_size=300), max_size=5), st.integers(1, 7))
def test_recordio_any_chunking(payloads: list[bytes], step: int) -> None:
    stream = b"".join(wire.frame(p) for p in payloads)
    reader = wire.RecordReader()
    got: list[bytes] = []
    for i in range(0, len(stream), step):
        got.extend(reader.feed(stream[i : i + step]))
    assert got == payloads
