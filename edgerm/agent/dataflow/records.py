"""Records and micro-batches: parsing, replica selection, batching, the bounded queue.

A record is one line ``<src> <seq> <t> <value>`` (docs/dataflow.md); a
micro-batch is at most ``batch`` records and :data:`MAX_BATCH_BYTES` of UTF-8
text, one record per line. Rules:

- Incoming batches are checked line by line (:func:`select`): malformed lines
  are counted and dropped, never passed on; a replica keeps only the records
  whose source hashes to its index (:func:`replica_of`), so every
  record of one source goes to the same replica and stays in order.
- :class:`BatchQueue` is the per-operator input queue: bounded in batches;
  when full, the OLDEST batch is dropped and returned so the caller counts
  it. Memory is therefore bounded by ``bound`` batches of at most 64 KiB.
- :class:`Batcher` forms a source's readings into batches; time-based
  flushing is the caller's (it owns the clock).

Pure: no I/O, no asyncio.
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from edgerm.dataflow_keys import MAX_BATCH_BYTES, Record, format_record, parse_record

__all__ = ["Record", "format_record", "parse_record"]


def replica_of(src: str, replicas: int) -> int:
    """The replica index that handles records of source ``src``."""
    # blake2s, not CRC-32: CRC is linear, so names differing only in their last digit ("x.0", "x.2") would
    # collide on the same replica; a cryptographic digest spreads them evenly.
    digest = hashlib.blake2s(src.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % replicas


@dataclass(frozen=True, slots=True)
class Batch:
    """A micro-batch: record lines (without newlines) and their encoded size."""

    lines: tuple[str, ...]
    nbytes: int  # UTF-8 bytes including one newline per line

    @classmethod
    def of(cls, lines: Sequence[str]) -> Batch:
        return cls(tuple(lines), sum(len(line.encode()) + 1 for line in lines))

    def __len__(self) -> int:
        return len(self.lines)

    def payload(self) -> bytes:
        return "".join(f"{line}\n" for line in self.lines).encode()


@dataclass(frozen=True, slots=True)
class Selected:
    """What :func:`select` kept of an incoming payload, and how many lines it refused."""

    batch: Batch
    malformed: int


def select(payload: bytes, index: int, replicas: int) -> Selected:
    """The well-formed records of ``payload`` that belong to replica ``index`` of ``replicas``."""
    kept: list[str] = []
    malformed = 0
    for raw in payload.decode("utf-8", "replace").splitlines():
        line = raw.strip()
        if not line:
            continue
        try:
            record = parse_record(line)
        except ValueError:
            malformed += 1
            continue
        if not math.isfinite(record.t):
            malformed += 1
            continue
        if replicas > 1 and replica_of(record.src, replicas) != index:
            continue
        kept.append(line)
    return Selected(Batch.of(kept), malformed)


def output_lines(output: bytes) -> list[str]:
    """A module's stdout as non-empty lines."""
    return [line for line in (raw.strip() for raw in output.decode("utf-8", "replace").splitlines()) if line]


def split(lines: Iterable[str], max_records: int, max_bytes: int = MAX_BATCH_BYTES) -> list[Batch]:
    """Cut lines into batches of at most ``max_records`` lines and ``max_bytes`` bytes.

    A single line longer than ``max_bytes`` still makes a batch of its own.
    """
    out: list[Batch] = []
    current: list[str] = []
    size = 0
    for line in lines:
        n = len(line.encode()) + 1
        if current and (len(current) >= max_records or size + n > max_bytes):
            out.append(Batch(tuple(current), size))
            current, size = [], 0
        current.append(line)
        size += n
    if current:
        out.append(Batch(tuple(current), size))
    return out


class BatchQueue:
    """A FIFO of batches, bounded; when full the oldest batch makes room and is returned."""

    def __init__(self, bound: int) -> None:
        if bound < 1:
            raise ValueError("a queue holds at least one batch")
        self.bound = bound
        self._items: deque[Batch] = deque()
        self._records = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def records(self) -> int:
        """Records waiting in the queue."""
        return self._records

    def put(self, batch: Batch) -> Batch | None:
        """Append ``batch``; return the batch dropped to make room (the oldest), if any."""
        dropped = None
        if len(self._items) >= self.bound:
            dropped = self._items.popleft()
            self._records -= len(dropped)
        self._items.append(batch)
        self._records += len(batch)
        return dropped

    def take(self, max_records: int, max_bytes: int = MAX_BATCH_BYTES) -> Batch | None:
        """The oldest batch, merged with the ones after it while the result fits the bounds."""
        if not self._items:
            return None
        first = self._items.popleft()
        lines = list(first.lines)
        size = first.nbytes
        while self._items:
            nxt = self._items[0]
            if len(lines) + len(nxt) > max_records or size + nxt.nbytes > max_bytes:
                break
            self._items.popleft()
            lines.extend(nxt.lines)
            size += nxt.nbytes
        self._records -= len(lines)
        return first if len(lines) == len(first) else Batch(tuple(lines), size)

    def clear(self) -> int:
        """Empty the queue; return how many records it held."""
        n = self._records
        self._items.clear()
        self._records = 0
        return n


class Batcher:
    """Collects record lines into batches of at most ``max_records`` lines and ``max_bytes`` bytes."""

    def __init__(self, max_records: int, max_bytes: int = MAX_BATCH_BYTES) -> None:
        self.max_records = max_records
        self.max_bytes = max_bytes
        self._lines: list[str] = []
        self._size = 0

    def __len__(self) -> int:
        return len(self._lines)

    def add(self, line: str) -> list[Batch]:
        """Add a line; return the batches that became full (none, or one, rarely two)."""
        out: list[Batch] = []
        n = len(line.encode()) + 1
        if self._lines and self._size + n > self.max_bytes:
            out.append(self._take())
        self._lines.append(line)
        self._size += n
        if len(self._lines) >= self.max_records or self._size >= self.max_bytes:
            out.append(self._take())
        return out

    def flush(self) -> Batch | None:
        """The partial batch, if any."""
        return self._take() if self._lines else None

    def _take(self) -> Batch:
        batch = Batch(tuple(self._lines), self._size)
        self._lines, self._size = [], 0
        return batch
