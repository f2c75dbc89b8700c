"""What `edgerm-dataflow run --records` prints for a sink's batch: text as it came, and a bytes record as a
summary (source, seq, time, content type, size), never its raw bytes."""

from __future__ import annotations

from edgerm.dataflow_records import MAGIC, Record, encode_batch
from edgerm.frameworks.dataflow.monitor import printable


def test_text_batches_print_as_they_came() -> None:
    batch = encode_batch([Record("r.0", 1, 10.0, 21.5), Record("r.0", 2, 11.0, {"room": "a"})])
    assert printable(batch) == ["r.0 1 10.000000 21.5", 'r.0 2 11.000000 {"room":"a"}']


def test_bytes_records_print_as_a_summary() -> None:
    frame = b"P5\n2 2\n255\n\n\n\x00\xff"
    batch = encode_batch([Record("cam.0", 3, 12.5, frame, "image/x-portable-graymap"), Record("cam.0", 4, 13.0, 1.0)])
    assert printable(batch) == [
        f"cam.0 3 12.500000 <image/x-portable-graymap, {len(frame)} bytes>",
        "cam.0 4 13.000000 1",
    ]


def test_a_malformed_binary_batch_is_one_line() -> None:
    (line,) = printable(MAGIC + b"\x01\x00\x00\x00\x05trunc")
    assert line.startswith("<a malformed binary batch of 14 bytes")
