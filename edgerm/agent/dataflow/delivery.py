"""At-least-once delivery in the host: ordered acknowledgements, duplicates at sinks, state checkpoints.

docs/dataflow.md ("Delivery") states the promise; these are its pure parts:

- :class:`AckTracker`: an input message (QoS 1) is acknowledged only once the batch it went into is done
  (published, delivered, or dropped and counted), and acknowledgements go out in the order the messages came
  (MQTT 3.1.1 §4.6). Tokens carry the connection they came on: after a reconnection the broker sends the
  unacknowledged messages again, so old tokens are forgotten, never acknowledged on the new connection.
- :class:`Deduper`: a sink keeps, per ``src``, the highest ``seq`` it delivered and that record's ``t``. A
  record at or below it with a ``t`` no newer is a duplicate (a redelivery) and is dropped; one with a newer
  ``t`` is a source that started again (its ``seq`` restarted) and is delivered. Records of one source travel
  one path in order, so this is exact for redeliveries and needs two numbers per source.
- :class:`Checkpoint`: what a replacement instance starts from: the module's ``/state`` files and the host's
  own state (a source's next ``seq``, a sink's dedup marks), at most :data:`MAX_STATE_BYTES` encoded.

Pure: no I/O, no asyncio.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from edgerm.dataflow_records import Record, binary_heads, decode_batch, encode_binary
from edgerm.errors import MalformedMessage, MessageTooLarge

_FIELDS = re.compile(rb"^[ \t]*(\S+)[ \t]+(\S+)[ \t]+(\S+)[ \t]", re.MULTILINE)

#: The largest checkpoint (encoded): module state plus host state.
MAX_STATE_BYTES = 64 * 1024
#: Sources a sink remembers for deduplication (the least recently seen are forgotten first).
DEDUP_SOURCES = 4096
CHECKPOINT_VERSION = 1


@dataclass(frozen=True, slots=True)
class Ack:
    """An input message still to acknowledge: the connection it came on and its MQTT message id."""

    generation: int
    mid: int


class AckTracker:
    """Which received messages may be acknowledged now, in the order they came."""

    def __init__(self) -> None:
        self.generation = 0
        self._pending: deque[Ack] = deque()
        self._done: set[Ack] = set()

    def __len__(self) -> int:
        """Messages received on this connection and not yet acknowledged."""
        return len(self._pending)

    def connected(self) -> None:
        """A new connection: the broker resends what was not acknowledged; forget the old tokens."""
        self.generation += 1
        self._pending.clear()
        self._done.clear()

    def received(self, mid: int) -> Ack:
        ack = Ack(self.generation, mid)
        self._pending.append(ack)
        return ack

    def done(self, tokens: Iterable[object]) -> list[int]:
        """Mark tokens done; the message ids to acknowledge now, in order."""
        for token in tokens:
            if isinstance(token, Ack) and token.generation == self.generation:
                self._done.add(token)
        out: list[int] = []
        while self._pending and self._pending[0] in self._done:
            ack = self._pending.popleft()
            self._done.discard(ack)
            out.append(ack.mid)
        return out


class Deduper:
    """Drops records a sink already delivered, by (``src``, ``seq``); see the module docstring."""

    def __init__(self, marks: Mapping[str, tuple[int, float]] | None = None, size: int = DEDUP_SOURCES) -> None:
        self._size = size
        self._marks: OrderedDict[str, tuple[int, float]] = OrderedDict(marks or {})
        self.duplicates = 0

    def keep(self, src: str, seq: int, t: float) -> bool:
        mark = self._marks.get(src)
        if mark is not None and seq <= mark[0] and t <= mark[1]:
            self.duplicates += 1
            return False
        self._marks[src] = (seq, t)
        self._marks.move_to_end(src)
        if len(self._marks) > self._size:
            self._marks.popitem(last=False)
        return True

    def filter_text(self, payload: bytes) -> tuple[bytes, int]:
        """The lines of a text batch that are not duplicates, and how many there are.

        The common case, a batch with no duplicate, is checked on fields a regex picks out (C) and passed
        on as it is; only a batch holding a duplicate is cut line by line.
        """
        seen: dict[str, tuple[int, float]] = {}
        marks = self._marks
        n = 0
        try:
            for src_b, seq_b, t_b in _FIELDS.findall(payload):
                src, seq, t = src_b.decode(), int(seq_b), float(t_b)
                mark = seen.get(src) or marks.get(src)
                if mark is not None and seq <= mark[0] and t <= mark[1]:
                    break
                seen[src] = (seq, t)
                n += 1
            else:
                for src, mark in seen.items():
                    marks[src] = mark
                    marks.move_to_end(src)
                while len(marks) > self._size:
                    marks.popitem(last=False)
                return payload, n
        except ValueError:
            pass
        return self._filter_lines(payload)

    def _filter_lines(self, payload: bytes) -> tuple[bytes, int]:
        kept: list[bytes] = []
        for line in payload.split(b"\n"):
            parts = line.split(None, 3)
            if len(parts) < 3:
                continue
            try:
                fresh = self.keep(parts[0].decode(), int(parts[1]), float(parts[2]))
            except ValueError:
                continue
            if fresh:
                kept.append(line)
        return b"".join(line + b"\n" for line in kept), len(kept)

    def filter_binary(self, payload: bytes) -> tuple[bytes, int]:
        """A binary batch without its duplicates: as it is when it has none (checked on the headers alone)."""
        seen: dict[str, tuple[int, float]] = {}
        marks = self._marks
        heads = binary_heads(payload)
        for h in heads:
            mark = seen.get(h.src) or marks.get(h.src)
            if mark is not None and h.seq <= mark[0] and h.t <= mark[1]:
                kept = self.filter_records(decode_batch(payload).records)
                return (encode_binary(kept) if kept else b""), len(kept)
            seen[h.src] = (h.seq, h.t)
        for src, mark in seen.items():
            marks[src] = mark
            marks.move_to_end(src)
        while len(marks) > self._size:
            marks.popitem(last=False)
        return payload, len(heads)

    def filter_records(self, records: Iterable[Record]) -> list[Record]:
        return [r for r in records if self.keep(r.src, r.seq, r.t)]

    def marks(self) -> dict[str, tuple[int, float]]:
        """The highest (seq, t) delivered per source (what a checkpoint keeps)."""
        return dict(self._marks)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """An instance's state after a batch: its module's ``/state`` files and the host's own state."""

    task: str
    run: str = ""  # EDGERM_DF_RUN: a checkpoint of another run is not restored
    files: Mapping[str, bytes] = field(default_factory=dict)
    seq: int | None = None  # a source's next seq
    marks: Mapping[str, tuple[int, float]] = field(default_factory=dict)  # a sink's dedup marks

    @property
    def empty(self) -> bool:
        return not self.files and self.seq is None and not self.marks

    def encode(self) -> bytes:
        """The retained message; raises MessageTooLarge over :data:`MAX_STATE_BYTES`."""
        body: dict[str, object] = {"v": CHECKPOINT_VERSION, "task": self.task, "run": self.run}
        if self.files:
            body["files"] = {name: base64.b64encode(data).decode() for name, data in sorted(self.files.items())}
        if self.seq is not None:
            body["seq"] = self.seq
        if self.marks:
            body["marks"] = {src: [seq, t] for src, (seq, t) in self.marks.items()}
        data = json.dumps(body, separators=(",", ":")).encode()
        if len(data) > MAX_STATE_BYTES:
            raise MessageTooLarge(f"a state checkpoint of {len(data)} bytes, over the {MAX_STATE_BYTES} limit")
        return data


def decode_checkpoint(data: bytes) -> Checkpoint:
    """A checkpoint from its retained message; raises MalformedMessage or MessageTooLarge."""
    if len(data) > MAX_STATE_BYTES:
        raise MessageTooLarge(f"a state checkpoint of {len(data)} bytes, over the {MAX_STATE_BYTES} limit")
    try:
        body = json.loads(data)
        if not isinstance(body, dict) or body.get("v") != CHECKPOINT_VERSION:
            raise MalformedMessage("not an edgerm state checkpoint (version 1)")
        files = {str(k): base64.b64decode(v, validate=True) for k, v in dict(body.get("files", {})).items()}
        for name in files:
            if "/" in name or name in ("", ".", ".."):
                raise MalformedMessage(f"checkpoint file name {name!r}: a plain name only")
        seq = body.get("seq")
        marks = {str(k): (int(v[0]), float(v[1])) for k, v in dict(body.get("marks", {})).items()}
        return Checkpoint(
            str(body.get("task", "")), str(body.get("run", "")), files, None if seq is None else int(seq), marks
        )
    except (ValueError, TypeError, KeyError, IndexError, binascii.Error) as e:
        raise MalformedMessage(f"a state checkpoint that does not parse: {e}") from None
