"""Every bound of edgerm.limits is enforced at the wire boundary with a typed error."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from edgerm import limits, wire
from edgerm.errors import MalformedMessage, MessageTooLarge
from edgerm.v1 import agent_pb2, common_pb2, scheduler_pb2

AC = agent_pb2.AgentCall
C = scheduler_pb2.Call
R = common_pb2.Resource
NON_FINITE = [math.nan, math.inf, -math.inf]


def _register(**agent: object) -> AC:
    info = common_pb2.AgentInfo(id="a1", hostname="h", heartbeat_interval_seconds=1.0)
    for k, v in agent.items():
        if k == "resources":
            info.resources.extend(v)  # type: ignore[arg-type]
        else:
            setattr(info, k, v)
    return AC(agent_id="a1", type=AC.REGISTER, register=AC.Register(agent=info))


def _task(**fields: object) -> common_pb2.TaskInfo:
    t = common_pb2.TaskInfo(
        task_id="t1",
        name="t",
        agent_id="a1",
        container=common_pb2.ContainerInfo(docker=common_pb2.DockerInfo(image="x")),
    )
    for k, v in fields.items():
        if k in ("env", "labels", "secret_env"):
            getattr(t, k).update(v)
        elif k in ("args", "resources"):
            getattr(t, k).extend(v)  # type: ignore[arg-type]
        elif k == "time_limit":
            t.container.CopyFrom(
                common_pb2.ContainerInfo(wasm=common_pb2.WasmInfo(module=b"\0asm", time_limit_seconds=v))
            )  # type: ignore[arg-type]
        else:
            setattr(t, k, v)
    return t


def _accept(task: common_pb2.TaskInfo, refuse: float = 1.0) -> C:
    op = C.Operation(type=C.Operation.LAUNCH, launch=C.Operation.Launch(tasks=[task]))
    return C(
        framework_id="f1",
        type=C.ACCEPT,
        accept=C.Accept(offer_ids=["o1"], operations=[op], filters=scheduler_pb2.Filters(refuse_seconds=refuse)),
    )


def _decode_agent(msg: AC) -> object:
    return wire.decode_agent_call(msg.SerializeToString())


def _decode_call(msg: C) -> object:
    return wire.decode_call(msg.SerializeToString())


def test_valid_messages_pass() -> None:
    _decode_agent(_register(resources=[R(name="cpus", type=R.SCALAR, scalar=2)]))
    _decode_call(_accept(_task(env={"A": "1"}, labels={"app.io/name": "x"}, args=["a b", "c\nd"])))


@pytest.mark.parametrize("value", NON_FINITE)
@pytest.mark.parametrize(
    "build",
    [
        lambda v: _decode_agent(_register(resources=[R(name="cpus", type=R.SCALAR, scalar=v)])),
        lambda v: _decode_agent(_register(heartbeat_interval_seconds=v)),
        lambda v: _decode_call(_accept(_task(), refuse=v)),
        lambda v: _decode_call(_accept(_task(kill_grace_seconds=v))),
        lambda v: _decode_call(_accept(_task(time_limit=v))),
        lambda v: _decode_call(_accept(_task(resources=[R(name="mem", type=R.SCALAR, scalar=v)]))),
        lambda v: _decode_call(
            C(
                type=C.SUBSCRIBE,
                subscribe=C.Subscribe(framework=common_pb2.FrameworkInfo(name="f", failover_timeout_seconds=v)),
            )
        ),
        lambda v: _decode_call(C(framework_id="f", type=C.DECLINE, decline=C.Decline(filters={"refuse_seconds": v}))),
        lambda v: _decode_agent(
            AC(
                agent_id="a1",
                type=AC.UPDATE,
                update=AC.Update(status=common_pb2.TaskStatus(task_id="t", state=common_pb2.TASK_RUNNING, timestamp=v)),
            )
        ),
        lambda v: wire.decode_agent_event(
            agent_pb2.AgentEvent(
                type=agent_pb2.AgentEvent.KILL, kill=agent_pb2.AgentEvent.Kill(task_id="t", grace_seconds=v)
            ).SerializeToString()
        ),
    ],
    ids=[
        "scalar",
        "heartbeat",
        "refuse_seconds",
        "kill_grace",
        "time_limit",
        "task_resource",
        "failover",
        "decline",
        "timestamp",
        "kill_event",
    ],
)
def test_non_finite_numbers_are_refused(build: Callable[[float], object], value: float) -> None:
    with pytest.raises(MalformedMessage):
        build(value)


def test_a_scalar_sum_cannot_overflow() -> None:
    big = R(name="cpus", type=R.SCALAR, scalar=limits.MAX_SCALAR)
    with pytest.raises(MalformedMessage):
        _decode_agent(_register(resources=[big, big]))


def test_too_many_task_ids_in_a_heartbeat_are_refused_before_any_work() -> None:
    n = limits.MAX_TASKS_PER_AGENT_CALL
    ok = AC(agent_id="a1", type=AC.HEARTBEAT, heartbeat=AC.Heartbeat(task_ids=[f"t{i}" for i in range(n)]))
    _decode_agent(ok)
    ok.heartbeat.task_ids.append("one-more")
    with pytest.raises(MessageTooLarge):
        _decode_agent(ok)


def test_too_many_statuses_in_a_registration_are_refused() -> None:
    call = _register()
    s = common_pb2.TaskStatus(task_id="t", state=common_pb2.TASK_RUNNING)
    call.register.tasks.extend([s] * (limits.MAX_TASKS_PER_AGENT_CALL + 1))
    with pytest.raises(MessageTooLarge):
        _decode_agent(call)


def test_too_many_offers_tasks_and_reconciles_are_refused() -> None:
    decline = C(framework_id="f", type=C.DECLINE, decline=C.Decline(offer_ids=["o"] * (limits.MAX_OFFERS_PER_CALL + 1)))
    with pytest.raises(MessageTooLarge):
        _decode_call(decline)
    accept = _accept(_task())
    accept.accept.operations[0].launch.tasks.extend([_task()] * limits.MAX_TASKS_PER_ACCEPT)
    with pytest.raises(MessageTooLarge):
        _decode_call(accept)
    rec = C(framework_id="f", type=C.RECONCILE)
    rec.reconcile.tasks.extend([C.Reconcile.Task(task_id="t")] * (limits.MAX_RECONCILE_TASKS + 1))
    with pytest.raises(MessageTooLarge):
        _decode_call(rec)


@pytest.mark.parametrize("bad", ["", "x" * (limits.MAX_ID + 1), "a b", "a/b", ".", "..", "-x", "a\nb", "ü"])
def test_bad_ids_are_refused(bad: str) -> None:
    with pytest.raises(MalformedMessage):
        _decode_agent(AC(agent_id="a1", type=AC.HEARTBEAT, heartbeat=AC.Heartbeat(task_ids=[bad])))


def test_empty_framework_names_and_control_characters_are_refused() -> None:
    for name in ["", "a\x00b", "x" * (limits.MAX_NAME + 1)]:
        sub = C(type=C.SUBSCRIBE, subscribe=C.Subscribe(framework=common_pb2.FrameworkInfo(name=name)))
        with pytest.raises(MalformedMessage):
            _decode_call(sub)


@pytest.mark.parametrize(
    "fields",
    [
        {"labels": {"": "v"}},
        {"labels": {"bad key": "v"}},
        {"labels": {"k": "x" * (limits.MAX_LABEL_VALUE + 1)}},
        {"labels": {"k": "a\tb"}},
        {"env": {"A=B": "v"}},
        {"env": {"A": "a\x00"}},
        {"secret_env": {"": "v"}},
        {"args": ["a\x00"]},
        {"name": "n\x1b[31m"},
        {"agent_id": "a b"},
    ],
)
def test_bad_task_fields_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(MalformedMessage):
        _decode_call(_accept(_task(**fields)))


def test_too_many_labels_are_refused() -> None:
    with pytest.raises(MessageTooLarge):
        _decode_call(_accept(_task(labels={f"k{i}": "v" for i in range(limits.MAX_LABELS + 1)})))


def test_bad_resource_names_are_refused() -> None:
    for name in ["", "1cpu", "a b", "x" * (limits.MAX_RESOURCE_NAME + 1)]:
        with pytest.raises(MalformedMessage):
            _decode_agent(_register(resources=[R(name=name, type=R.SCALAR, scalar=1)]))


def test_a_long_status_message_is_cut_not_refused() -> None:
    status = common_pb2.TaskStatus(task_id="t", state=common_pb2.TASK_FAILED, message="e" * 100_000)
    call = wire.decode_agent_call(
        AC(agent_id="a1", type=AC.UPDATE, update=AC.Update(status=status)).SerializeToString()
    )
    assert len(call.status.message) == limits.MAX_MESSAGE  # type: ignore[union-attr]
