"""Micro-batches in the host: replica selection, the bounded queue, module input and output.

Records and their two framings are :mod:`edgerm.dataflow_records` (docs/dataflow.md). Here a :class:`Batch` is
one framed payload as it travels, its record count, and the acknowledgements it owes (the input messages it
came from). Rules:

- **No per-record work when none is needed.** A text batch for an operator with one replica is checked by one
  regular expression (C) and passed on as bytes; queued text batches merge by concatenation. Lines are parsed
  only when the regex finds a malformed line (to drop and count it) or replicas > 1 (to hash ``src``).
- A replica keeps only the records whose source hashes to its index (:func:`replica_of`), so every record of
  one source goes to the same replica and stays in order.
- :class:`BatchQueue` is the per-instance input queue: bounded in batches and bytes; when full, the OLDEST
  batch is dropped and returned so the caller counts (and acknowledges) it.
- A WASI module reads text: :func:`module_input` gives it the number and JSON records, and sets bytes
  records aside; :func:`module_output` puts them back in front of what the module wrote.

Pure: no I/O, no asyncio.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from edgerm.dataflow_records import (
    MAX_BATCH_BYTES,
    TEXT_BATCH_BYTES,
    Kind,
    Record,
    binary_kinds,
    count_lines,
    decode_batch,
    encode_batch,
    encode_binary,
    format_record,
    is_binary,
    is_clean_text,
    parse_record,
)
from edgerm.errors import MalformedMessage, MessageTooLarge

__all__ = ["Record", "format_record", "parse_record"]

#: The queue's byte bound: this many bytes of batches wait at most (on top of its bound in batches).
QUEUE_BYTES = 64 * 1024 * 1024


def replica_of(src: str, replicas: int) -> int:
    """The replica index that handles records of source ``src``."""
    # blake2s, not CRC-32: CRC is linear, so names differing only in their last digit ("x.0", "x.2") would
    # collide on the same replica; a cryptographic digest spreads them evenly.
    digest = hashlib.blake2s(src.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % replicas


@dataclass(frozen=True, slots=True)
class Batch:
    """A micro-batch: its framed payload (text lines ending in newlines, or binary), records, and acks owed."""

    payload: bytes
    records: int
    acks: tuple[object, ...] = ()

    @classmethod
    def of(cls, lines: Sequence[str], acks: tuple[object, ...] = ()) -> Batch:
        """A text batch of record lines (without newlines)."""
        return cls("".join(f"{line}\n" for line in lines).encode(), len(lines), acks)

    @classmethod
    def of_records(cls, records: Sequence[Record], acks: tuple[object, ...] = ()) -> Batch:
        return cls(encode_batch(records), len(records), acks)

    def __len__(self) -> int:
        return self.records

    @property
    def nbytes(self) -> int:
        return len(self.payload)

    @property
    def binary(self) -> bool:
        return is_binary(self.payload)

    @property
    def lines(self) -> tuple[str, ...]:
        """A text batch's lines (for tests and the console)."""
        return tuple(line for line in self.payload.decode("utf-8", "replace").split("\n") if line)

    def decoded(self) -> list[Record]:
        return decode_batch(self.payload).records


@dataclass(frozen=True, slots=True)
class Selected:
    """What :func:`select` kept of an incoming payload, and how many records it refused as malformed."""

    batch: Batch
    malformed: int


def select(payload: bytes, index: int, replicas: int, acks: tuple[object, ...] = ()) -> Selected:
    """The well-formed records of ``payload`` that belong to replica ``index`` of ``replicas``.

    A binary batch that does not parse, or one over the size limits, is refused whole (counted as one).
    """
    if is_binary(payload):
        try:
            if replicas == 1:  # the framing is checked, no payload copied
                return Selected(Batch(payload, len(binary_kinds(payload)), acks), 0)
            records = decode_batch(payload).records
        except (MalformedMessage, MessageTooLarge):
            return Selected(Batch(b"", 0, acks), 1)
        kept = [r for r in records if replica_of(r.src, replicas) == index]
        if len(kept) != len(records):
            return Selected(Batch(encode_binary(kept) if kept else b"", len(kept), acks), 0)
        return Selected(Batch(payload, len(records), acks), 0)
    if len(payload) > MAX_BATCH_BYTES:
        return Selected(Batch(b"", 0, acks), 1)
    if replicas == 1 and is_clean_text(payload):  # the hot path: nothing parsed in Python
        return Selected(Batch(payload, count_lines(payload), acks), 0)
    kept_lines: list[bytes] = []
    malformed = 0
    for raw in payload.split(b"\n"):
        line = raw.strip()
        if not line:
            continue
        try:
            record = parse_record(line.decode())
        except (ValueError, UnicodeDecodeError):
            malformed += 1
            continue
        if record.t != record.t or record.t in (float("inf"), float("-inf")):
            malformed += 1
            continue
        if replicas > 1 and replica_of(record.src, replicas) != index:
            continue
        kept_lines.append(line)
    body = b"".join(line + b"\n" for line in kept_lines)
    return Selected(Batch(body, len(kept_lines), acks), malformed)


# -- module input and output -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModuleInput:
    """What a WASI module reads (text lines), and the bytes records that bypass it."""

    stdin: bytes
    records: int
    bypass: tuple[Record, ...] = ()
    passthrough: bool = False  # only bytes records: the batch itself is the output


def passes_through(batch: Batch) -> bool:
    """Whether a batch holds bytes records only (it goes on as it is; checked on its headers alone)."""
    if not batch.binary:
        return False
    try:
        return all(kind is Kind.BYTES for kind in binary_kinds(batch.payload))
    except (MalformedMessage, MessageTooLarge):
        return False  # the module run refuses it, as before


def module_input(batch: Batch) -> ModuleInput:
    """A batch as a module reads it: text as it is; a binary batch's numbers and JSON as lines, bytes aside."""
    if not batch.binary:
        return ModuleInput(batch.payload, batch.records)
    if all(kind is Kind.BYTES for kind in binary_kinds(batch.payload)):
        return ModuleInput(b"", 0, passthrough=True)  # nothing for the module: the batch goes on as it is
    records = batch.decoded()
    text = [r for r in records if r.kind is not Kind.BYTES]
    raw = tuple(r for r in records if r.kind is Kind.BYTES)
    return ModuleInput("".join(f"{r.line()}\n" for r in text).encode(), len(text), raw)


def module_output(output: bytes, bypass: Sequence[Record] = ()) -> Batch:
    """A module's stdout (text lines, or the binary framing) as a batch, with the bypassed records first.

    Raises MalformedMessage or MessageTooLarge when the module wrote a binary batch that does not parse.
    """
    if not bypass:
        if is_binary(output):
            return Batch(output, len(decode_batch(output).records))
        if is_clean_text(output):  # what the builtins write: passed on as it is
            return Batch(output, count_lines(output))
        body = b"".join(line.strip() + b"\n" for line in output.split(b"\n") if line.strip())
        return Batch(body, count_lines(body))
    written = decode_batch(output).records if output.strip() else []
    records = [*bypass, *written]
    return Batch(encode_binary(records), len(records))


def split(batch: Batch, max_records: int, max_bytes: int = TEXT_BATCH_BYTES) -> list[Batch]:
    """Cut a batch to publish into batches of at most ``max_records`` records and ``max_bytes`` bytes.

    A text batch that fits is returned as it is (no copy); a single record over ``max_bytes`` still makes a
    batch of its own. Binary batches are cut by records, each part at most :data:`MAX_BATCH_BYTES`.
    """
    if batch.records <= max_records and batch.nbytes <= (MAX_BATCH_BYTES if batch.binary else max_bytes):
        return [batch]
    if batch.binary:
        out: list[Batch] = []
        chunk: list[Record] = []
        size = 0
        for r in batch.decoded():
            n = _record_size(r)
            if chunk and (len(chunk) >= max_records or size + n > MAX_BATCH_BYTES):
                out.append(Batch(encode_binary(chunk), len(chunk)))
                chunk, size = [], 0
            chunk.append(r)
            size += n
        if chunk:
            out.append(Batch(encode_binary(chunk), len(chunk)))
        return out
    return split_lines((line for line in batch.payload.split(b"\n") if line), max_records, max_bytes)


def split_lines(lines: Iterable[bytes], max_records: int, max_bytes: int = TEXT_BATCH_BYTES) -> list[Batch]:
    out: list[Batch] = []
    current: list[bytes] = []
    size = 0
    for line in lines:
        n = len(line) + 1
        if current and (len(current) >= max_records or size + n > max_bytes):
            out.append(Batch(b"".join(x + b"\n" for x in current), len(current)))
            current, size = [], 0
        current.append(line)
        size += n
    if current:
        out.append(Batch(b"".join(x + b"\n" for x in current), len(current)))
    return out


def _record_size(r: Record) -> int:
    v = r.value
    body = len(v) if isinstance(v, bytes | bytearray | memoryview) else 64
    return 23 + len(r.src) + len(r.content_type) + body


# -- the queue -----------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Item:
    parts: list[bytes]
    records: int
    nbytes: int
    binary: bool
    acks: list[object] = field(default_factory=list)

    def batch(self) -> Batch:
        payload = self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)
        return Batch(payload, self.records, tuple(self.acks))


class BatchQueue:
    """A FIFO of batches, bounded in batches and bytes; when full the oldest batch makes room and is returned.

    :meth:`append` adds a text batch to the newest queued one when it fits (a source's readings pile up into
    one batch while the worker is busy: adaptive batching).
    """

    def __init__(self, bound: int, max_bytes: int = QUEUE_BYTES) -> None:
        if bound < 1:
            raise ValueError("a queue holds at least one batch")
        self.bound = bound
        self.max_bytes = max_bytes
        self._items: deque[_Item] = deque()
        self._records = 0
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def records(self) -> int:
        """Records waiting in the queue."""
        return self._records

    @property
    def nbytes(self) -> int:
        return self._bytes

    @property
    def full(self) -> bool:
        """Whether one more batch would make the queue drop one."""
        return len(self._items) >= self.bound or self._bytes >= self.max_bytes

    def put(self, batch: Batch) -> list[Batch]:
        """Append ``batch``; return the batches dropped to make room (the oldest), if any."""
        self._items.append(_Item([batch.payload], batch.records, batch.nbytes, batch.binary, list(batch.acks)))
        self._records += batch.records
        self._bytes += batch.nbytes
        return self._trim()

    def append(self, batch: Batch, max_records: int, max_bytes: int = TEXT_BATCH_BYTES) -> list[Batch]:
        """Add a text batch to the newest queued batch when the result fits the bounds, else queue it."""
        last = self._items[-1] if self._items else None
        if (
            last is not None
            and not last.binary
            and not batch.binary
            and last.records + batch.records <= max_records
            and last.nbytes + batch.nbytes <= max_bytes
        ):
            last.parts.append(batch.payload)
            last.records += batch.records
            last.nbytes += batch.nbytes
            last.acks.extend(batch.acks)
            self._records += batch.records
            self._bytes += batch.nbytes
            return []
        return self.put(batch)

    def take(self, max_records: int, max_bytes: int = TEXT_BATCH_BYTES) -> Batch | None:
        """The oldest batch, merged with the text batches after it while the result fits the bounds."""
        if not self._items:
            return None
        first = self._items.popleft()
        if not first.binary:
            while self._items:
                nxt = self._items[0]
                if nxt.binary or first.records + nxt.records > max_records or first.nbytes + nxt.nbytes > max_bytes:
                    break
                self._items.popleft()
                first.parts.extend(nxt.parts)
                first.records += nxt.records
                first.nbytes += nxt.nbytes
                first.acks.extend(nxt.acks)
        self._records -= first.records
        self._bytes -= first.nbytes
        return first.batch()

    def drop_acked_by(self, stale: Callable[[object], bool]) -> int:
        """Remove the batches whose every ack is ``stale`` (the broker sends them again); records removed."""
        kept: deque[_Item] = deque()
        removed = 0
        for item in self._items:
            if item.acks and all(stale(a) for a in item.acks):
                removed += item.records
                self._records -= item.records
                self._bytes -= item.nbytes
            else:
                kept.append(item)
        self._items = kept
        return removed

    def clear(self) -> list[Batch]:
        """Empty the queue; return what it held."""
        out = [item.batch() for item in self._items]
        self._items.clear()
        self._records = 0
        self._bytes = 0
        return out

    def _trim(self) -> list[Batch]:
        dropped: list[Batch] = []
        while len(self._items) > self.bound or (self._bytes > self.max_bytes and len(self._items) > 1):
            item = self._items.popleft()
            self._records -= item.records
            self._bytes -= item.nbytes
            dropped.append(item.batch())
        return dropped
