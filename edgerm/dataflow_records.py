"""The dataflow record and its micro-batch framings: the one codec every part of the data plane uses.

A :class:`Record` is ``src`` (the source instance), ``seq`` (its sequence number), ``t`` (reading time, unix
seconds) and a payload: a number, a JSON value, or bytes with a content type. A micro-batch travels as ONE
MQTT message in one of two framings, told apart by its first byte (docs/dataflow.md, "Records and micro-batches"):

- **text** (the first byte is not ``0x00``): UTF-8, one record per line, ``<src> <seq> <t> <value>`` where
  ``<value>`` is the rest of the line: a number (``21.5``) or compact JSON (``{"temperature":21.5}``). This is
  today's float format, unchanged, and the WASI operators' stdin/stdout ABI. Numbers and JSON only.
- **binary** (``MAGIC`` = ``00 45 44 42`` "\\0EDB", then version ``01``, then a big-endian u32 record count),
  then per record::

      kind u8 (0 number, 1 JSON, 2 bytes) | src_len u8 | src | seq u64 | t f64 | type_len u8 | content type
      | payload_len u32 | payload (number: f64; JSON: UTF-8; bytes: as is)

  23 bytes plus ``src`` and the content type per record; any payload. :func:`encode_batch` picks text when
  every record is a number or JSON, binary otherwise.

Limits: a payload of at most :data:`MAX_RECORD_BYTES`, a batch of at most :data:`MAX_BATCH_BYTES`; over either,
:class:`~edgerm.errors.MessageTooLarge` names which. A framing that does not parse raises
:class:`~edgerm.errors.MalformedMessage`; a text line that is not a record is counted (``Decoded.malformed``),
not fatal: one bad line does not cost the batch.

Pure: no I/O; imported by the agent's operator host, the dataflow framework and the Python operator SDK.
"""

from __future__ import annotations

import enum
import json
import math
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from edgerm.errors import MalformedMessage, MessageTooLarge

MIB = 1024 * 1024
#: The largest payload of one record (a camera frame, a file's content).
MAX_RECORD_BYTES = 8 * MIB
#: The largest micro-batch, in either framing (one MQTT message).
MAX_BATCH_BYTES = 16 * MIB
#: Text batches are formed up to this size (a WASI module's stdin; MQTT messages stay small).
TEXT_BATCH_BYTES = 64 * 1024
#: The first bytes of a binary batch; a text batch never starts with 0x00.
MAGIC = b"\x00EDB"
VERSION = 1
MAX_SRC = 255
MAX_CONTENT_TYPE = 255

JSON_TYPE = "application/json"
OCTETS = "application/octet-stream"

_HEAD = struct.Struct(">4sBI")  # magic, version, count
_FIXED = struct.Struct(">BB")  # kind, src_len
_MID = struct.Struct(">QdB")  # seq, t, type_len
_LEN = struct.Struct(">I")
_F64 = struct.Struct(">d")

# One well-formed text line: src, seq, t, then a value holding no newline. A batch whose every line matches
# needs no per-line work to be passed on (the host's hot path).
_TEXT_BATCH = re.compile(rb"(?:[^\s\x00]+ [0-9]+ [-+0-9.eEinfaINFA]+ [^\n]+\n)*")


class Kind(enum.IntEnum):
    """What a record's payload is (its binary framing tag)."""

    NUMBER = 0
    JSON = 1
    BYTES = 2


Json = None | bool | int | float | str | list["Json"] | dict[str, "Json"]


@dataclass(frozen=True, slots=True)
class Record:
    """One record: source id, per-source sequence number, reading time (unix), payload.

    ``value`` is a ``float`` (a number), any other JSON value (``dict``, ``list``, ``str``, ``bool``, ``None``;
    an ``int`` is a number), or ``bytes``; ``content_type`` describes bytes (``image/jpeg``), and is empty for
    numbers and JSON.
    """

    src: str
    seq: int
    t: float
    value: object
    content_type: str = ""

    @property
    def kind(self) -> Kind:
        v = self.value
        if isinstance(v, bytes | bytearray | memoryview):
            return Kind.BYTES
        if isinstance(v, int | float) and not isinstance(v, bool):
            return Kind.NUMBER
        return Kind.JSON

    @property
    def number(self) -> float:
        """The payload as a number; raises ValueError when it is not one."""
        if self.kind is not Kind.NUMBER:
            raise ValueError(f"record {self.src} {self.seq} holds {self.kind.name.lower()}, not a number")
        return float(self.value)  # type: ignore[arg-type]

    def line(self) -> str:
        """The record as one text line (no newline); raises ValueError for bytes."""
        return format_record(self.src, self.seq, self.t, self.value)


@dataclass(frozen=True, slots=True)
class Decoded:
    """The records of a batch, and how many text lines were not records."""

    records: list[Record]
    malformed: int = 0


# -- text lines ------------------------------------------------------------------------------------


def format_value(value: object) -> str:
    """A payload as the text line writes it: a number to 12 significant digits, else compact JSON."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:.12g}"
    if isinstance(value, bytes | bytearray | memoryview):
        raise ValueError("bytes have no text form; use the binary framing")
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def format_record(src: str, seq: int, t: float, value: object) -> str:
    """One record line (no newline); ``t`` to the microsecond."""
    return f"{src} {seq} {t:.6f} {format_value(value)}"


def parse_value(text: str) -> object:
    """A text line's value: a float when it is a number, else the JSON value; ValueError otherwise."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(f"the value is neither a number nor JSON: {e.msg}") from None


def parse_record(line: str) -> Record:
    """Parse one record line; raises ValueError when it is not ``<src> <seq> <t> <value>``."""
    parts = line.strip().split(None, 3)
    if len(parts) != 4:
        raise ValueError(f"a record has 4 fields, this line has {len(parts)}")
    src, seq, t, value = parts
    number = int(seq)
    if number < 0:
        raise ValueError("seq must be >= 0")
    return Record(src, number, float(t), parse_value(value.strip()))


def is_binary(payload: bytes) -> bool:
    """Whether a batch uses the binary framing."""
    return payload[:1] == b"\x00"


def is_clean_text(payload: bytes) -> bool:
    """Whether a text batch is only well-formed record lines, each ending in a newline (checked in C, by a regex)."""
    return _TEXT_BATCH.fullmatch(payload) is not None


def count_lines(payload: bytes) -> int:
    """Records in a text batch (non-empty lines), without parsing them."""
    n = payload.count(b"\n")
    if payload and not payload.endswith(b"\n"):
        n += 1
    return n - payload.count(b"\n\n")


# -- batches ---------------------------------------------------------------------------------------


def encode_batch(records: Iterable[Record]) -> bytes:
    """One micro-batch: text when every record is a number or JSON, binary otherwise.

    Raises MessageTooLarge for a payload over :data:`MAX_RECORD_BYTES` or a batch over :data:`MAX_BATCH_BYTES`,
    ValueError for a ``src`` with whitespace or a content type on a non-bytes record.
    """
    items = list(records)
    if all(r.kind is not Kind.BYTES for r in items):
        text = "".join(f"{r.line()}\n" for r in items).encode()
        _check_batch(len(text))
        return text
    return encode_binary(items)


def encode_binary(records: Sequence[Record]) -> bytes:
    """One micro-batch in the binary framing, whatever its records hold."""
    parts = [_HEAD.pack(MAGIC, VERSION, len(records))]
    size = _HEAD.size
    for r in records:
        src = r.src.encode()
        if not 0 < len(src) <= MAX_SRC or any(c in r.src for c in " \t\r\n"):
            raise ValueError(f"src {r.src!r}: 1 to {MAX_SRC} bytes, no whitespace")
        kind = r.kind
        if kind is Kind.BYTES:
            payload = bytes(r.value)  # type: ignore[call-overload]
        elif kind is Kind.NUMBER:
            payload = _F64.pack(float(r.value))  # type: ignore[arg-type]
        else:
            payload = json.dumps(r.value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
        ctype = r.content_type.encode()
        if len(ctype) > MAX_CONTENT_TYPE:
            raise ValueError(f"content type {r.content_type[:40]!r}...: at most {MAX_CONTENT_TYPE} bytes")
        _check_record(r.src, r.seq, len(payload))
        parts += [
            _FIXED.pack(kind, len(src)),
            src,
            _MID.pack(r.seq, r.t, len(ctype)),
            ctype,
            _LEN.pack(len(payload)),
            payload,
        ]
        size += 23 + len(src) + len(ctype) + len(payload)
        _check_batch(size)
    return b"".join(parts)


def decode_batch(payload: bytes) -> Decoded:
    """The records of a batch in either framing.

    Raises MessageTooLarge (over a limit) or MalformedMessage (a binary framing that does not parse); text lines
    that are not records are counted in ``malformed``.
    """
    _check_batch(len(payload))
    if is_binary(payload):
        return Decoded(_decode_binary(payload))
    records: list[Record] = []
    bad = 0
    for line in payload.decode("utf-8", "replace").split("\n"):
        if not line.strip():
            continue
        try:
            r = parse_record(line)
        except ValueError:
            bad += 1
            continue
        if not math.isfinite(r.t):
            bad += 1
            continue
        records.append(r)
    return Decoded(records, bad)


@dataclass(frozen=True, slots=True)
class Head:
    """A binary record's header: everything but its payload."""

    kind: Kind
    src: str
    seq: int
    t: float


def binary_heads(payload: bytes) -> list[Head]:
    """The headers of a binary batch's records, checking its framing without copying any payload.

    Raises MalformedMessage or MessageTooLarge as :func:`decode_batch` does.
    """
    _check_batch(len(payload))
    view = memoryview(payload)
    try:
        magic, version, count = _HEAD.unpack_from(view, 0)
        if magic != MAGIC or version != VERSION:
            raise MalformedMessage(f"not an edgerm binary batch (magic {bytes(magic)!r}, version {version})")
        pos = _HEAD.size
        heads: list[Head] = []
        for _ in range(count):
            kind, src_len = _FIXED.unpack_from(view, pos)
            src = bytes(view[pos + 2 : pos + 2 + src_len]).decode()
            pos += 2 + src_len
            seq, t, type_len = _MID.unpack_from(view, pos)
            pos += _MID.size + type_len
            (length,) = _LEN.unpack_from(view, pos)
            pos += 4 + length
            _check_record(src, seq, length)
            heads.append(Head(Kind(kind), src, seq, t))
    except (struct.error, ValueError) as e:
        raise MalformedMessage(f"a binary batch that does not parse: {e}") from None
    if pos != len(payload):
        raise MalformedMessage(f"{len(payload) - pos} bytes after (or missing from) the last of {count} records")
    return heads


def binary_kinds(payload: bytes) -> list[Kind]:
    """The kinds of a binary batch's records (see :func:`binary_heads`)."""
    return [h.kind for h in binary_heads(payload)]


def _decode_binary(data: bytes) -> list[Record]:
    view = memoryview(data)
    try:
        magic, version, count = _HEAD.unpack_from(view, 0)
        if magic != MAGIC or version != VERSION:
            raise MalformedMessage(f"not an edgerm binary batch (magic {bytes(magic)!r}, version {version})")
        pos = _HEAD.size
        out: list[Record] = []
        for _ in range(count):
            kind, src_len = _FIXED.unpack_from(view, pos)
            pos += 2
            src = bytes(view[pos : pos + src_len]).decode()
            pos += src_len
            seq, t, type_len = _MID.unpack_from(view, pos)
            pos += _MID.size
            ctype = bytes(view[pos : pos + type_len]).decode()
            pos += type_len
            (length,) = _LEN.unpack_from(view, pos)
            pos += 4
            _check_record(src, seq, length)
            if pos + length > len(data):
                raise MalformedMessage(f"record {src} {seq}: its payload runs past the end of the batch")
            body = bytes(view[pos : pos + length])
            pos += length
            value: object
            if kind == Kind.NUMBER:
                (value,) = _F64.unpack(body)
            elif kind == Kind.JSON:
                value = json.loads(body)
            elif kind == Kind.BYTES:
                value = body
            else:
                raise MalformedMessage(f"record {src} {seq}: unknown kind {kind}")
            out.append(Record(src, seq, t, value, ctype))
    except (struct.error, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MalformedMessage(f"a binary batch that does not parse: {e}") from None
    if pos != len(data):
        raise MalformedMessage(f"{len(data) - pos} bytes after the last of {count} records")
    return out


def _check_record(src: str, seq: int, size: int) -> None:
    if size > MAX_RECORD_BYTES:
        raise MessageTooLarge(f"record {src} {seq}: a payload of {size} bytes, over the {MAX_RECORD_BYTES} limit")


def _check_batch(size: int) -> None:
    if size > MAX_BATCH_BYTES:
        raise MessageTooLarge(f"a micro-batch of {size} bytes, over the {MAX_BATCH_BYTES} limit")
