"""Bad bytes become typed errors at the wire boundary; nothing else escapes."""

from __future__ import annotations

import pytest

from edgerm import errors, wire
from edgerm.v1 import agent_pb2, common_pb2, scheduler_pb2


@pytest.mark.parametrize("data", [b"\xff\xff\xff", b"\x0a\x05ab", b"\x12"])
def test_garbage_is_malformed(data: bytes) -> None:
    with pytest.raises(errors.MalformedMessage):
        wire.decode_call(data)
    with pytest.raises(errors.WireError):
        wire.decode_agent_call(data)


def test_empty_call_is_unknown() -> None:
    with pytest.raises(errors.UnknownCall):
        wire.decode_call(b"")
    with pytest.raises(errors.UnknownCall):
        wire.decode_agent_call(b"")
    with pytest.raises(errors.UnknownCall):
        wire.decode_call(scheduler_pb2.Call(type=99, framework_id="f").SerializeToString())


def test_schema_rules_are_checked() -> None:
    c = scheduler_pb2.Call(framework_id="f", type=scheduler_pb2.Call.ACCEPT)
    task = c.accept.operations.add(type=scheduler_pb2.Call.Operation.LAUNCH).launch.tasks.add(task_id="t")
    with pytest.raises(errors.MalformedMessage, match="wasm or docker"):
        wire.decode_call(c.SerializeToString())
    task.container.wasm.time_limit_seconds = 1
    with pytest.raises(errors.MalformedMessage, match="module"):
        wire.decode_call(c.SerializeToString())
    task.container.wasm.module = b"\0asm"
    task.resources.add(name="cpus", type=common_pb2.Resource.SCALAR, scalar=-1)
    with pytest.raises(errors.MalformedMessage, match="cpus must be a finite number in"):
        wire.decode_call(c.SerializeToString())


def test_agent_register_needs_id_and_interval() -> None:
    c = agent_pb2.AgentCall(type=agent_pb2.AgentCall.REGISTER)
    with pytest.raises(errors.MalformedMessage):
        wire.decode_agent_call(c.SerializeToString())
    c.register.agent.heartbeat_interval_seconds = 1
    with pytest.raises(errors.MalformedMessage, match="agent id"):
        wire.decode_agent_call(c.SerializeToString())


def test_unknown_enum_number_in_status() -> None:
    c = agent_pb2.AgentCall(type=agent_pb2.AgentCall.UPDATE, agent_id="a")
    c.update.status.task_id = "t"
    c.update.status.state = 77  # type: ignore[assignment]
    with pytest.raises(errors.MalformedMessage):
        wire.decode_agent_call(c.SerializeToString())


def test_every_wire_error_has_a_proto_code() -> None:
    for code, cls in errors.WIRE_ERRORS.items():
        e = cls("x")
        back = wire.decode_error(wire.encode_error(e))
        assert back.code == code
        with pytest.raises(cls):
            wire.raise_error(back)


def test_recordio_rejects_oversized_and_garbage() -> None:
    with pytest.raises(errors.MalformedMessage):
        wire.RecordReader(max_record=10).feed(b"11\n")
    with pytest.raises(errors.MalformedMessage):
        wire.RecordReader().feed(b"abc\n")


def test_batches_are_bounded_and_flat() -> None:
    from edgerm.limits import MAX_ACKS_PER_CALL, MAX_STATUSES_PER_UPDATE

    c = agent_pb2.AgentCall(agent_id="a", type=agent_pb2.AgentCall.UPDATE)
    running = common_pb2.TASK_RUNNING
    c.update.status.task_id, c.update.status.state = "t", running
    for i in range(MAX_STATUSES_PER_UPDATE):
        c.update.more.add(task_id=f"t{i}", state=running)
    with pytest.raises(errors.MessageTooLarge, match="task statuses"):
        wire.decode_agent_call(c.SerializeToString())
    del c.update.more[-1]
    update = wire.decode_agent_call(c.SerializeToString())
    assert isinstance(update, wire.m.StatusUpdate) and len(update.statuses) == MAX_STATUSES_PER_UPDATE

    s = scheduler_pb2.Call(framework_id="f", type=scheduler_pb2.Call.ACKNOWLEDGE)
    s.acknowledge.task_id, s.acknowledge.uuid = "t", "u"
    inner = s.acknowledge.more.add(task_id="t2", uuid="u2")
    inner.more.add(task_id="t3", uuid="u3")
    with pytest.raises(errors.MalformedMessage, match="own `more`"):
        wire.decode_call(s.SerializeToString())
    del inner.more[:]
    for i in range(MAX_ACKS_PER_CALL - 1):
        s.acknowledge.more.add(task_id=f"x{i}", uuid="u")
    with pytest.raises(errors.MessageTooLarge, match="acknowledgements"):
        wire.decode_call(s.SerializeToString())
