"""A bound on the HTTP connections the master holds, below its open-file limit.

Every HTTP agent holds a connection (its push stream), and anyone can open more. Were the
process to run out of file descriptors, ``accept()`` would fail with EMFILE: asyncio then logs
a traceback for every refused accept (up to the listen backlog each second, hundreds of
thousands of lines in seconds), and nothing else in the master could open a file or a socket.

:class:`GuardedTCPSite` serves the aiohttp runner like ``web.TCPSite``, through a
:class:`ConnectionGuard`: it counts the connections open and, at ``limit`` (the open-file
limit less a reserve for the registry, logs, CoAP and outgoing connections), answers a new
one with a typed ``UNAVAILABLE`` error (HTTP 503, ``Retry-After``) and closes it, so the
peer's client backs off and retries; the descriptor is free again at once. Given an
:class:`~edgerm.master.agent_http.AgentFastPath`, a connection starts on it (agents' calls) and
goes to the runner for anything else. One WARNING line
per ``REPORT_EVERY`` seconds says how many were refused. :func:`quiet_accept_errors` turns
asyncio's own "out of system resource" report (still possible if other descriptors run out)
into such a line too, without a traceback.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from edgerm import wire
from edgerm.errors import Unavailable
from edgerm.master.agent_http import AgentFastPath

log = logging.getLogger("edgerm.master")

REPORT_EVERY = 10.0  # seconds between two warnings about refused connections
RESERVE = 256  # descriptors kept for everything but HTTP connections (a quarter of a smaller limit)


def connection_limit(open_files: int) -> int:
    """The HTTP connections a process with ``open_files`` descriptors may hold."""
    return max(1, open_files - min(RESERVE, open_files // 4))


class _Report:
    """Counts refusals and says so once per ``REPORT_EVERY`` seconds."""

    def __init__(self, what: str, clock: Callable[[], float]) -> None:
        self._what = what
        self._clock = clock
        self._last = -REPORT_EVERY
        self._since = 0
        self.total = 0

    def __call__(self, detail: str) -> None:
        self.total += 1
        self._since += 1
        now = self._clock()
        if now - self._last >= REPORT_EVERY:
            log.warning("%s: %d refused since the last report (%s)", self._what, self._since, detail)
            self._last, self._since = now, 0


class _Counted(asyncio.Protocol):
    """The real protocol (aiohttp's request handler), with the guard told when its connection ends."""

    __slots__ = ("_guard", "_inner")

    def __init__(self, inner: asyncio.Protocol, guard: ConnectionGuard) -> None:
        self._inner = inner
        self._guard = guard

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        self._guard.open -= 1
        self._inner.connection_lost(exc)


class _Refused(asyncio.Protocol):
    """Answers UNAVAILABLE at once and closes: the descriptor goes back as soon as the reply is out."""

    def __init__(self, reply: bytes) -> None:
        self._reply = reply

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)
        transport.write(self._reply)
        transport.close()

    def data_received(self, data: bytes) -> None:
        pass  # the request is not read: the reply is already on its way


class ConnectionGuard:
    """A protocol factory over ``factory`` that holds at most ``limit`` connections."""

    def __init__(
        self, factory: Callable[[], asyncio.Protocol], limit: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if limit < 1:
            raise ValueError("the connection limit must be at least 1")
        self.limit = limit
        self.open = 0
        self._factory = factory
        self._refused = _Report(f"HTTP connections over the limit of {limit}", clock)
        error = Unavailable(f"the master holds its limit of {limit} connections; retry later")
        body = wire.encode_error(error)
        self._reply = (
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/x-protobuf\r\nRetry-After: 1\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
        )

    @property
    def refused(self) -> int:
        return self._refused.total

    def __call__(self) -> asyncio.Protocol:
        if self.open >= self.limit:
            self._refused(f"{self.open} open")
            return _Refused(self._reply)
        self.open += 1
        return _Counted(self._factory(), self)


class GuardedTCPSite(web.BaseSite):
    """``web.TCPSite`` with a :class:`ConnectionGuard` between the listening socket and the runner."""

    __slots__ = ("_fast", "_host", "_limit", "_port", "guard")

    def __init__(
        self,
        runner: web.BaseRunner,
        host: str,
        port: int,
        *,
        limit: int,
        ssl_context: Any = None,
        backlog: int = 128,
        fast: AgentFastPath | None = None,
    ) -> None:
        super().__init__(runner, ssl_context=ssl_context, backlog=backlog)
        self._fast = fast
        self._host = host
        self._port = port
        self._limit = limit
        self.guard: ConnectionGuard | None = None

    @property
    def name(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"{scheme}://{host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        server = self._runner.server
        assert server is not None
        factory = self._fast.factory(server) if self._fast is not None else server
        self.guard = ConnectionGuard(factory, self._limit)
        self._server = await asyncio.get_running_loop().create_server(
            self.guard, self._host, self._port, ssl=self._ssl_context, backlog=self._backlog, reuse_address=True
        )

    async def stop(self) -> None:
        await super().stop()
        if self._fast is not None:
            self._fast.close()  # aiohttp's shutdown closes the connections it serves; these are not its


def quiet_accept_errors(loop: asyncio.AbstractEventLoop) -> None:
    """Report asyncio's failed ``accept()`` (out of descriptors or memory) as a rate-limited WARNING line
    without a traceback; every other exception goes to the handler that was there."""
    previous = loop.get_exception_handler()
    report = _Report("connections the kernel could not accept (out of descriptors or memory)", time.monotonic)

    def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") == "socket.accept() out of system resource":
            report(str(context.get("exception") or "no detail"))
            return
        if isinstance(context.get("exception"), ValueError) and "_start_serving" in repr(context.get("handle")):
            # asyncio resumes accepting 1 s after such a failure; a listener closed meanwhile (shutdown) has
            # no descriptor left to watch: nothing is wrong, nothing to report.
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handler)
