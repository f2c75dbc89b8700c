"""Records, replica selection, the drop-oldest queue, batching and splitting (pure, with properties)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgerm.agent.dataflow.readers import check_handle, value_of
from edgerm.agent.dataflow.records import (
    Batch,
    BatchQueue,
    Record,
    format_record,
    module_input,
    module_output,
    parse_record,
    passes_through,
    replica_of,
    select,
    split,
    split_lines,
)
from edgerm.dataflow_keys import MAX_BATCH_BYTES
from edgerm.dataflow_records import encode_binary
from edgerm.errors import ConfigError


def test_records_round_trip() -> None:
    line = format_record("read.0", 7, 1700000000.123456, 21.5)
    assert line == "read.0 7 1700000000.123456 21.5"
    assert parse_record(line) == Record("read.0", 7, 1700000000.123456, 21.5)
    assert Record("x", 1, 2.0, -0.25).line() == "x 1 2.000000 -0.25"


@pytest.mark.parametrize("line", ["", "a 1 2", "a 1 2 3 4", "a x 2 3", "a 1 t 3", "a 1 2 v", "a -1 2 3", "a 1 2 {x"])
def test_malformed_records_are_refused(line: str) -> None:
    with pytest.raises(ValueError):
        parse_record(line)


def test_select_keeps_well_formed_records_of_this_replica() -> None:
    payload = b"a.0 0 1.0 5\nbroken line\n\nb.0 0 1.0 6\na.0 1 inf 7\na.0 2 2.0 nan\n"
    everything = select(payload, 0, 1)
    assert len(everything.batch) == 3
    assert everything.batch.lines == ("a.0 0 1.0 5", "b.0 0 1.0 6", "a.0 2 2.0 nan")
    assert everything.malformed == 2  # "broken line" and a time that is not finite
    mine = select(payload, replica_of("a.0", 2), 2)
    assert {line.split()[0] for line in mine.batch.lines} == {"a.0"}


@given(st.lists(st.text("abc.0123456789", min_size=1, max_size=8), min_size=1, max_size=40), st.integers(1, 5))
def test_replicas_partition_the_sources(sources: list[str], n: int) -> None:
    payload = "".join(f"{src} {i} 1.0 2.0\n" for i, src in enumerate(sources)).encode()
    kept = [select(payload, i, n).batch.lines for i in range(n)]
    assert sorted(line for lines in kept for line in lines) == sorted(payload.decode().splitlines())
    for i, lines in enumerate(kept):
        assert all(replica_of(line.split()[0], n) == i for line in lines)


def test_a_clean_text_batch_passes_through_without_a_copy() -> None:
    payload = b'a.0 0 1.0 5\na.0 1 1.0 {"temperature":21.5,"room":"a b"}\n'
    chosen = select(payload, 0, 1, acks=("m1",))
    assert chosen.batch.payload is payload and len(chosen.batch) == 2 and chosen.batch.acks == ("m1",)
    assert parse_record(chosen.batch.lines[1]).value == {"temperature": 21.5, "room": "a b"}


def test_the_queue_drops_the_oldest_batch_when_full() -> None:
    q = BatchQueue(2)
    first, second, third = Batch.of(["a 0 1 1"], ("x",)), Batch.of(["a 1 1 1", "a 2 1 1"]), Batch.of(["a 3 1 1"])
    assert q.put(first) == [] and q.put(second) == []
    assert q.put(third) == [first]  # returned with its acks, so the host can acknowledge it
    assert (len(q), q.records) == (2, 3)
    assert q.take(10) == Batch.of(["a 1 1 1", "a 2 1 1", "a 3 1 1"])  # merged, in order
    assert q.take(10) is None and q.records == 0


def test_take_merges_text_within_the_bounds_and_binary_never() -> None:
    q = BatchQueue(8)
    for i in range(4):
        q.put(Batch.of([f"a {2 * i} 1 1", f"a {2 * i + 1} 1 1"], (i,)))
    first = q.take(3)
    assert first is not None and len(first) == 2 and first.acks == (0,)  # a second batch would make 4
    second = q.take(4)
    assert second is not None and len(second) == 4 and second.acks == (1, 2)
    assert len(q.take(100) or ()) == 2
    big = Batch.of(["x" * 40_000])
    q.put(big)
    q.put(big)
    assert q.take(100) == big  # 80 KB together: over 64 KiB, so one at a time
    blob = Batch(encode_binary([Record("c.0", 0, 1.0, b"\x00\x01", "image/png")]), 1)
    q.put(blob)
    q.put(Batch.of(["a 9 1 1"]))
    assert [len(b) for b in q.clear()] == [1, 1, 1]


def test_append_piles_records_onto_the_newest_batch() -> None:
    q = BatchQueue(4)
    for i in range(5):
        assert q.append(Batch.of([f"s {i} 1 1"]), max_records=3) == []
    assert len(q) == 2 and q.records == 5
    assert q.take(100) == Batch.of([f"s {i} 1 1" for i in range(5)])


@given(st.lists(st.integers(1, 20), max_size=60), st.integers(1, 6))
def test_the_queue_never_holds_more_than_its_bound_and_loses_nothing_uncounted(sizes: list[int], bound: int) -> None:
    q = BatchQueue(bound)
    dropped = 0
    for n in sizes:
        dropped += sum(len(b) for b in q.put(Batch.of([f"s {i} 1 1" for i in range(n)])))
        assert len(q) <= bound
    taken = 0
    while (b := q.take(1000)) is not None:
        taken += len(b)
    assert taken + dropped == sum(sizes)


@given(st.lists(st.text("xyz", min_size=1, max_size=300), max_size=200), st.integers(1, 50))
def test_split_respects_both_bounds(lines: list[str], max_records: int) -> None:
    batches = split_lines([line.encode() for line in lines], max_records, max_bytes=2000)
    assert [line for b in batches for line in b.lines] == lines
    for b in batches:
        assert len(b) <= max_records and b.nbytes == len(b.payload)
        assert b.nbytes <= 2000 or len(b) == 1
    whole = Batch.of(lines)
    assert [line for b in split(whole, max_records, 2000) for line in b.lines] == lines


def test_bytes_records_bypass_the_module_and_come_back_first() -> None:
    frame = Record("cam.0", 3, 5.0, b"\xff\xd8 jpeg", "image/jpeg")
    batch = Batch(encode_binary([Record("t.0", 1, 5.0, 21.5), frame, Record("t.0", 2, 5.0, {"a": 1})]), 3)
    given_ = module_input(batch)
    assert given_.stdin == b't.0 1 5.000000 21.5\nt.0 2 5.000000 {"a":1}\n' and given_.records == 2
    assert given_.bypass == (frame,)
    out = module_output(b"t.0 1 5.000000 43\n", given_.bypass)
    assert out.binary and out.decoded() == [frame, Record("t.0", 1, 5.0, 43.0)]
    text = module_output(b"a 1 2 3\n\n  \nb 1 2 3")
    assert text.lines == ("a 1 2 3", "b 1 2 3") and len(text) == 2 and MAX_BATCH_BYTES == 65536


def test_only_a_batch_of_bytes_records_passes_the_module_by() -> None:
    frame = Record("cam.0", 3, 5.0, b"\xff\xd8 jpeg", "image/jpeg")
    assert passes_through(Batch(encode_binary([frame, frame]), 2))
    assert not passes_through(Batch(encode_binary([frame, Record("t.0", 1, 5.0, 21.5)]), 2))
    assert not passes_through(Batch(b"t.0 1 5.000000 21.5\n", 1))
    assert not passes_through(Batch(encode_binary([frame])[:-1], 1))  # broken: the module run refuses it


def test_a_binary_batch_is_selected_per_replica_and_a_broken_one_refused() -> None:
    records = [Record(f"s.{i}", 0, 1.0, bytes([i])) for i in range(8)]
    payload = encode_binary(records)
    assert select(payload, 0, 1).batch.payload is payload
    parts = [select(payload, i, 2).batch for i in range(2)]
    assert sorted(r.src for b in parts for r in b.decoded()) == sorted(r.src for r in records)
    broken = select(payload[:-1], 0, 1, acks=("m",))
    assert broken.malformed == 1 and len(broken.batch) == 0 and broken.batch.acks == ("m",)


def test_readings_values_and_handles() -> None:
    assert value_of("21.5") == 21.5 and value_of("temp 21.5") == 21.5 and value_of(" -3 ") == -3.0
    assert value_of("") is None and value_of("t=21.5") is None and value_of("nan") is None
    assert value_of('{"temperature": 21.5}') == {"temperature": 21.5} and value_of("{broken") is None
    for ok in ("sim:sine", "sim:random", "file:/dev/temp", "cmd:cat /sys/x", "cmd+bytes:cat /x", "dir:/drop"):
        check_handle(ok)
    for bad in ("sim:cosine", "file:rel", "cmd: ", "/dev/video0", "dir:rel", "cmd+bytes:"):
        with pytest.raises(ConfigError):
            check_handle(bad)


def test_batches_the_broker_will_send_again_can_be_dropped() -> None:
    q = BatchQueue(8)
    q.put(Batch.of(["a 0 1 1"], ("old",)))
    q.put(Batch.of(["a 1 1 1"], ()))  # a source's readings owe no ack: kept
    q.put(Batch.of(["a 2 1 1"], ("new",)))
    assert q.drop_acked_by(lambda ack: ack == "old") == 1
    assert [b.acks for b in q.clear()] == [(), ("new",)]
