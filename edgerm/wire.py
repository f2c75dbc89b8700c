"""Conversions between the generated protobuf classes and internal types.

The only module (with the transport adapters' framing helpers) that touches
``edgerm.v1.*_pb2``. ``decode_*`` functions raise :class:`MalformedMessage`
for bytes that do not parse or violate the schema's rules,
:class:`MessageTooLarge` for a call listing more items than
:mod:`edgerm.limits` allows, and :class:`UnknownCall` for a missing or
unknown union arm; nothing else escapes. Every field is checked against
:mod:`edgerm.limits` here (ids, names, lengths, finite numbers), so the
cores never see a NaN, an infinity or an unbounded list.
Round trips ``from_pb(to_pb(x)) == x`` are exact (tests/property).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import TypeVar

from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from google.protobuf.message import DecodeError

from edgerm import limits as lim
from edgerm import messages as m
from edgerm.errors import WIRE_ERRORS, MalformedMessage, MessageTooLarge, UnknownCall, WireError
from edgerm.ids import AgentId, FrameworkId, OfferId, TaskId
from edgerm.model import (
    AgentInfo,
    Attributes,
    Container,
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
from edgerm.v1 import agent_pb2, common_pb2, scheduler_pb2

pb = common_pb2

# -- resources and attributes -------------------------------------------------


def resources_to_pb(res: Resources) -> list[common_pb2.Resource]:
    holder = pb.Offer()
    _resources_into(holder.resources, res)
    return list(holder.resources)


def _resources_into(field: RepeatedCompositeFieldContainer[common_pb2.Resource], res: Resources) -> None:
    """Append ``res`` to a repeated Resource field, sorted by kind then name (built in place: no copies)."""
    R = common_pb2.Resource
    add = field.add
    for name, v in sorted(res.scalars.items()):
        add(name=name, type=R.SCALAR, scalar=v)
    for name, rs in sorted(res.ranges.items()):
        add(name=name, type=R.RANGES, ranges=[pb.Range(begin=r.begin, end=r.end) for r in rs])
    for name, s in sorted(res.sets.items()):
        add(name=name, type=R.SET, set=sorted(s))
    for name, d in sorted(res.devices.items()):
        add(name=name, type=R.DEVICE, device=pb.Device(handle=d.handle, shared=d.shared))


def resources_from_pb(items: Iterable[common_pb2.Resource]) -> Resources:
    # Hot (every offer a framework receives, every agent call): names already seen valid and in-range scalars
    # skip the checkers, which are called only to raise their error.
    scalars: dict[str, float] = {}
    ranges: dict[str, tuple[Range, ...]] = {}
    sets: dict[str, frozenset[str]] = {}
    devices: dict[str, Device] = {}
    R = common_pb2.Resource
    if not isinstance(items, Sequence):
        items = list(items)
    lim.check_count(items, lim.MAX_RESOURCES, "resources")
    good, text_ok = _GOOD_NAMES, _GOOD_TEXT
    for r in items:
        name = r.name
        if name not in good:
            _remember(good, lim.check_resource_name(name, "resource"))
        kind = r.type
        if kind == R.SCALAR:
            value = r.scalar
            if not 0.0 <= value <= lim.MAX_SCALAR:
                lim.check_scalar(value, f"resource {name}")
            if name in scalars:
                scalars[name] = lim.check_scalar(scalars[name] + value, f"resource {name}")
            else:
                scalars[name] = value
        elif kind == R.RANGES:
            lim.check_count(r.ranges, lim.MAX_ITEMS, f"ranges of resource {name}")
            try:
                ranges[name] = ranges.get(name, ()) + tuple(Range(x.begin, x.end) for x in r.ranges)
            except ValueError as e:
                raise MalformedMessage(f"resource {name}: {e}") from None
        elif kind == R.SET:
            lim.check_count(r.set, lim.MAX_ITEMS, f"items of resource {name}")
            for item in r.set:
                if item not in good and item not in text_ok:
                    _remember(text_ok, lim.check_name(item, f"an item of resource {name}"))
            sets[name] = sets.get(name, frozenset()) | frozenset(r.set)
        elif kind == R.DEVICE:
            lim.check_name(r.device.handle, f"device handle of resource {name}")
            devices[name] = Device(r.device.handle, r.device.shared)
        else:
            raise MalformedMessage(f"resource {name}: unknown type {kind}")
    return Resources(scalars, ranges, sets, devices)


def attributes_to_pb(attrs: Attributes) -> list[common_pb2.Attribute]:
    out = []
    for name, v in sorted(attrs.items()):
        if isinstance(v, str):
            out.append(pb.Attribute(name=name, text=v))
        else:
            out.append(pb.Attribute(name=name, set=sorted(v)))
    return out


def attributes_from_pb(items: Iterable[common_pb2.Attribute]) -> dict[str, str | frozenset[str]]:
    out: dict[str, str | frozenset[str]] = {}
    if not isinstance(items, Sequence):
        items = list(items)
    lim.check_count(items, lim.MAX_ATTRIBUTES, "attributes")
    good, text_ok = _GOOD_NAMES, _GOOD_TEXT
    for a in items:
        name = a.name
        if name not in good:
            _remember(good, lim.check_resource_name(name, "attribute"))
        text, values = a.text, a.set
        if text not in good and text not in text_ok:  # checked even when the set wins, as it always was
            _remember(text_ok, lim.check_name(text, f"attribute {name}"))
        lim.check_count(values, lim.MAX_ITEMS, f"items of attribute {name}")
        for item in values:
            if item not in good and item not in text_ok:
                _remember(text_ok, lim.check_name(item, f"an item of attribute {name}"))
        out[name] = frozenset(values) if values else text
    return out


# Strings already checked: resource and attribute names that passed ``check_resource_name`` (_GOOD_NAMES), and
# attribute text and set items that passed ``check_name`` (_GOOD_TEXT). A fleet repeats a few of them in every
# message, so decoding checks each once. A checked name is also good text (``check_name`` accepts every resource
# name), never the other way round. Bounded: a set is cleared when full.
_GOOD_NAMES: set[str] = set()
_GOOD_TEXT: set[str] = set()
_GOOD_MAX = 4096


def _remember(checked: set[str], value: str) -> None:
    if len(checked) >= _GOOD_MAX:
        checked.clear()
    checked.add(value)


# -- agents, frameworks, tasks -------------------------------------------------


def agent_info_to_pb(a: AgentInfo) -> common_pb2.AgentInfo:
    return pb.AgentInfo(
        id=a.id,
        hostname=a.hostname,
        resources=resources_to_pb(a.resources),
        attributes=attributes_to_pb(a.attributes),
        heartbeat_interval_seconds=a.heartbeat_interval,
    )


def agent_info_from_pb(a: common_pb2.AgentInfo) -> AgentInfo:
    lim.check_seconds(
        a.heartbeat_interval_seconds,
        "agent heartbeat_interval_seconds",
        limit=lim.MAX_HEARTBEAT_INTERVAL,
        positive=True,
    )
    return AgentInfo(
        id=AgentId(lim.check_id(a.id, "agent id", required=False)),
        hostname=lim.check_name(a.hostname, "agent hostname"),
        resources=resources_from_pb(a.resources),
        attributes=attributes_from_pb(a.attributes),
        heartbeat_interval=a.heartbeat_interval_seconds,
    )


def framework_info_to_pb(f: FrameworkInfo) -> common_pb2.FrameworkInfo:
    return pb.FrameworkInfo(id=f.id, name=f.name, failover_timeout_seconds=f.failover_timeout)


def framework_info_from_pb(f: common_pb2.FrameworkInfo) -> FrameworkInfo:
    timeout = lim.check_seconds(f.failover_timeout_seconds, "framework failover_timeout_seconds")
    return FrameworkInfo(
        id=FrameworkId(lim.check_id(f.id, "framework id", required=False)),
        name=lim.check_name(f.name, "framework name", required=True),
        failover_timeout=timeout,
    )


_NETWORK = {Network.BRIDGE: pb.DockerInfo.BRIDGE, Network.HOST: pb.DockerInfo.HOST, Network.NONE: pb.DockerInfo.NONE}
_NETWORK_BACK = {v: k for k, v in _NETWORK.items()} | {pb.DockerInfo.NETWORK_UNSPECIFIED: Network.BRIDGE}
_PULL = {
    PullPolicy.IF_NOT_PRESENT: pb.DockerInfo.IF_NOT_PRESENT,
    PullPolicy.ALWAYS: pb.DockerInfo.ALWAYS,
    PullPolicy.NEVER: pb.DockerInfo.NEVER,
}
_PULL_BACK = {v: k for k, v in _PULL.items()} | {pb.DockerInfo.PULL_POLICY_UNSPECIFIED: PullPolicy.IF_NOT_PRESENT}


def container_to_pb(c: Container) -> common_pb2.ContainerInfo:
    if isinstance(c, WasmSpec):
        return pb.ContainerInfo(
            wasm=pb.WasmInfo(module=c.module, module_sha256=c.module_sha256, time_limit_seconds=c.time_limit)
        )
    return pb.ContainerInfo(
        docker=pb.DockerInfo(
            image=c.image,
            network=_NETWORK[c.network],
            port_mappings=[
                pb.DockerInfo.PortMapping(host_port=p.host_port, container_port=p.container_port, protocol=p.protocol)
                for p in c.port_mappings
            ],
            pull_policy=_PULL[c.pull_policy],
        )
    )


def container_from_pb(c: common_pb2.ContainerInfo) -> Container:
    kind = c.WhichOneof("kind")
    if kind == "wasm":
        w = c.wasm
        if not w.module and not w.module_sha256:
            raise MalformedMessage("wasm container needs module bytes or module_sha256")
        lim.check_sha256(w.module_sha256, "wasm module_sha256")
        time_limit = lim.check_seconds(w.time_limit_seconds, "wasm time_limit_seconds")
        return WasmSpec(module=w.module, module_sha256=w.module_sha256, time_limit=time_limit)
    if kind == "docker":
        d = c.docker
        if not d.image:
            raise MalformedMessage("docker container needs an image")
        if len(d.image) > lim.MAX_IMAGE or any(ch.isspace() for ch in d.image):
            raise MalformedMessage(f"docker image {d.image[:40]!r} is too long or contains whitespace")
        lim.check_name(d.image, "docker image", limit=lim.MAX_IMAGE)
        lim.check_count(d.port_mappings, lim.MAX_PORT_MAPPINGS, "port mappings")
        for p in d.port_mappings:
            lim.check_port(p.host_port, "host_port")
            lim.check_port(p.container_port, "container_port")
            if p.protocol not in ("", "tcp", "udp"):
                raise MalformedMessage(f"port protocol {p.protocol[:10]!r} is not tcp or udp")
        try:
            return DockerSpec(
                image=d.image,
                network=_NETWORK_BACK[d.network],
                port_mappings=tuple(
                    PortMapping(p.host_port, p.container_port, p.protocol or "tcp") for p in d.port_mappings
                ),
                pull_policy=_PULL_BACK[d.pull_policy],
            )
        except KeyError as e:
            raise MalformedMessage(f"docker container: unknown enum value {e}") from None
    raise MalformedMessage("task container must set wasm or docker")


def task_info_to_pb(t: TaskInfo) -> common_pb2.TaskInfo:
    return pb.TaskInfo(
        task_id=t.task_id,
        name=t.name,
        agent_id=t.agent_id,
        resources=resources_to_pb(t.resources),
        container=container_to_pb(t.container),
        args=list(t.args),
        env=dict(t.env),
        kill_grace_seconds=t.kill_grace,
        framework_id=t.framework_id,
        restart_policy=_RESTART[t.restart_policy],
        secret_env=dict(t.secret_env),
        labels=dict(t.labels),
    )


def task_info_from_pb(t: common_pb2.TaskInfo) -> TaskInfo:
    if not t.task_id:
        raise MalformedMessage("task without a task_id")
    lim.check_id(t.task_id, "task_id")
    lim.check_count(t.args, lim.MAX_ARGS, "task args")
    for arg in t.args:
        lim.check_value(arg, f"an arg of task {t.task_id}")
    lim.check_env(t.env, "task env")
    lim.check_env(t.secret_env, "task secret_env")
    lim.check_labels(t.labels, "task")
    return TaskInfo(
        task_id=TaskId(t.task_id),
        name=lim.check_name(t.name, "task name"),
        agent_id=AgentId(lim.check_id(t.agent_id, "task agent_id", required=False)),
        resources=resources_from_pb(t.resources),
        container=container_from_pb(t.container),
        args=tuple(t.args),
        env=dict(t.env),
        kill_grace=lim.check_seconds(t.kill_grace_seconds, "task kill_grace_seconds"),
        framework_id=FrameworkId(lim.check_id(t.framework_id, "task framework_id", required=False)),
        restart_policy=_restart_from_pb(t.restart_policy),
        secret_env=dict(t.secret_env),
        labels=dict(t.labels),
    )


_RESTART = {
    RestartPolicy.NEVER: pb.TaskInfo.NEVER,
    RestartPolicy.ON_AGENT_RESTART: pb.TaskInfo.ON_AGENT_RESTART,
}
_RESTART_BACK = {v: k for k, v in _RESTART.items()} | {pb.TaskInfo.RESTART_POLICY_UNSPECIFIED: RestartPolicy.NEVER}


def _restart_from_pb(value: int) -> RestartPolicy:
    try:
        return _RESTART_BACK[value]  # type: ignore[index]
    except KeyError:
        raise MalformedMessage(f"task: unknown restart_policy {value}") from None


def _enum_from_pb(enum_cls: type[enum.Enum], prefix: str, name: str, what: str) -> enum.Enum:
    try:
        return enum_cls[name.removeprefix(prefix)]
    except KeyError:
        raise MalformedMessage(f"unknown {what} {name}") from None


def task_status_to_pb(s: TaskStatus) -> common_pb2.TaskStatus:
    return pb.TaskStatus(
        task_id=s.task_id,
        agent_id=s.agent_id,
        state="TASK_" + s.state.value,
        reason="REASON_" + s.reason.value,
        message=s.message,
        uuid=s.uuid,
        timestamp=s.timestamp,
        source="SOURCE_" + s.source.value,
        exit_code=s.exit_code,
    )


def task_status_from_pb(s: common_pb2.TaskStatus) -> TaskStatus:
    if not s.task_id:
        raise MalformedMessage("status without a task_id")
    lim.check_id(s.task_id, "status task_id")
    lim.check_id(s.agent_id, "status agent_id", required=False)
    lim.check_id(s.uuid, "status uuid", required=False)
    lim.check_finite(s.timestamp, "status timestamp")
    if s.state == pb.TASK_STATE_UNSPECIFIED:
        raise MalformedMessage("status without a state")
    try:
        state = _enum_from_pb(TaskState, "TASK_", pb.TaskState.Name(s.state), "task state")
        reason = _enum_from_pb(Reason, "REASON_", pb.Reason.Name(s.reason), "reason")
        source = _enum_from_pb(Source, "SOURCE_", pb.Source.Name(s.source), "source")
    except ValueError as e:  # an enum number this schema does not define
        raise MalformedMessage(f"status: {e}") from None
    assert isinstance(state, TaskState) and isinstance(reason, Reason) and isinstance(source, Source)
    return TaskStatus(
        task_id=TaskId(s.task_id),
        agent_id=AgentId(s.agent_id),
        state=state,
        reason=reason,
        message=lim.clip_message(s.message),
        uuid=s.uuid,
        timestamp=s.timestamp,
        source=source,
        exit_code=s.exit_code,
    )


def offer_to_pb(o: Offer) -> common_pb2.Offer:
    return pb.Offer(
        id=o.id,
        framework_id=o.framework_id,
        agent_id=o.agent_id,
        hostname=o.hostname,
        resources=resources_to_pb(o.resources),
        attributes=attributes_to_pb(o.attributes),
        expires_at=o.expires_at,
    )


def _offers_event(offers: Sequence[Offer]) -> scheduler_pb2.Event:
    """``offer_to_pb`` for each, built in place (hot: every allocation cycle's offers). Offers of one agent share
    its attributes, so they are encoded once and merged in as bytes."""
    event = E(type=E.OFFERS)
    add = event.offers.offers.add
    for o in offers:
        x = add(id=o.id, framework_id=o.framework_id, agent_id=o.agent_id, hostname=o.hostname, expires_at=o.expires_at)
        _resources_into(x.resources, o.resources)
        if o.attributes:
            x.MergeFromString(_attributes_bytes(o.attributes))
    return event


def _attributes_bytes(attrs: Attributes) -> bytes:
    """A serialized Offer holding only ``attrs``, cached by the mapping's identity (checked against a copy)."""
    hit = _ATTRIBUTE_BYTES.get(id(attrs))
    if hit is not None and hit[0] is attrs and hit[1] == attrs:
        return hit[2]
    data = pb.Offer(attributes=attributes_to_pb(attrs)).SerializeToString()
    if len(_ATTRIBUTE_BYTES) >= _GOOD_MAX:
        _ATTRIBUTE_BYTES.clear()
    _ATTRIBUTE_BYTES[id(attrs)] = (attrs, dict(attrs), data)  # holding attrs keeps its id from being reused
    return data


_ATTRIBUTE_BYTES: dict[int, tuple[Attributes, dict[str, str | frozenset[str]], bytes]] = {}


def offer_from_pb(o: common_pb2.Offer) -> Offer:
    return Offer(
        id=OfferId(lim.check_id(o.id, "offer id")),
        framework_id=FrameworkId(lim.check_id(o.framework_id, "offer framework_id", required=False)),
        agent_id=AgentId(lim.check_id(o.agent_id, "offer agent_id", required=False)),
        hostname=lim.check_name(o.hostname, "offer hostname"),
        resources=resources_from_pb(o.resources),
        attributes=attributes_from_pb(o.attributes),
        expires_at=lim.check_finite(o.expires_at, "offer expires_at"),
    )


# -- errors --------------------------------------------------------------------


def error_to_pb(e: WireError | m.ErrorEvent) -> common_pb2.Error:
    code = e.code if isinstance(e, m.ErrorEvent) else type(e).code
    return pb.Error(code=code, message=e.message)


def error_from_pb(e: common_pb2.Error) -> m.ErrorEvent:
    try:
        code = pb.Error.Code.Name(e.code)
    except ValueError:
        code = "CODE_UNSPECIFIED"
    return m.ErrorEvent(code=code, message=lim.clip_message(e.message))


def raise_error(e: m.ErrorEvent) -> None:
    """Re-raise a received typed error as its ``WireError`` class."""
    raise WIRE_ERRORS.get(e.code, WireError)(e.message)


# -- scheduler Calls and Events ---------------------------------------------------

C = scheduler_pb2.Call
E = scheduler_pb2.Event


def _filters_from_pb(msg: scheduler_pb2.Call.Accept | scheduler_pb2.Call.Decline) -> Filters:
    if not msg.HasField("filters"):
        return Filters()
    return Filters(lim.check_seconds(msg.filters.refuse_seconds, "refuse_seconds"))


def call_to_pb(call: m.SchedulerCall) -> scheduler_pb2.Call:
    if isinstance(call, m.Subscribe):
        return C(
            framework_id=call.framework.id,
            type=C.SUBSCRIBE,
            subscribe=C.Subscribe(framework=framework_info_to_pb(call.framework)),
        )
    fid = call.framework_id
    if isinstance(call, m.Teardown):
        return C(framework_id=fid, type=C.TEARDOWN)
    if isinstance(call, m.Accept):
        op = C.Operation(
            type=C.Operation.LAUNCH, launch=C.Operation.Launch(tasks=[task_info_to_pb(t) for t in call.tasks])
        )
        return C(
            framework_id=fid,
            type=C.ACCEPT,
            accept=C.Accept(
                offer_ids=list(call.offer_ids),
                operations=[op],
                filters=scheduler_pb2.Filters(refuse_seconds=call.filters.refuse_seconds),
            ),
        )
    if isinstance(call, m.Decline):
        return C(
            framework_id=fid,
            type=C.DECLINE,
            decline=C.Decline(
                offer_ids=list(call.offer_ids),
                filters=scheduler_pb2.Filters(refuse_seconds=call.filters.refuse_seconds),
            ),
        )
    if isinstance(call, m.Revive):
        return C(framework_id=fid, type=C.REVIVE)
    if isinstance(call, m.Suppress):
        return C(framework_id=fid, type=C.SUPPRESS)
    if isinstance(call, m.Kill):
        return C(framework_id=fid, type=C.KILL, kill=C.Kill(task_id=call.task_id, agent_id=call.agent_id))
    if isinstance(call, m.Acknowledge):
        return C(
            framework_id=fid,
            type=C.ACKNOWLEDGE,
            acknowledge=C.Acknowledge(
                agent_id=call.agent_id,
                task_id=call.task_id,
                uuid=call.uuid,
                more=[C.Acknowledge(agent_id=a, task_id=t, uuid=u) for a, t, u in call.more],
            ),
        )
    return C(
        framework_id=fid,
        type=C.RECONCILE,
        reconcile=C.Reconcile(tasks=[C.Reconcile.Task(task_id=t, agent_id=a) for t, a in call.tasks]),
    )


def call_from_pb(c: scheduler_pb2.Call) -> m.SchedulerCall:
    fid = FrameworkId(lim.check_id(c.framework_id, "framework_id", required=False))
    if c.type == C.SUBSCRIBE:
        info = framework_info_from_pb(c.subscribe.framework)
        return m.Subscribe(replace(info, id=FrameworkId(info.id or c.framework_id)))
    if c.type == C.TYPE_UNSPECIFIED or c.type not in C.Type.values():
        raise UnknownCall(f"unknown scheduler call type {c.type}")
    if not fid:
        raise MalformedMessage("call without a framework_id")
    if c.type == C.TEARDOWN:
        return m.Teardown(fid)
    if c.type == C.ACCEPT:
        operations = c.accept.operations
        lim.check_count(operations, lim.MAX_TASKS_PER_ACCEPT, "operations")
        count = sum(len(op.launch.tasks) for op in operations)
        if count > lim.MAX_TASKS_PER_ACCEPT:
            raise MessageTooLarge(f"{count} tasks in one ACCEPT, over the limit of {lim.MAX_TASKS_PER_ACCEPT}")
        tasks: list[TaskInfo] = []
        for op in c.accept.operations:
            if op.type != C.Operation.LAUNCH:
                raise UnknownCall(f"unknown operation type {op.type}")
            tasks.extend(task_info_from_pb(t) for t in op.launch.tasks)
        return m.Accept(fid, _offer_ids(c.accept.offer_ids), tuple(tasks), _filters_from_pb(c.accept))
    if c.type == C.DECLINE:
        return m.Decline(fid, _offer_ids(c.decline.offer_ids), _filters_from_pb(c.decline))
    if c.type == C.REVIVE:
        return m.Revive(fid)
    if c.type == C.SUPPRESS:
        return m.Suppress(fid)
    if c.type == C.KILL:
        if not c.kill.task_id:
            raise MalformedMessage("kill without a task_id")
        lim.check_id(c.kill.task_id, "kill task_id")
        lim.check_id(c.kill.agent_id, "kill agent_id", required=False)
        return m.Kill(fid, TaskId(c.kill.task_id), AgentId(c.kill.agent_id))
    if c.type == C.ACKNOWLEDGE:
        a = c.acknowledge
        lim.check_id(a.agent_id, "acknowledge agent_id", required=False)
        lim.check_id(a.task_id, "acknowledge task_id", required=False)
        lim.check_id(a.uuid, "acknowledge uuid", required=False)
        more: list[tuple[AgentId, TaskId, str]] = []
        if a.more:
            lim.check_count(a.more, lim.MAX_ACKS_PER_CALL - 1, "acknowledgements")
            for b in a.more:
                if b.more:
                    raise MalformedMessage("an acknowledgement in `more` has its own `more`")
                lim.check_id(b.agent_id, "acknowledge agent_id", required=False)
                lim.check_id(b.task_id, "acknowledge task_id", required=False)
                lim.check_id(b.uuid, "acknowledge uuid", required=False)
                more.append((AgentId(b.agent_id), TaskId(b.task_id), b.uuid))
        return m.Acknowledge(fid, AgentId(a.agent_id), TaskId(a.task_id), a.uuid, tuple(more))
    if c.type == C.RECONCILE:
        tasks_ = c.reconcile.tasks
        lim.check_count(tasks_, lim.MAX_RECONCILE_TASKS, "reconcile tasks")
        for t in tasks_:
            lim.check_id(t.task_id, "reconcile task_id")
            lim.check_id(t.agent_id, "reconcile agent_id", required=False)
        return m.Reconcile(fid, tuple((TaskId(t.task_id), AgentId(t.agent_id)) for t in tasks_))
    raise UnknownCall(f"unknown scheduler call type {c.type}")


def _offer_ids(ids: Sequence[str]) -> tuple[OfferId, ...]:
    lim.check_count(ids, lim.MAX_OFFERS_PER_CALL, "offer ids")
    return tuple(OfferId(lim.check_id(o, "offer id")) for o in ids)


def event_to_pb(ev: m.SchedulerEvent) -> scheduler_pb2.Event:
    if isinstance(ev, m.Subscribed):
        return E(
            type=E.SUBSCRIBED,
            subscribed=E.Subscribed(
                framework_id=ev.framework_id, heartbeat_interval_seconds=ev.heartbeat_interval, master_id=ev.master_id
            ),
        )
    if isinstance(ev, m.Offers):
        return _offers_event(ev.offers)
    if isinstance(ev, m.Rescind):
        return E(type=E.RESCIND, rescind=E.Rescind(offer_id=ev.offer_id))
    if isinstance(ev, m.Update):
        return E(type=E.UPDATE, update=E.Update(status=task_status_to_pb(ev.status)))
    if isinstance(ev, m.Failure):
        return E(type=E.FAILURE, failure=E.Failure(agent_id=ev.agent_id))
    if isinstance(ev, m.ErrorEvent):
        return E(type=E.ERROR, error=error_to_pb(ev))
    return E(type=E.HEARTBEAT)


def event_from_pb(e: scheduler_pb2.Event) -> m.SchedulerEvent:
    if e.type == E.SUBSCRIBED:
        s = e.subscribed
        lim.check_seconds(s.heartbeat_interval_seconds, "subscribed heartbeat_interval_seconds")
        return m.Subscribed(
            FrameworkId(lim.check_id(s.framework_id, "framework_id")), s.heartbeat_interval_seconds, s.master_id
        )
    if e.type == E.OFFERS:
        return m.Offers(tuple(offer_from_pb(o) for o in e.offers.offers))
    if e.type == E.RESCIND:
        return m.Rescind(OfferId(lim.check_id(e.rescind.offer_id, "rescinded offer id")))
    if e.type == E.UPDATE:
        return m.Update(task_status_from_pb(e.update.status))
    if e.type == E.FAILURE:
        return m.Failure(AgentId(e.failure.agent_id))
    if e.type == E.ERROR:
        return error_from_pb(e.error)
    if e.type == E.HEARTBEAT:
        return m.Heartbeat()
    raise UnknownCall(f"unknown scheduler event type {e.type}")


# -- agent Calls and Events -------------------------------------------------------

AC = agent_pb2.AgentCall
AE = agent_pb2.AgentEvent


def agent_call_to_pb(call: m.AgentCall) -> agent_pb2.AgentCall:
    if isinstance(call, m.RegisterAgent):
        return AC(
            agent_id=call.agent.id,
            type=AC.REGISTER,
            register=AC.Register(
                agent=agent_info_to_pb(call.agent),
                tasks=[task_status_to_pb(s) for s in call.tasks],
                instance_id=call.instance_id,
            ),
        )
    if isinstance(call, m.AgentHeartbeat):
        return AC(agent_id=call.agent_id, type=AC.HEARTBEAT, heartbeat=AC.Heartbeat(task_ids=list(call.task_ids)))
    if isinstance(call, m.StatusUpdate):
        update = AC.Update(status=task_status_to_pb(call.status), more=[task_status_to_pb(s) for s in call.more])
        return AC(agent_id=call.agent_id, type=AC.UPDATE, update=update)
    if isinstance(call, m.TaskLogs):
        logs = AC.Logs(
            request_id=call.request_id,
            task_id=call.task_id,
            stream=call.stream,
            offset=call.offset,
            data=call.data,
            size=call.size,
            error=call.error,
        )
        return AC(agent_id=call.agent_id, type=AC.LOGS, logs=logs)
    return AC(agent_id=call.agent_id, type=AC.SUBSCRIBE)


def agent_call_from_pb(c: agent_pb2.AgentCall) -> m.AgentCall:
    aid = AgentId(lim.check_id(c.agent_id, "agent_id", required=False))
    if c.type == AC.REGISTER:
        lim.check_count(c.register.tasks, lim.MAX_TASKS_PER_AGENT_CALL, "task statuses")
        info = agent_info_from_pb(c.register.agent)
        if not info.id:
            raise MalformedMessage("register without an agent id")
        return m.RegisterAgent(info, tuple(task_status_from_pb(s) for s in c.register.tasks), c.register.instance_id)
    if c.type not in (AC.HEARTBEAT, AC.UPDATE, AC.SUBSCRIBE, AC.LOGS):
        raise UnknownCall(f"unknown agent call type {c.type}")
    if not aid:
        raise MalformedMessage("agent call without an agent_id")
    if c.type == AC.LOGS:
        lg = c.logs
        if lg.stream not in m.LOG_STREAMS or lg.offset < 0 or lg.size < 0 or len(lg.data) > m.MAX_LOG_CHUNK:
            raise MalformedMessage("LOGS: stream must be stdout/stderr, offset and size >= 0, data within the cap")
        return m.TaskLogs(aid, lg.request_id, TaskId(lg.task_id), lg.stream, lg.offset, lg.data, lg.size, lg.error)
    if c.type == AC.HEARTBEAT:
        task_ids = c.heartbeat.task_ids
        if task_ids:
            lim.check_count(task_ids, lim.MAX_TASKS_PER_AGENT_CALL, "task ids")
            for t in task_ids:
                lim.check_id(t, "heartbeat task id")
        return m.AgentHeartbeat(aid, tuple(TaskId(t) for t in task_ids))
    if c.type == AC.UPDATE:
        extra = c.update.more
        if extra:
            lim.check_count(extra, lim.MAX_STATUSES_PER_UPDATE - 1, "task statuses")
        return m.StatusUpdate(aid, task_status_from_pb(c.update.status), tuple(task_status_from_pb(s) for s in extra))
    return m.SubscribeAgent(aid)


def agent_event_to_pb(ev: m.AgentEvent) -> agent_pb2.AgentEvent:
    if isinstance(ev, m.AgentRegistered):
        return AE(
            type=AE.REGISTERED,
            registered=AE.Registered(agent_id=ev.agent_id, master_id=ev.master_id, broker_url=ev.broker_url),
        )
    if isinstance(ev, m.HeartbeatAck):
        return AE(type=AE.HEARTBEAT_ACK, heartbeat_ack=AE.HeartbeatAck(commands_pending=ev.commands_pending))
    if isinstance(ev, m.StatusAcknowledged):
        more = [AE.Acknowledged(task_id=t, uuid=u) for t, u in ev.more]
        return AE(type=AE.ACKNOWLEDGED, acknowledged=AE.Acknowledged(task_id=ev.task_id, uuid=ev.uuid, more=more))
    if isinstance(ev, m.LaunchCommand):
        return AE(type=AE.LAUNCH, launch=AE.Launch(task=task_info_to_pb(ev.task)))
    if isinstance(ev, m.KillCommand):
        return AE(type=AE.KILL, kill=AE.Kill(task_id=ev.task_id, grace_seconds=ev.grace))
    if isinstance(ev, m.SendLogsCommand):
        send = AE.SendLogs(
            request_id=ev.request_id, task_id=ev.task_id, stream=ev.stream, offset=ev.offset, limit=ev.limit
        )
        return AE(type=AE.SEND_LOGS, send_logs=send)
    if isinstance(ev, m.LogsReceived):
        return AE(type=AE.LOGS_RECEIVED, logs_received=AE.LogsReceived())
    return AE(type=AE.ERROR, error=error_to_pb(ev))


def agent_event_from_pb(e: agent_pb2.AgentEvent) -> m.AgentEvent:
    if e.type == AE.REGISTERED:
        r = e.registered
        lim.check_name(r.broker_url, "broker_url", limit=lim.MAX_URL)
        return m.AgentRegistered(AgentId(lim.check_id(r.agent_id, "agent_id")), r.master_id, r.broker_url)
    if e.type == AE.HEARTBEAT_ACK:
        return m.HeartbeatAck(e.heartbeat_ack.commands_pending)
    if e.type == AE.ACKNOWLEDGED:
        a = e.acknowledged
        return m.StatusAcknowledged(TaskId(a.task_id), a.uuid, tuple((TaskId(b.task_id), b.uuid) for b in a.more))
    if e.type == AE.LAUNCH:
        return m.LaunchCommand(task_info_from_pb(e.launch.task))
    if e.type == AE.KILL:
        lim.check_id(e.kill.task_id, "kill task_id")
        return m.KillCommand(TaskId(e.kill.task_id), lim.check_seconds(e.kill.grace_seconds, "kill grace_seconds"))
    if e.type == AE.SEND_LOGS:
        sl = e.send_logs
        if sl.stream not in m.LOG_STREAMS or not 0 < sl.limit <= m.MAX_LOG_CHUNK:
            raise MalformedMessage("SEND_LOGS: stream must be stdout/stderr and limit within the cap")
        return m.SendLogsCommand(sl.request_id, TaskId(sl.task_id), sl.stream, sl.offset, sl.limit)
    if e.type == AE.LOGS_RECEIVED:
        return m.LogsReceived()
    if e.type == AE.ERROR:
        return error_from_pb(e.error)
    raise UnknownCall(f"unknown agent event type {e.type}")


# -- bytes -------------------------------------------------------------------------


def _parse(cls: type, data: bytes) -> object:
    msg = cls()
    try:
        msg.ParseFromString(data)
    except DecodeError as e:
        raise MalformedMessage(f"malformed {cls.__name__}: {e}") from None
    return msg


def decode_call(data: bytes) -> m.SchedulerCall:
    msg = _parse(scheduler_pb2.Call, data)
    assert isinstance(msg, scheduler_pb2.Call)
    return call_from_pb(msg)


def encode_call(call: m.SchedulerCall) -> bytes:
    return call_to_pb(call).SerializeToString()


def decode_event(data: bytes) -> m.SchedulerEvent:
    msg = _parse(scheduler_pb2.Event, data)
    assert isinstance(msg, scheduler_pb2.Event)
    return event_from_pb(msg)


def encode_event(ev: m.SchedulerEvent) -> bytes:
    return event_to_pb(ev).SerializeToString()


def decode_agent_call(data: bytes) -> m.AgentCall:
    msg = _parse(agent_pb2.AgentCall, data)
    assert isinstance(msg, agent_pb2.AgentCall)
    return agent_call_from_pb(msg)


def encode_agent_call(call: m.AgentCall) -> bytes:
    return agent_call_to_pb(call).SerializeToString()


def decode_agent_event(data: bytes) -> m.AgentEvent:
    msg = _parse(agent_pb2.AgentEvent, data)
    assert isinstance(msg, agent_pb2.AgentEvent)
    return agent_event_from_pb(msg)


def encode_agent_event(ev: m.AgentEvent) -> bytes:
    return agent_event_to_pb(ev).SerializeToString()


def encode_error(e: WireError) -> bytes:
    return error_to_pb(e).SerializeToString()


def decode_error(data: bytes) -> m.ErrorEvent:
    msg = _parse(common_pb2.Error, data)
    assert isinstance(msg, common_pb2.Error)
    return error_from_pb(msg)


def encode_task_info(t: TaskInfo) -> bytes:
    """A ``TaskInfo`` as bytes, for stores (the agent's journal) as much as for the wire."""
    return task_info_to_pb(t).SerializeToString()


def decode_task_info(data: bytes) -> TaskInfo:
    msg = _parse(common_pb2.TaskInfo, data)
    assert isinstance(msg, common_pb2.TaskInfo)
    return task_info_from_pb(msg)


def encode_task_status(s: TaskStatus) -> bytes:
    return task_status_to_pb(s).SerializeToString()


def decode_task_status(data: bytes) -> TaskStatus:
    msg = _parse(common_pb2.TaskStatus, data)
    assert isinstance(msg, common_pb2.TaskStatus)
    return task_status_from_pb(msg)


# -- RecordIO framing (streamed events) ------------------------------------------


def frame(payload: bytes) -> bytes:
    """One RecordIO record: the decimal length, a newline, the payload."""
    return b"%d\n" % len(payload) + payload


class RecordReader:
    """Incrementally splits a RecordIO byte stream into records.

    Feed chunks as they arrive; :meth:`feed` returns the complete records.
    A record longer than ``max_record`` raises :class:`MalformedMessage`.
    """

    def __init__(self, max_record: int = 16 * 1024 * 1024) -> None:
        self._buf = bytearray()
        self._max = max_record

    def feed(self, chunk: bytes) -> Sequence[bytes]:
        self._buf += chunk
        out: list[bytes] = []
        while True:
            nl = self._buf.find(b"\n", 0, 21)
            if nl < 0:
                if len(self._buf) > 20:
                    raise MalformedMessage("RecordIO length header too long")
                return out
            try:
                size = int(self._buf[:nl])
            except ValueError:
                raise MalformedMessage("RecordIO length header is not a number") from None
            if size < 0 or size > self._max:
                raise MalformedMessage(f"RecordIO record of {size} bytes over the limit")
            if len(self._buf) < nl + 1 + size:
                return out
            out.append(bytes(self._buf[nl + 1 : nl + 1 + size]))
            del self._buf[: nl + 1 + size]


# -- registry rows (edgerm.master.store keeps these bytes) ------------------------------------------


def encode_framework_info(f: FrameworkInfo) -> bytes:
    return framework_info_to_pb(f).SerializeToString()


def decode_framework_info(data: bytes) -> FrameworkInfo:
    return framework_info_from_pb(_parse_row(common_pb2.FrameworkInfo(), data))


def encode_agent_info(a: AgentInfo) -> bytes:
    return agent_info_to_pb(a).SerializeToString()


def decode_agent_info(data: bytes) -> AgentInfo:
    return agent_info_from_pb(_parse_row(common_pb2.AgentInfo(), data))


_Row = TypeVar("_Row", common_pb2.FrameworkInfo, common_pb2.AgentInfo, common_pb2.TaskInfo, common_pb2.TaskStatus)


def _parse_row(message: _Row, data: bytes) -> _Row:
    try:
        message.ParseFromString(data)
    except DecodeError as e:
        raise MalformedMessage(f"cannot parse a stored {type(message).__name__}: {e}") from None
    return message
