"""The Python operator SDK's steps without a broker: decoding with the data plane's codec, the user's
function per record or per batch, failures counted and bounded, the bounded queue, stats, and a stateful
function's state: checkpointed, restored, rolled back, bounded."""

from __future__ import annotations

import json

import pytest

from edgerm.agent.dataflow.contract import parse_operator
from edgerm.agent.dataflow.delivery import MAX_STATE_BYTES, Checkpoint, decode_checkpoint
from edgerm.agent.dataflow.records import replica_of
from edgerm.dataflow.operator import (
    MAX_CONSECUTIVE_FAILURES,
    STATE_FILE,
    Operator,
    Record,
    decode,
    encode,
    per_batch,
    run,
)
from edgerm.errors import ConfigError, StateError

ENV = {
    "EDGERM_DF_DAG": "d",
    "EDGERM_DF_OPERATOR": "op",
    "EDGERM_DF_ROLE": "operator",
    "EDGERM_DF_IN": "edgerm/d/src/out",
    "EDGERM_DF_OUT": "edgerm/d/op/out",
    "EDGERM_BROKER": "mqtt://127.0.0.1:1883",
    "EDGERM_DF_QUEUE": "2",
}


def payload(*seqs: int, src: str = "s.0") -> bytes:
    return "".join(Record(src, s, 100.0 + s, float(s)).line() + "\n" for s in seqs).encode()


def test_decode_and_encode_use_the_data_plane_codec() -> None:
    records, bad = decode(payload(1, 2) + b"not a record\n")
    assert [r.seq for r in records] == [1, 2] and bad == 1
    parts = encode([Record("s.0", i, 1.0, i * 2.0) for i in range(5)], max_records=2)
    assert len(parts) == 3 and decode(b"".join(parts))[0][4].value == 8.0
    sources = [f"s.{i}" for i in range(8)]
    mine = b"".join(payload(0, src=s) for s in sources)
    assert {r.src for r in decode(mine, 1, 2)[0]} == {s for s in sources if replica_of(s, 2) == 1}


def test_per_record_functions_may_drop_or_fan_out() -> None:
    def f(r: Record) -> Record | list[Record] | None:
        if r.seq == 0:
            return None
        if r.seq == 1:
            return [r, Record(r.src, r.seq, r.t, -r.value)]
        return Record(r.src, r.seq, r.t, r.value + 1)

    out = per_batch(f)(decode(payload(0, 1, 2))[0])
    assert [(r.seq, r.value) for r in out] == [(1, 1.0), (1, -1.0), (2, 3.0)]


async def test_a_failing_function_drops_its_batch_and_too_many_failures_end_the_operator() -> None:
    def boom(records: list[Record]) -> list[Record]:
        if records[0].seq >= 100:
            raise ValueError("bad value")
        return records

    op = Operator(parse_operator({**ENV, "EDGERM_DF_QUEUE": "64"}), boom)
    op.take_in(payload(1, 2))
    batch = op.queue.take(100)
    assert batch is not None and op.apply(batch) is not None
    for i in range(MAX_CONSECUTIVE_FAILURES):
        op.take_in(payload(100 + i))
        batch = op.queue.take(100)
        assert batch is not None and op.apply(batch) is None
    assert op.counters.errors == MAX_CONSECUTIVE_FAILURES and op.counters.dropped == MAX_CONSECUTIVE_FAILURES
    assert "ValueError: bad value" in op.last_error
    assert await op.run() == 1  # it had already finished: the exit status is 1
    stats = json.loads(json.dumps(op.stats()))
    assert (stats["in"], stats["out"], stats["errors"], stats["batches"]) == (12, 2, 10, 1)


async def test_the_queue_is_bounded_and_what_it_drops_is_counted() -> None:
    op = Operator(parse_operator(ENV), lambda rs: rs)  # EDGERM_DF_QUEUE=2
    for i in range(5):
        op.take_in(payload(2 * i, 2 * i + 1))
    assert len(op.queue) == 2 and op.counters.dropped == 6 and op.counters.received == 10
    op.take_in(b"garbage\n\n")
    assert op.counters.dropped == 7


async def test_a_function_returning_something_else_than_records_is_a_failure() -> None:
    op = Operator(parse_operator(ENV), lambda rs: [1, 2])  # type: ignore[arg-type, return-value]
    op.take_in(payload(1))
    batch = op.queue.take(10)
    assert batch is not None and op.apply(batch) is None and "TypeError" in op.last_error


async def test_sources_are_refused() -> None:
    env = {**ENV, "EDGERM_DF_ROLE": "source", "EDGERM_DF_DEVICE": "sim:sine"}
    with pytest.raises(ConfigError, match="not sources"):
        Operator(parse_operator(env), lambda rs: rs)


def test_run_exits_2_naming_the_bad_key(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        run(lambda r: r, env={**ENV, "EDGERM_DF_REPLICA": "5/2"})
    assert e.value.code == 2 and "EDGERM_DF_REPLICA" in capsys.readouterr().err
    with pytest.raises(TypeError):
        run()


async def test_a_record_whose_call_fails_costs_that_record_alone() -> None:
    def strict(r: Record) -> Record:
        if r.seq % 3 == 0:
            raise KeyError("temperature")
        return Record(r.src, r.seq, r.t, r.number + 1)

    op = Operator(parse_operator({**ENV, "EDGERM_DF_QUEUE": "64"}), record=strict)
    op.take_in(payload(1, 2, 3, 4, 5, 6))
    batch = op.queue.take(100)
    assert batch is not None
    out = op.apply(batch)
    assert out is not None and [(r.seq, r.value) for r in decode(b"".join(out))[0]] == [(1, 2), (2, 3), (4, 5), (5, 6)]
    c = op.counters
    assert (c.received, c.sent, c.dropped, c.errors, c.batches, op.failures) == (6, 4, 2, 2, 1, 0)
    assert op.last_error == "record s.0 6: KeyError: 'temperature'"
    # a batch of which no record got through is a failed batch, and counts towards the limit
    for i in range(MAX_CONSECUTIVE_FAILURES):
        op.take_in(payload(3 * (10 + i)))
        batch = op.queue.take(100)
        assert batch is not None and op.apply(batch) is None
    assert await op.run() == 1 and op.counters.errors == 2 + MAX_CONSECUTIVE_FAILURES


async def test_an_operator_takes_one_kind_of_function() -> None:
    with pytest.raises(TypeError, match="not both"):
        Operator(parse_operator(ENV), lambda rs: rs, record=lambda r: r)
    with pytest.raises(TypeError, match="not both"):
        Operator(parse_operator(ENV))


# -- state ------------------------------------------------------------------------------


def counting(r: Record, state: dict[str, object]) -> Record:
    n = int(state.get("n", 0)) + 1  # type: ignore[call-overload]
    state["n"] = n
    return Record(r.src, r.seq, r.t, float(n))


async def test_a_stateful_function_changes_its_state_and_each_batch_prepares_a_checkpoint() -> None:
    state: dict[str, object] = {}
    op = Operator(parse_operator({**ENV, "EDGERM_DF_QUEUE": "64", "EDGERM_DF_RUN": "r1"}), record=counting, state=state)
    op.restore(None)  # no checkpoint: the initial state
    op.take_in(payload(0, 1, 2))
    batch = op.queue.take(100)
    assert batch is not None
    out = op.apply(batch)
    assert out is not None and [r.value for r in decode(b"".join(out))[0]] == [1.0, 2.0, 3.0]
    assert state == {"n": 3}
    saved = decode_checkpoint(op._next_checkpoint)
    assert saved.run == "r1" and json.loads(saved.files[STATE_FILE]) == {"n": 3}
    assert saved.marks == {"s.0": (2, 102.0)}  # the inputs it covers


async def test_a_replacement_restores_the_state_and_drops_inputs_the_checkpoint_covers() -> None:
    checkpoint = Checkpoint("old-task", "", {STATE_FILE: b'{"n":3}'}, None, {"s.0": (2, 102.0)})
    state: dict[str, object] = {"n": 0}
    op = Operator(parse_operator({**ENV, "EDGERM_DF_QUEUE": "64"}), record=counting, state=state, task_id="new")
    op.restore(decode_checkpoint(checkpoint.encode()))
    assert state == {"n": 3} and op.started_from == "old-task" and op.restored.is_set()
    op.take_in(payload(1, 2, 3, 4))  # 1 and 2 come again (not acknowledged by the old instance)
    batch = op.queue.take(100)
    assert batch is not None
    out = op.apply(batch)
    assert out is not None and [(r.seq, r.value) for r in decode(b"".join(out))[0]] == [(3, 4.0), (4, 5.0)]
    assert op.counters.duplicates == 2 and state == {"n": 5} and op.stats()["duplicates"] == 2


async def test_a_failed_batch_leaves_the_state_as_it_was() -> None:
    def batch_sum(records: list[Record], state: dict[str, object]) -> list[Record]:
        for r in records:
            state["sum"] = float(state["sum"]) + r.number  # type: ignore[arg-type]
            if r.number > 100:
                raise ValueError("too hot")
        return [Record(records[-1].src, records[-1].seq, records[-1].t, float(state["sum"]))]  # type: ignore[arg-type]

    state: dict[str, object] = {"sum": 0.0}
    op = Operator(parse_operator({**ENV, "EDGERM_DF_QUEUE": "64"}), batch_sum, state=state)
    op.restore(None)
    op.take_in(payload(1, 2))
    first = op.queue.take(100)
    assert first is not None and op.apply(first) is not None and state == {"sum": 3.0}
    op.take_in(payload(5, 500))
    second = op.queue.take(100)
    assert second is not None and op.apply(second) is None
    assert state == {"sum": 3.0} and "too hot" in op.last_error
    op.take_in(payload(5))  # 5 was rolled back too: it is not a duplicate
    third = op.queue.take(100)
    assert third is not None and op.apply(third) is not None and state == {"sum": 8.0}


async def test_a_state_over_the_limit_or_not_json_fails_its_batch_with_a_clear_error() -> None:
    def grow(r: Record, state: dict[str, object]) -> Record:
        state["blob"] = "x" * (MAX_STATE_BYTES + 1) if r.seq == 1 else "small"
        return r

    state: dict[str, object] = {}
    op = Operator(parse_operator({**ENV, "EDGERM_DF_QUEUE": "64"}), record=grow, state=state)
    op.restore(None)
    op.take_in(payload(1))
    batch = op.queue.take(100)
    assert batch is not None and op.apply(batch) is None
    assert op.last_error.startswith("StateError:") and "over the 65536 limit" in op.last_error
    assert state == {} and op.counters.errors == 1 and op.counters.dropped == 1
    with pytest.raises(StateError, match="JSON values only"):
        Operator(parse_operator(ENV), record=grow, state={"when": object()})
    with pytest.raises(TypeError, match="dict"):
        Operator(parse_operator(ENV), record=grow, state=[1, 2])  # type: ignore[arg-type]
