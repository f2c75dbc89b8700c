"""The agents' HTTP fast path: ``POST /api/v1/agent`` served by the connection's own protocol.

Every HTTP agent holds two connections for its whole life (its heartbeats and its command
stream). On aiohttp each costs about 10 KiB while idle (a request handler, its task and the
frame locals of the last request, a parser) and a command stream adds a handler task waiting
for commands. Here a connection is one small :class:`_Connection`: no task waits on it, and a
command stream is written from a callback when its commands arrive (an idle one costs no CPU).

Rules:
- A connection starts here. As long as each request is ``POST /api/v1/agent`` over HTTP/1.1
  with a ``Content-Length`` and no ``Content-Encoding`` (what edgerm's agents send), it stays
  here: the head is parsed by ``httptools`` (llhttp, strict), the body read to its length, the
  call checked by :class:`~edgerm.master.agent_calls.AgentCalls` as on aiohttp. Anything else
  (another route, a chunked or encoded body, HTTP/1.0, an ``Expect`` or ``Upgrade``, a query,
  a repeated ``Authorization`` or ``Content-Type``, a head llhttp refuses or one over
  ``MAX_HEAD`` bytes) hands the connection, from that request's first byte on, to aiohttp,
  which serves it for the rest of its life: every other route, and every odd case, keeps
  aiohttp's behaviour.
- Replies: ``edgerm.v1`` messages with their ``Content-Length``; a ``WireError`` is its HTTP
  status with an ``edgerm.v1.Error`` body (401 adds ``WWW-Authenticate``); an unexpected
  exception is logged with its traceback and answered 500; the connection keeps serving.
  Refused before its body is read (no credential, a role not allowed, over the rate), a
  request is answered and its body skipped as it arrives, never buffered; one whose body is
  over ``max_body`` is answered and its connection closed.
- A heartbeat is answered inside the callback that read it; REGISTER and UPDATE wait for the
  registry in a task of their own, and what the agent sends meanwhile waits (bounded).
- Flow control: while the transport's writes are paused (the peer does not read its replies),
  the connection reads and serves nothing more, and resumes with the transport.
- A SUBSCRIBE answers a chunked stream: each wake-up of the agent's
  :class:`~edgerm.master.service.CommandStream` writes what is queued, a chunk of RecordIO
  frames per read of the outbox, until it is empty or the transport pauses (the rest waits in
  the outbox). The stream ends with the last chunk when the core ends it (and the connection
  serves on), or with the connection when its principal is revoked or the connection drops
  (the stream is closed at once, as ``handler_cancellation`` does on aiohttp).
- A connection idle for ``keepalive`` seconds (no request, no stream; a partial request counts
  as idle) is closed within a quarter more (:mod:`edgerm.master.idle_wheel`), as aiohttp
  closes one.
- :meth:`AgentFastPath.close` (the site's ``stop``) closes every connection still here, and
  any accepted after.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from email.utils import formatdate
from http import HTTPStatus

import httptools

from edgerm import messages as m
from edgerm import wire
from edgerm.auth.principal import Principal
from edgerm.errors import Forbidden, Unauthenticated, WireError
from edgerm.master.agent_calls import AGENT_PATH, AgentCalls, check_content_type, check_length
from edgerm.master.idle_wheel import Idles, IdleWheel
from edgerm.master.service import CommandStream

log = logging.getLogger("edgerm.master.http")

KEEPALIVE = 75.0  # seconds an idle connection is kept (aiohttp's default)
MAX_HEAD = 16 * 1024  # bytes of a request's line and headers
MAX_WAITING = 64 * 1024  # bytes an agent may send while its stream is open

_PREFIX = b"POST " + AGENT_PATH.encode() + b" "
_PATH = AGENT_PATH.encode()
_TYPE = b"content-type"
_LENGTH = b"content-length"
_AUTH = b"authorization"
_NOT_OURS = frozenset({b"transfer-encoding", b"content-encoding", b"expect", b"upgrade"})
_STREAM_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nTransfer-Encoding: chunked\r\n"
    b"Server: edgerm\r\nDate: %s\r\n%s\r\n"
)
_LAST_CHUNK = b"0\r\n\r\n"


class _Date:
    """The ``Date`` header's value, formatted once a second."""

    __slots__ = ("_second", "_value")

    def __init__(self) -> None:
        self._second = -1
        self._value = b""

    def __call__(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._value = formatdate(now, usegmt=True).encode()
        return self._value


_date = _Date()


class _Head:
    """The parts of a request head the agent API reads (httptools calls it back)."""

    __slots__ = ("auth", "ctype", "done", "length", "other", "url")

    def __init__(self) -> None:
        self.url = b""
        self.ctype: bytes | None = None
        self.auth: bytes | None = None
        self.length: int | None = None
        self.other = False  # a header this path leaves to aiohttp
        self.done = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == _LENGTH:
            self.length = int(value)  # llhttp checked it: digits, and one Content-Length
        elif name == _TYPE:
            self.other |= self.ctype is not None  # repeated: aiohttp decides which one counts
            self.ctype = value
        elif name == _AUTH:
            self.other |= self.auth is not None
            self.auth = value
        elif name in _NOT_OURS:
            self.other = True

    def on_headers_complete(self) -> None:
        self.done = True


_REPLY = (
    b"HTTP/1.1 %d %s\r\nContent-Type: application/x-protobuf\r\nContent-Length: %d\r\n"
    b"Server: edgerm\r\nDate: %s\r\n%s%s\r\n%s"
)


def _reply(status: int, body: bytes, *, close: bool = False, extra: bytes = b"") -> bytes:
    phrase = HTTPStatus(status).phrase.encode()
    connection = b"Connection: close\r\n" if close else b""
    return _REPLY % (status, phrase, len(body), _date(), extra, connection, body)


class AgentFastPath:
    """Serves the agent API on its connections; hands every other request to aiohttp."""

    def __init__(
        self, calls: AgentCalls, *, keepalive: float = KEEPALIVE, access_log: logging.Logger | None = None
    ) -> None:
        self.calls = calls
        self.idle = IdleWheel(keepalive)
        self.access_log = access_log
        self.connections: set[_Connection] = set()
        self.closed = False
        self.handed_over = 0  # connections given to aiohttp, for the tests and the curious

    def factory(self, fallback: Callable[[], asyncio.Protocol]) -> Callable[[], asyncio.Protocol]:
        """The protocol factory for a listening socket; ``fallback`` makes aiohttp's request handler."""
        return lambda: _Connection(self, fallback)

    @property
    def keepalive(self) -> float:
        return self.idle.timeout

    @keepalive.setter
    def keepalive(self, seconds: float) -> None:
        self.idle.timeout = seconds

    def close(self) -> None:
        self.closed = True
        for connection in list(self.connections):
            connection.close()
        self.idle.close()

    def error(self, error: WireError, *, close: bool = False) -> bytes:
        """The reply for ``error`` (counted, as on aiohttp)."""
        self.calls.handlers.failed(error)
        extra = b'WWW-Authenticate: Bearer realm="edgerm"\r\n' if isinstance(error, Unauthenticated) else b""
        return _reply(error.http_status, wire.encode_error(error), close=close, extra=extra)


class _Connection(asyncio.Protocol):
    """One agent connection: requests in order, one at a time, and at most one command stream."""

    __slots__ = (
        "_buffer",
        "_busy",
        "_fallback",
        "_handle",
        "_head",
        "_inner",
        "_last",
        "_path",
        "_paused",
        "_principal",
        "_skip",
        "_stream",
        "_task",
        "_transport",
        "_waking",
        "idle_slot",
    )

    def __init__(self, path: AgentFastPath, fallback: Callable[[], asyncio.Protocol]) -> None:
        self._path = path
        self._fallback = fallback
        self._transport: asyncio.Transport | None = None
        self._inner: asyncio.Protocol | None = None  # aiohttp's handler, once handed over
        self._buffer: bytearray | None = None
        self._head: tuple[_Head, int, bool, Principal | None] | None = None  # parsed, waiting for its body
        self._busy = False  # a call is being served
        self._skip = 0  # bytes still to drop: the body of a refused request
        self._task: asyncio.Task[None] | None = None
        self._stream: CommandStream | None = None
        self._handle: int | None = None
        self._principal: Principal | None = None
        self._last = False  # the connection closes after its stream
        self._paused = False
        self._waking = False
        self.idle_slot: set[Idles] | None = None  # the idle wheel's (edgerm.master.idle_wheel)

    # -- asyncio's protocol ------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:  # as aiohttp does: small writes go out at once, and dead peers are found
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            except OSError:
                pass
        if self._path.closed:  # accepted while the master stops
            transport.close()
            return
        self._path.connections.add(self)
        self._touch()

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)
            return
        buffer = self._buffer
        if buffer is None:
            buffer = self._buffer = bytearray(data)
        else:
            buffer += data
        self._touch()
        if self._stream is not None:
            if len(buffer) > MAX_WAITING:
                self._drop("sent too much while its command stream is open")
            return
        if self._busy:
            if len(buffer) > MAX_HEAD + self._path.calls.max_body:
                self._drop("sent too much while a call was being served")
            return
        self._serve_next()

    def eof_received(self) -> bool | None:
        if self._inner is not None:
            return self._inner.eof_received()
        return None  # the transport closes (what aiohttp does)

    def pause_writing(self) -> None:
        self._paused = True
        if self._inner is not None:
            self._inner.pause_writing()
        elif self._transport is not None:
            self._transport.pause_reading()  # no more requests until the agent reads its replies

    def resume_writing(self) -> None:
        self._paused = False
        if self._inner is not None:
            self._inner.resume_writing()
            return
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()
        if self._stream is not None:
            self._wake()
        else:
            self._serve_next()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._inner is not None:
            self._inner.connection_lost(exc)
            return
        self._path.connections.discard(self)
        self._path.idle.forget(self)
        self._buffer = None
        if self._stream is not None:
            log.debug("agent %s command stream dropped", self._stream.agent_id)
            self._end_stream(last_chunk=False)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    # -- requests ----------------------------------------------------------------------------

    def _serve_next(self) -> None:
        """Serve the requests the buffer holds, until one must wait (its body, a registry write, a stream,
        the agent reading its replies)."""
        while (buffer := self._buffer) and not (self._busy or self._paused or self._stream or self._inner):
            transport = self._transport
            if transport is None or transport.is_closing():
                return
            if self._skip:  # the body of a refused request
                dropped = min(self._skip, len(buffer))
                del buffer[:dropped]
                self._skip -= dropped
                continue
            if self._head is None and not self._read_head(buffer):
                return
            if self._head is None:
                continue  # refused: its body is skipped
            parsed, start, keep_alive, principal = self._head
            length = parsed.length or 0
            if len(buffer) < start + length:
                return  # the rest of the body is on its way
            self._head = None
            body = bytes(buffer[start : start + length])
            del buffer[: start + length]
            self._call(parsed.ctype or b"", body, principal, keep_alive)
        if self._buffer is not None and not self._buffer:
            self._buffer = None

    def _read_head(self, buffer: bytearray) -> bool:
        """Read the next request's head into ``_head``, checked; False: wait for more, or it went elsewhere."""
        if not buffer.startswith(_PREFIX[: len(buffer)]):
            self._hand_over()
            return False
        end = buffer.find(b"\r\n\r\n", 0, MAX_HEAD)
        if end < 0:
            if len(buffer) >= MAX_HEAD:
                self._hand_over()  # aiohttp answers it with its own 400
            return False
        head = _Head()
        parser = httptools.HttpRequestParser(head)
        try:
            parser.feed_data(bytes(buffer[: end + 4]))
        except httptools.HttpParserError:
            head.done = False  # aiohttp answers it (outside this except: no exception chained to its report)
        if not head.done or head.other or head.url != _PATH or parser.get_http_version() != "1.1":
            self._hand_over()
            return False
        keep_alive = parser.should_keep_alive()
        calls = self._path.calls
        principal: Principal | None = None
        try:  # in the middleware's order: who, whether that role may, its rate; then the body's size
            principal = calls.authenticate((head.auth or b"").decode("latin-1"))
            calls.admit(principal)
            check_length(head.length, calls.max_body)
        except WireError as e:
            self._refuse(e, principal, end + 4, head.length or 0, keep_alive)
            return True
        self._head = head, end + 4, keep_alive, principal
        return True

    def _call(self, ctype: bytes, body: bytes, principal: Principal | None, keep_alive: bool) -> None:
        calls = self._path.calls
        try:
            check_content_type(ctype.decode("latin-1"))
            call = calls.decode(body, principal)
            if type(call) is m.AgentHeartbeat:
                self._send(200, wire.encode_agent_event(calls.handlers.heartbeat(call)), keep_alive)
            elif type(call) is m.SubscribeAgent:
                self._open_stream(call, principal, keep_alive)
            else:
                self._busy = True
                self._task = asyncio.get_running_loop().create_task(self._serve_call(call, principal, keep_alive))
        except WireError as e:
            self._failed(e, principal, keep_alive)
        except Exception:
            self._internal_error(keep_alive)

    async def _serve_call(self, call: m.AgentCall, principal: Principal | None, keep_alive: bool) -> None:
        try:
            event = await self._path.calls.handlers.agent_call(call)
            self._send(200, wire.encode_agent_event(event), keep_alive)
        except WireError as e:
            self._failed(e, principal, keep_alive)
        except Exception:
            self._internal_error(keep_alive)
        finally:
            self._busy = False
            self._task = None
        self._serve_next()

    def _failed(self, error: WireError, principal: Principal | None, keep_alive: bool) -> None:
        if isinstance(error, Forbidden):  # an audit trail of refused calls, with who tried
            log.info("refused POST %s for %s: %s", AGENT_PATH, principal, error)
        self._write(self._path.error(error, close=not keep_alive), error.http_status, keep_alive)

    def _internal_error(self, keep_alive: bool) -> None:
        log.exception("internal error on POST %s", AGENT_PATH)
        error = WireError("internal error; see the master's log")
        self._path.calls.handlers.failed(error)
        self._write(_reply(500, wire.encode_error(error), close=not keep_alive), 500, keep_alive)

    def _refuse(self, error: WireError, principal: Principal | None, start: int, length: int, keep_alive: bool) -> None:
        """Answer ``error`` before the body is read: the body is skipped as it comes, never buffered (one over
        ``max_body`` is not waited for: the connection closes)."""
        buffer = self._buffer
        assert buffer is not None
        if length > self._path.calls.max_body:
            keep_alive = False
        if keep_alive:
            del buffer[:start]
            self._skip = length
        else:
            self._buffer = None
        self._failed(error, principal, keep_alive)

    def _send(self, status: int, body: bytes, keep_alive: bool) -> None:
        self._write(_reply(status, body, close=not keep_alive), status, keep_alive)

    def _write(self, data: bytes, status: int, keep_alive: bool) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return  # the agent is gone; what it asked was done, and it asks again
        transport.write(data)
        if self._path.access_log is not None:
            self._path.access_log.info('%s "POST %s HTTP/1.1" %d %d', self._peer(), AGENT_PATH, status, len(data))
        if not keep_alive:
            transport.close()
        else:
            self._touch()

    # -- the command stream ------------------------------------------------------------------

    def _open_stream(self, call: m.SubscribeAgent, principal: Principal | None, keep_alive: bool) -> None:
        stream, handle = self._path.calls.open_stream(call, principal, self._revoked)
        transport = self._transport
        assert transport is not None
        self._stream, self._handle, self._principal = stream, handle, principal
        self._path.idle.forget(self)  # a stream never idles out
        self._last = not keep_alive  # the stream is the connection's last reply
        transport.write(_STREAM_HEAD % (_date(), b"Connection: close\r\n" if self._last else b""))
        stream.listen(self._wake)
        self._wake()  # what queued before the stream opened

    def _wake(self) -> None:
        if not self._waking:
            self._waking = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._waking = False
        stream, transport = self._stream, self._transport
        if stream is None or transport is None or transport.is_closing():
            return
        if stream.detached:
            self._end_stream(last_chunk=True)
            return
        if not self._path.calls.valid(self._principal):
            log.info("agent %s: command stream ended, its credential is no longer valid", stream.agent_id)
            self._end_stream(last_chunk=True)
            return
        while not self._paused and (commands := stream.ready()):  # writing may pause it
            try:
                data = b"".join(wire.frame(wire.encode_agent_event(c)) for c in commands)
            except Exception:  # a bug: said with its traceback, and the stream ends (the agent opens another)
                log.exception("agent %s command stream failed", stream.agent_id)
                self._end_stream(last_chunk=False)
                self.close()
                return
            transport.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _end_stream(self, *, last_chunk: bool) -> None:
        stream = self._stream
        assert stream is not None
        stream.listen(None)
        stream.close()
        self._path.calls.close_stream(self._handle)
        self._stream, self._handle, self._principal = None, None, None
        transport = self._transport
        if last_chunk and transport is not None and not transport.is_closing():
            transport.write(_LAST_CHUNK)
            if self._last:
                transport.close()
                return
            self._touch()
            self._serve_next()

    def _revoked(self) -> None:
        """Its principal was revoked (the stream is no longer counted): end the stream and the connection."""
        if self._stream is not None:
            log.info("agent %s: command stream ended, its credential was revoked", self._stream.agent_id)
            self._end_stream(last_chunk=False)
        self.close()

    # -- the rest ----------------------------------------------------------------------------

    def _hand_over(self) -> None:
        """Give the connection, from the buffered request on, to aiohttp."""
        transport = self._transport
        assert transport is not None and self._stream is None and not self._busy
        self._path.connections.discard(self)
        self._path.handed_over += 1
        self._path.idle.forget(self)
        inner = self._inner = self._fallback()
        data, self._buffer = bytes(self._buffer or b""), None
        inner.connection_made(transport)
        if self._paused:  # aiohttp keeps its own flow control: reading is its call from now on
            transport.resume_reading()
            inner.pause_writing()
        if data:
            inner.data_received(data)

    def _drop(self, why: str) -> None:
        log.info("closing an agent connection from %s: it %s", self._peer(), why)
        self._buffer = None
        self.close()

    def _peer_port(self) -> int | None:
        peer = self._transport.get_extra_info("peername") if self._transport is not None else None
        return int(peer[1]) if isinstance(peer, tuple) and len(peer) > 1 else None

    def _peer(self) -> str:
        peer = self._transport.get_extra_info("peername") if self._transport is not None else None
        return str(peer[0]) if isinstance(peer, tuple) and peer else str(peer)

    def _touch(self) -> None:
        """Activity: the idle timeout counts from now (not while a stream is open: it never idles out)."""
        if self._stream is None:
            self._path.idle.touch(self)

    def expire(self) -> None:
        """Idle for the keep-alive timeout (the wheel says so)."""
        if self._stream is not None or self._inner is not None:
            return
        if self._busy:  # a call still being served is not idle
            self._touch()
            return
        log.debug("closing the agent connection from %s: idle for %.0f s", self._peer(), self._path.keepalive)
        self.close()
