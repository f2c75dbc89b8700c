"""Records, replica selection, the drop-oldest queue, batching and splitting (pure, with properties)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgerm.agent.dataflow.readers import check_handle, value_of
from edgerm.agent.dataflow.records import (
    Batch,
    Batcher,
    BatchQueue,
    Record,
    format_record,
    output_lines,
    parse_record,
    replica_of,
    select,
    split,
)
from edgerm.dataflow_keys import MAX_BATCH_BYTES
from edgerm.errors import ConfigError


def test_records_round_trip() -> None:
    line = format_record("read.0", 7, 1700000000.123456, 21.5)
    assert line == "read.0 7 1700000000.123456 21.5"
    assert parse_record(line) == Record("read.0", 7, 1700000000.123456, 21.5)
    assert Record("x", 1, 2.0, -0.25).line() == "x 1 2.000000 -0.25"


@pytest.mark.parametrize("line", ["", "a 1 2", "a 1 2 3 4", "a x 2 3", "a 1 t 3", "a 1 2 v", "a -1 2 3"])
def test_malformed_records_are_refused(line: str) -> None:
    with pytest.raises(ValueError):
        parse_record(line)


def test_select_keeps_well_formed_records_of_this_replica() -> None:
    payload = b"a.0 0 1.0 5\nbroken line\n\nb.0 0 1.0 6\na.0 1 inf 7\na.0 2 2.0 nan\n"
    everything = select(payload, 0, 1)
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


def test_the_queue_drops_the_oldest_batch_when_full() -> None:
    q = BatchQueue(2)
    first, second, third = Batch.of(["a 0 1 1"]), Batch.of(["a 1 1 1", "a 2 1 1"]), Batch.of(["a 3 1 1"])
    assert q.put(first) is None and q.put(second) is None
    assert q.put(third) is first
    assert (len(q), q.records) == (2, 3)
    assert q.take(10) == Batch.of(["a 1 1 1", "a 2 1 1", "a 3 1 1"])  # merged, in order
    assert q.take(10) is None and q.records == 0


def test_take_merges_only_within_the_bounds() -> None:
    q = BatchQueue(8)
    for i in range(4):
        q.put(Batch.of([f"a {2 * i} 1 1", f"a {2 * i + 1} 1 1"]))
    assert len(q.take(3) or ()) == 2  # a second batch would make 4 records
    assert len(q.take(4) or ()) == 4
    assert len(q.take(100) or ()) == 2
    big = Batch.of(["x" * 40_000])
    q.put(big)
    q.put(big)
    assert q.take(100) is big  # 80 KB together: over 64 KiB, so one at a time
    assert q.clear() == 1 and len(q) == 0


@given(st.lists(st.integers(1, 20), max_size=60), st.integers(1, 6))
def test_the_queue_never_holds_more_than_its_bound_and_loses_nothing_uncounted(sizes: list[int], bound: int) -> None:
    q = BatchQueue(bound)
    dropped = 0
    for n in sizes:
        lost = q.put(Batch.of([f"s {i} 1 1" for i in range(n)]))
        dropped += len(lost) if lost else 0
        assert len(q) <= bound
    taken = 0
    while (b := q.take(1000)) is not None:
        taken += len(b)
    assert taken + dropped == sum(sizes)


def test_the_batcher_cuts_by_count_and_by_size() -> None:
    b = Batcher(3)
    assert b.add("a") == [] and b.add("b") == []
    assert b.add("c") == [Batch.of(["a", "b", "c"])]
    assert b.flush() is None
    b.add("d")
    assert b.flush() == Batch.of(["d"]) and len(b) == 0
    small = Batcher(100, max_bytes=10)
    assert small.add("1234") == []
    assert small.add("6789") == [Batch.of(["1234", "6789"])]  # 10 bytes with newlines: full
    assert small.add("123456") == [] and small.add("abcdef") == [Batch.of(["123456"])]


@given(st.lists(st.text("xyz ", min_size=1, max_size=300), max_size=200), st.integers(1, 50))
def test_split_respects_both_bounds(lines: list[str], max_records: int) -> None:
    batches = split(lines, max_records, max_bytes=2000)
    assert [line for b in batches for line in b.lines] == lines
    for b in batches:
        assert len(b) <= max_records and b.nbytes == len(b.payload())
        assert b.nbytes <= 2000 or len(b) == 1


def test_output_lines_and_default_byte_bound() -> None:
    assert output_lines(b"a 1 2 3\n\n  \nb 1 2 3") == ["a 1 2 3", "b 1 2 3"]
    assert MAX_BATCH_BYTES == 65536


def test_readings_values_and_handles() -> None:
    assert value_of("21.5") == 21.5 and value_of("temp 21.5") == 21.5 and value_of(" -3 ") == -3.0
    assert value_of("") is None and value_of("t=21.5") is None and value_of("nan") is None
    for ok in ("sim:sine", "sim:random", "file:/dev/temp", "cmd:cat /sys/x"):
        check_handle(ok)
    for bad in ("sim:cosine", "file:rel", "cmd: ", "/dev/video0"):
        with pytest.raises(ConfigError):
            check_handle(bad)
