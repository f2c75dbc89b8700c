"""What both ends of the agent API over CoAP share: paths, tuning, payload formats, errors.

Role: the master's adapter (:mod:`edgerm.master.coap`) and the agent's
transport (:mod:`edgerm.agent.coap_transport`) must agree byte for byte on
the resources below, on the command batch format and on how a typed error
travels. Both import it from here, so the agreement is written once
(docs/protocol.md, "Agent API over CoAP").

Resources::

    POST /agent                    AgentCall -> AgentEvent (2.04 Changed)
    GET  /agents/{id}/commands     Observe=0: the agent's pending commands, one
                                   notification per change; without Observe:
                                   the same representation once (2.05)
    POST /agents/{id}/commands     payload: a cursor (8 bytes) -> confirms every
                                   command up to it (2.04, empty)
    GET  /modules/{sha256}         a WebAssembly module, block-wise (2.05)

Rules:
- Errors: a ``WireError`` travels as its own ``coap_code`` (edgerm/errors.py,
  the one mapping) with an ``edgerm.v1.Error`` payload; :func:`error_message`
  builds it and :func:`raise_for_response` turns it back into the same
  ``WireError`` class. A reply without such a payload is a
  :class:`~edgerm.errors.TransportError`.
- Commands: a representation is the RecordIO framing (as on HTTP streams) of
  ``AgentEvent{LAUNCH|KILL}`` records, oldest first, and its ETag is a
  :class:`Cursor`: the master's incarnation and the sequence number of the
  last record. Records are numbered consecutively, so record ``i`` of ``n``
  has number ``cursor.seq - n + 1 + i``.
- Loggers ``coap`` and ``coap-server`` (aiocoap's) are set to WARNING unless
  the application configured them: aiocoap logs every retransmission and
  renderable error at INFO.
- Garbage datagrams are expected on an open UDP port: :func:`harden_aiocoap`
  makes a datagram whose text option is not UTF-8 an unparsable message
  (aiocoap 0.4.17 lets the ``UnicodeDecodeError`` escape into asyncio's
  exception handler, which logs a traceback at ERROR; upstream issue
  chrysn/aiocoap#176), and logs "unparsable message" and "type does not fit"
  at DEBUG instead of WARNING, so a peer cannot flood the log.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import aiocoap
import aiocoap.error
from aiocoap.numbers.constants import TransportTuning

from edgerm import messages as m
from edgerm import wire
from edgerm.errors import MalformedMessage, TransportError, UnknownCall, WireError

DEFAULT_COAP_PORT = 5683
AGENT_PATH: tuple[str, ...] = ("agent",)
AGENTS_PREFIX = "agents"
COMMANDS_SEGMENT = "commands"
MODULES_PREFIX = "modules"
#: Content-Format 42, application/octet-stream: modules and cursors.
OCTET_STREAM = 42

_CURSOR = struct.Struct(">II")  # incarnation, sequence number
CURSOR_SIZE = _CURSOR.size


def commands_path(agent_id: str) -> tuple[str, ...]:
    return (AGENTS_PREFIX, agent_id, COMMANDS_SEGMENT)


def module_path(sha256: str) -> tuple[str, ...]:
    return (MODULES_PREFIX, sha256)


class Tuning(TransportTuning):  # type: ignore[misc]  # aiocoap ships no type hints
    """CON transmission for edgerm's own messages, with explicit retransmission.

    aiocoap's defaults (ACK_TIMEOUT 2 s, MAX_RETRANSMIT 4) take ~93 s to give
    up on a silent peer. Here: first retransmission after 1-1.5 s, three
    retransmissions, given up after at most ~22 s; callers still bound each
    exchange with ``asyncio.wait_for``.
    """

    reliability = True
    ACK_TIMEOUT = 1.0
    MAX_RETRANSMIT = 3


TUNING = Tuning()


# -- cursors and command batches ------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class Cursor:
    """A position in one master incarnation's command numbering (the ETag)."""

    incarnation: int
    seq: int

    def encode(self) -> bytes:
        return _CURSOR.pack(self.incarnation, self.seq)

    @classmethod
    def decode(cls, data: bytes | None) -> Cursor:
        if data is None or len(data) != CURSOR_SIZE:
            raise MalformedMessage(f"a command cursor is {CURSOR_SIZE} bytes, got {0 if data is None else len(data)}")
        incarnation, seq = _CURSOR.unpack(data)
        return cls(incarnation, seq)


def encode_commands(commands: Iterable[m.AgentEvent]) -> bytes:
    """A command representation: RecordIO-framed ``AgentEvent`` records."""
    return b"".join(wire.frame(wire.encode_agent_event(c)) for c in commands)


def decode_commands(payload: bytes) -> list[m.AgentEvent]:
    """The records of a command representation; ``MalformedMessage`` if cut or broken."""
    records = wire.RecordReader().feed(payload)
    if sum(len(b"%d\n" % len(r)) + len(r) for r in records) != len(payload):
        raise MalformedMessage("command representation ends inside a record")
    try:
        return [wire.decode_agent_event(r) for r in records]
    except UnknownCall as e:
        raise MalformedMessage(str(e)) from None


def numbered(cursor: Cursor, commands: Sequence[m.AgentEvent]) -> list[tuple[Cursor, m.AgentEvent]]:
    """Each command of a representation with its own cursor (see the module rules)."""
    first = cursor.seq - len(commands) + 1
    return [(Cursor(cursor.incarnation, first + i), c) for i, c in enumerate(commands)]


# -- errors -------------------------------------------------------------------------------


def error_message(error: WireError, **options: Any) -> aiocoap.Message:
    """The typed reply for ``error``: its ``coap_code`` and an ``edgerm.v1.Error`` payload."""
    return aiocoap.Message(code=error.coap_code, payload=wire.encode_error(error), **options)


def raise_for_response(response: aiocoap.Message, where: str) -> None:
    """Return if ``response`` is a success; raise its typed error, else ``TransportError``."""
    code = response.code
    if code.is_successful():
        return
    if response.payload:
        try:
            error = wire.decode_error(response.payload)
        except MalformedMessage:
            error = None
        if error is not None and (error.code != "CODE_UNSPECIFIED" or error.message):
            wire.raise_error(error)
    text = response.payload[:200].decode("utf-8", "replace").strip()
    raise TransportError(f"{where}: CoAP {code} {text}".rstrip())


def quiet_aiocoap_logs() -> None:
    """aiocoap's loggers to WARNING, unless the application set their level itself."""
    for name in ("coap", "coap-server"):
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)


# -- garbage on the socket ------------------------------------------------------------------

#: aiocoap's per-datagram warnings about input a peer chose to send (see the module rules).
_PEER_NOISE = ("Ignoring unparsable message", "Received a message with code")


class _PeerNoiseToDebug(logging.Filter):
    """Log aiocoap's warnings about a peer's garbage at DEBUG (one per datagram otherwise)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno == logging.WARNING and isinstance(record.msg, str) and record.msg.startswith(_PEER_NOISE):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


_NOISE_FILTER = _PeerNoiseToDebug()


def harden_aiocoap() -> None:
    """Make garbage datagrams harmless to the log (idempotent; see the module rules)."""
    decode = aiocoap.Message.__dict__["decode"]
    if not getattr(decode, "_edgerm_hardened", False):
        original = decode.__func__

        def decode_or_unparsable(cls: Any, rawdata: bytes, remote: Any = None) -> Any:
            try:
                return original(cls, rawdata, remote)
            except UnicodeDecodeError as e:  # a Uri-Path, Uri-Query, ... that is not UTF-8
                raise aiocoap.error.UnparsableMessage(f"option is not UTF-8: {e.reason}") from None

        decode_or_unparsable._edgerm_hardened = True  # type: ignore[attr-defined]
        aiocoap.Message.decode = classmethod(decode_or_unparsable)
    for name in ("coap-server", "coap"):
        logger = logging.getLogger(name)
        if _NOISE_FILTER not in logger.filters:
            logger.addFilter(_NOISE_FILTER)
