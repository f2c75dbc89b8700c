"""The record codec (edgerm.dataflow_records) and the delivery parts (acks, duplicates, checkpoints): pure."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgerm.agent.dataflow.delivery import MAX_STATE_BYTES, AckTracker, Checkpoint, Deduper, decode_checkpoint
from edgerm.dataflow_records import (
    MAX_BATCH_BYTES,
    MAX_RECORD_BYTES,
    Kind,
    Record,
    decode_batch,
    encode_batch,
    encode_binary,
    is_binary,
    is_clean_text,
)
from edgerm.errors import MalformedMessage, MessageTooLarge

json_values = st.recursive(
    st.none() | st.booleans() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)
srcs = st.text("abc.0123456789_-", min_size=1, max_size=12)
times = st.floats(0, 2e9, allow_nan=False).map(lambda t: round(t, 6))
numbers = st.floats(-1e9, 1e9, allow_nan=False).map(lambda v: float(f"{v:.12g}"))
payloads = numbers | json_values | st.binary(max_size=64)


@given(st.lists(st.tuples(srcs, st.integers(0, 2**40), times, payloads, st.sampled_from(["", "image/png"]))))
def test_batches_round_trip_in_either_framing(items: list[tuple[str, int, float, object, str]]) -> None:
    records = [Record(s, q, t, v, ct if isinstance(v, bytes) else "") for s, q, t, v, ct in items]
    data = encode_batch(records)
    assert is_binary(data) == any(r.kind is Kind.BYTES for r in records)
    assert decode_batch(data).records == records
    assert decode_batch(encode_binary(records)).records == records


def test_numbers_and_json_travel_as_todays_text_lines() -> None:
    data = encode_batch([Record("r.0", 1, 2.5, 21.5), Record("r.0", 2, 2.5, {"temperature": 21.5, "room": "a b"})])
    assert data == b'r.0 1 2.500000 21.5\nr.0 2 2.500000 {"temperature":21.5,"room":"a b"}\n'
    assert is_clean_text(data) and not is_clean_text(b"r.0 x 2 3\n") and not is_clean_text(b"r.0 1 2 3")
    decoded = decode_batch(data + b"not a record\n\n")
    assert decoded.malformed == 1 and decoded.records[1].value["room"] == "a b"  # type: ignore[index]
    assert decoded.records[0].number == 21.5
    with pytest.raises(ValueError):
        _ = decoded.records[1].number


def test_limits_give_a_clear_typed_error() -> None:
    with pytest.raises(MessageTooLarge, match="over the 8388608 limit"):
        encode_batch([Record("cam.0", 0, 1.0, b"x" * (MAX_RECORD_BYTES + 1))])
    two = [Record("cam.0", i, 1.0, b"x" * MAX_RECORD_BYTES) for i in range(3)]
    with pytest.raises(MessageTooLarge, match="micro-batch"):
        encode_batch(two)
    with pytest.raises(MessageTooLarge):
        decode_batch(b"a" * (MAX_BATCH_BYTES + 1))


def test_a_binary_batch_that_does_not_parse_is_malformed() -> None:
    good = encode_binary([Record("a.0", 0, 1.0, b"abc")])
    for bad in (good[:-1], good + b"x", b"\x00EDB\x07" + good[5:], good[:6]):
        with pytest.raises(MalformedMessage):
            decode_batch(bad)
    with pytest.raises(ValueError):
        encode_binary([Record("has space", 0, 1.0, b"")])


def test_acks_go_out_in_order_and_never_across_connections() -> None:
    acks = AckTracker()
    acks.connected()
    a, b, c = acks.received(1), acks.received(2), acks.received(3)
    assert acks.done([b]) == []  # 1 is not done: 2 waits
    assert acks.done([a]) == [1, 2]
    acks.connected()  # the broker resends 3: its old token is void
    assert acks.done([c]) == [] and len(acks) == 0
    d = acks.received(3)
    assert acks.done([d, "not an ack"]) == [3]


def test_the_deduper_drops_redeliveries_and_keeps_a_restarted_source() -> None:
    d = Deduper()
    assert [d.keep("s", q, t) for q, t in [(0, 1.0), (1, 2.0), (1, 2.0), (0, 1.0), (2, 3.0)]] == [
        True,
        True,
        False,
        False,
        True,
    ]
    assert d.keep("s", 0, 9.0)  # seq went back with a newer reading: the source started again
    body, n = Deduper(d.marks()).filter_text(b"s 0 9.0 1\ns 1 10.0 1\nbroken\n")
    assert (body, n) == (b"s 1 10.0 1\n", 1)
    assert d.duplicates == 2


def test_checkpoints_round_trip_and_are_bounded() -> None:
    cp = Checkpoint("task-1", "fw-1", {"aggregate": b"3 4 1.5 17\n"}, seq=42, marks={"a.0": (7, 1.5)})
    assert decode_checkpoint(cp.encode()) == cp
    assert Checkpoint("t").empty and not cp.empty
    with pytest.raises(MessageTooLarge):
        Checkpoint("t", files={"big": b"x" * MAX_STATE_BYTES}).encode()
    for bad in (b"{", b'{"v": 2}', b'{"v": 1, "files": {"../x": ""}}', b'{"v": 1, "files": {"a": "!!"}}'):
        with pytest.raises(MalformedMessage):
            decode_checkpoint(bad)


@given(st.lists(st.lists(st.tuples(st.sampled_from(["a.0", "b.0"]), st.integers(0, 6), st.integers(0, 3)), max_size=6)))
def test_the_deduper_fast_path_drops_exactly_what_a_record_by_record_check_drops(
    batches: list[list[tuple[str, int, int]]],
) -> None:
    fast, slow = Deduper(), Deduper()
    for batch in batches:
        payload = b"".join(f"{s} {q} {t}.0 1\n".encode() for s, q, t in batch)
        kept = [f"{s} {q} {t}.0 1\n".encode() for s, q, t in batch if slow.keep(s, q, float(t))]
        body, n = fast.filter_text(payload)
        assert (body, n) == (b"".join(kept), len(kept))
    assert fast.marks() == slow.marks()


def test_binary_kinds_walks_the_framing_without_copying() -> None:
    from edgerm.dataflow_records import binary_kinds

    data = encode_binary([Record("a.0", 0, 1.0, b"x" * 100), Record("a.0", 1, 1.0, 2.5)])
    assert binary_kinds(data) == [Kind.BYTES, Kind.NUMBER]
    for bad in (data[:-1], data + b"x", data[:5] + b"\x00\x00\x00\x09" + data[9:]):
        with pytest.raises(MalformedMessage):
            binary_kinds(bad)


def test_the_deduper_passes_a_binary_batch_without_duplicates_as_it_is() -> None:
    d = Deduper()
    first = encode_binary([Record("cam.0", 0, 1.0, b"a"), Record("cam.0", 1, 2.0, b"b")])
    assert d.filter_binary(first) == (first, 2)
    again = encode_binary([Record("cam.0", 1, 2.0, b"b"), Record("cam.0", 2, 3.0, b"c")])
    body, n = d.filter_binary(again)
    assert n == 1 and decode_batch(body).records == [Record("cam.0", 2, 3.0, b"c")]
    assert d.filter_binary(first) == (b"", 0) and d.duplicates == 3
