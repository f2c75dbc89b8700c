"""The master's CoAP adapter (aiocoap): decode, call the handler table, encode.

Resources (an aiocoap ``Site`` is the routing table; paths in
:mod:`edgerm.coap_util`)::

    POST /agent                    AgentCall -> 2.04 AgentEvent
    GET  /agents/{id}/commands     Observe=0: notifications of the agent's
                                   command window (edgerm.master.coap_commands);
                                   plain GET: the window once (2.05)
    POST /agents/{id}/commands     an 8-byte cursor: confirm commands (2.04)
    GET  /modules/{sha256}         a WebAssembly module (2.05, block-wise)

Rules:
- Thin: every agent call goes to :meth:`Handlers.agent_call`, the command
  window drains :meth:`Handlers.agent_commands`, modules come from
  :meth:`Handlers.module`. Nothing here knows what a call means.
- Fast heartbeats: a single-datagram CON ``POST /agent`` that decodes to a
  HEARTBEAT is answered in the callback that received it
  (:meth:`_AgentCalls.answer_now` through
  :func:`~edgerm.master.coap_state.bound_server_state`, calling
  :meth:`Handlers.heartbeat`): the same reply, half the CPU. With OSCORE,
  :meth:`~edgerm.master.coap_oscore.OscoreSite.answer_now` unprotects it
  first and protects the reply, with the same checks as the usual way.
- Every ``WireError`` becomes its own ``coap_code`` with an ``edgerm.v1.Error``
  payload (:func:`edgerm.coap_util.error_message`), counted through
  ``Handlers.failed``: a malformed payload 4.00, an unknown path 4.04
  (``NotFound``), a never-registered agent 4.04 UNKNOWN_AGENT, a payload over
  ``max_body`` 4.13 (checked per block, before block-wise assembly, with the
  limit in Size1). The ``except Exception`` in :meth:`_Guarded.render` and
  :meth:`_Commands._observe` is the outermost boundary: it logs and answers
  5.00, and the master keeps serving.
- Secure by default: with a :class:`~edgerm.master.coap_oscore.CoapSecurity`
  the site sits behind :class:`~edgerm.master.coap_oscore.OscoreSite`
  (OSCORE, RFC 8613): an unprotected request is 4.01 UNAUTHENTICATED, and
  a call, observation or confirmation for another agent id than the
  context's is 4.03 FORBIDDEN, checked before the handler runs. Without it
  (``--insecure``) plain CoAP is served and nothing is checked.
- Bound explicitly: UDP on ``host:port`` only, CoAP-over-TCP only when asked
  for (its own listener). A port already taken is an ``OSError`` at start
  (aiocoap binds with SO_REUSEPORT, which would otherwise share it silently).
- Bounded per-request state (:mod:`edgerm.master.coap_state`): no
  deduplication entry for the idempotent agent calls, bounded caches for the
  rest, block-wise state dropped once a transfer completes.
- :meth:`CoapServer.close` ends every observation with a final 5.03 before
  the sockets close, so no observer is left waiting.
"""

from __future__ import annotations

import logging
import re
import socket
from typing import Any

import aiocoap
import aiocoap.error
from aiocoap import resource

from edgerm import messages as m
from edgerm import wire
from edgerm.coap_util import (
    AGENT_PATH,
    AGENTS_PREFIX,
    COMMANDS_SEGMENT,
    DEFAULT_COAP_PORT,
    MODULES_PREFIX,
    OCTET_STREAM,
    TUNING,
    Cursor,
    error_message,
    harden_aiocoap,
    quiet_aiocoap_logs,
)
from edgerm.errors import MessageTooLarge, NotFound, Unavailable, WireError
from edgerm.ids import AgentId
from edgerm.master.coap_commands import DEFAULT_WINDOW_CAPACITY, CommandChannels, CommandWindow, Observer
from edgerm.master.coap_oscore import CoapSecurity, OscoreSite
from edgerm.master.coap_state import Answer, bound_resource_state, bound_server_state
from edgerm.master.handlers import Handlers
from edgerm.master.http import DEFAULT_MAX_BODY

log = logging.getLogger(__name__)

_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_OBSERVE_MASK = 0xFFFFFF  # the Observe option is 24 bits (RFC 7641)
_MODULE_MAX_AGE = 365 * 24 * 3600  # modules are immutable: they are named by their hash


class _Adapter:
    """What every resource shares: the handler table, the command windows, limits."""

    def __init__(
        self, handlers: Handlers, max_body: int, window_capacity: int, security: CoapSecurity | None = None
    ) -> None:
        self.handlers = handlers
        self.max_body = max_body
        self.channels = CommandChannels(handlers, window_capacity)
        #: The open observations of command windows (each lives in callbacks: no task).
        self.observations: set[_Observation] = set()
        #: None: an --insecure master (plain CoAP, no checks).
        self.security = security
        #: Single-datagram heartbeats answered in the datagram's callback (``_AgentCalls.answer_now``, with
        #: OSCORE ``OscoreSite.answer_now``).
        self.answer_now: Answer | None = None

    def check_call(self, request: aiocoap.Message, call: m.AgentCall) -> None:
        if self.security is not None:
            self.security.agent_call(request, call)

    def check_agent(self, request: aiocoap.Message, agent_id: AgentId) -> None:
        if self.security is not None:
            self.security.agent_path(request, agent_id)

    def check_modules(self, request: aiocoap.Message) -> None:
        if self.security is not None:
            self.security.modules(request)

    def error(self, error: WireError, **options: Any) -> aiocoap.Message:
        self.handlers.failed(error)
        return error_message(error, **options)

    def internal_error(self) -> aiocoap.Message:
        message = self.error(WireError("internal error; see the master's log"))
        message.code = aiocoap.INTERNAL_SERVER_ERROR
        return message

    def too_large(self, request: aiocoap.Message) -> aiocoap.Message | None:
        """The 4.13 reply if this request (or this block of it) goes over the limit."""
        block1 = request.opt.block1
        end = (block1.start if block1 is not None else 0) + len(request.payload)
        announced = request.opt.size1
        if end <= self.max_body and (announced is None or announced <= self.max_body):
            return None
        size = max(end, announced or 0)
        return self.error(
            MessageTooLarge(f"payload of {size} bytes is over the limit of {self.max_body} bytes"),
            size1=self.max_body,
        )


class _Root(resource.Site):  # type: ignore[misc]  # aiocoap ships no type hints
    """The routing table; an unknown path is a typed 4.04, not aiocoap's bare one."""

    def __init__(self, adapter: _Adapter, calls: _AgentCalls) -> None:
        super().__init__()
        self._adapter = adapter
        self._calls = calls
        self.add_resource(list(AGENT_PATH), calls)

    async def render_to_pipe(self, pipe: Any) -> None:
        request = pipe.request
        path = request.opt.uri_path
        if path == AGENT_PATH and request.opt.uri_path_abbrev is None:
            # The heartbeat's route, taken directly: Site's dispatch renders the
            # request URI and deep-copies the options on every request (~0.2 ms
            # of CPU), and ``/agent`` does not look at its path.
            await self._calls.render_to_pipe(pipe)
            return
        try:
            await super().render_to_pipe(pipe)
        except aiocoap.error.NotFound:
            pipe.add_response(self._adapter.error(NotFound(f"no resource at /{'/'.join(path)}")), is_last=True)


class _Guarded(resource.Resource):  # type: ignore[misc]
    """A resource whose handlers may raise ``WireError``; the size limit applies first."""

    def __init__(self, adapter: _Adapter) -> None:
        super().__init__()
        self._adapter = adapter
        bound_resource_state(self)  # block-wise state dropped when complete (coap_state.py)

    async def render_to_pipe(self, pipe: Any) -> None:
        reply = self._adapter.too_large(pipe.request)
        if reply is not None:
            pipe.add_response(reply, is_last=True)
            return
        await super().render_to_pipe(pipe)

    async def render(self, request: aiocoap.Message) -> aiocoap.Message:
        try:
            response: aiocoap.Message = await super().render(request)
        except aiocoap.error.RenderableError:
            raise  # aiocoap's own replies: 4.05 for a method we do not serve, block-wise states
        except Exception as e:
            return self._failed(request, e)
        return response

    def _failed(self, request: aiocoap.Message, error: Exception) -> aiocoap.Message:
        """The reply to a handler that raised (call it in the ``except``): its typed error, or 5.00 logged."""
        if isinstance(error, WireError):
            return self._adapter.error(error)
        log.exception("internal error on CoAP %s /%s", request.code, "/".join(request.opt.uri_path))
        return self._adapter.internal_error()


class _AgentCalls(_Guarded):
    """``POST /agent``: one AgentCall, one AgentEvent."""

    def answer_now(self, request: aiocoap.Message) -> aiocoap.Message | None:
        """A plain single-datagram HEARTBEAT's reply, made at once; None for anything else.

        The same reply :meth:`render_post` makes (a ``WireError`` its typed
        error), without aiocoap's pipe, render task and empty-ACK timer: about
        half the master's CPU per CoAP heartbeat. On an ``--insecure`` master
        for the datagram itself; with OSCORE :meth:`OscoreSite.answer_now
        <edgerm.master.coap_oscore.OscoreSite.answer_now>` asks
        :meth:`heartbeat_of` and :meth:`answer_heartbeat` about the
        unprotected request. Every other request, and every option this does
        not look at, goes the usual way.
        """
        try:
            call = self.heartbeat_of(request)
        except Exception as e:
            return self._failed(request, e)
        return self.answer_heartbeat(request, call) if call is not None else None

    def heartbeat_of(self, request: aiocoap.Message) -> m.AgentHeartbeat | None:
        """The HEARTBEAT a plain single-datagram ``POST /agent`` carries; None for any other request.

        Raises what decoding raises (a ``WireError`` for a malformed payload).
        """
        opt = request.opt
        if (
            request.code != aiocoap.POST
            or opt.uri_path != AGENT_PATH
            or opt.uri_path_abbrev is not None
            or opt.block1 is not None
            or opt.block2 is not None
            or opt.size1 is not None
            or opt.observe is not None
            or opt.no_response is not None
            or len(request.payload) > self._adapter.max_body
        ):
            return None
        call = wire.decode_agent_call(request.payload)
        return call if type(call) is m.AgentHeartbeat else None  # REGISTER and UPDATE wait for the registry

    def answer_heartbeat(self, request: aiocoap.Message, call: m.AgentHeartbeat) -> aiocoap.Message:
        """The reply to ``call`` (checked for the request's principal first, as :meth:`render_post` does)."""
        try:
            self._adapter.check_call(request, call)
            event = self._adapter.handlers.heartbeat(call, transport="coap")
            return aiocoap.Message(code=aiocoap.CHANGED, payload=wire.encode_agent_event(event))
        except Exception as e:
            return self._failed(request, e)

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        call = wire.decode_agent_call(request.payload)
        self._adapter.check_call(request, call)
        event = await self._adapter.handlers.agent_call(call, transport="coap")
        return aiocoap.Message(code=aiocoap.CHANGED, payload=wire.encode_agent_event(event))


class _Modules(_Guarded, resource.PathCapable):  # type: ignore[misc]
    """``GET /modules/{sha256}``: an inline module the master holds (block-wise by aiocoap)."""

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        self._adapter.check_modules(request)
        path = request.opt.uri_path
        if len(path) != 1:
            raise NotFound(f"no resource at /{MODULES_PREFIX}/{'/'.join(path)}")
        sha256 = path[0]
        if not _SHA256.fullmatch(sha256):
            raise NotFound(f"{sha256!r} is not a sha256 hex digest")
        module = self._adapter.handlers.module(sha256)
        if module is None:
            raise NotFound(f"no module with sha256 {sha256} on this master")
        return aiocoap.Message(
            code=aiocoap.CONTENT,
            payload=module,
            content_format=OCTET_STREAM,
            etag=bytes.fromhex(sha256)[:8],
            max_age=_MODULE_MAX_AGE,
        )


class _Commands(_Guarded, resource.PathCapable):  # type: ignore[misc]
    """``/agents/{id}/commands``: observe, read or confirm an agent's command window."""

    def _agent_id(self, request: aiocoap.Message) -> AgentId:
        """The agent of this resource path, which must be the caller (Forbidden otherwise)."""
        path = request.opt.uri_path
        if len(path) != 2 or not path[0] or path[1] != COMMANDS_SEGMENT:
            raise NotFound(f"no resource at /{AGENTS_PREFIX}/{'/'.join(path)}")
        agent_id = AgentId(path[0])
        self._adapter.check_agent(request, agent_id)
        return agent_id

    async def render_to_pipe(self, pipe: Any) -> None:
        request = pipe.request
        if request.code == aiocoap.GET and request.opt.observe == 0 and request.opt.block2 is None:
            await self._observe(pipe)
        else:
            await super().render_to_pipe(pipe)  # plain GET (and its later blocks), POST

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        agent_id = self._agent_id(request)
        channels = self._adapter.channels
        channels.require_agent(agent_id)
        window = channels.window(agent_id)
        if window is None:
            cursor = Cursor(channels.incarnation, channels.last_number(agent_id))
            return aiocoap.Message(code=aiocoap.CONTENT, payload=b"", etag=cursor.encode())
        return self._representation(window)

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        agent_id = self._agent_id(request)
        channels = self._adapter.channels
        cursor = Cursor.decode(request.payload)
        channels.require_agent(agent_id)
        window = channels.window(agent_id)
        if window is not None:
            window.confirm(cursor)
        return aiocoap.Message(code=aiocoap.CHANGED)

    @staticmethod
    def _representation(window: CommandWindow) -> aiocoap.Message:
        return aiocoap.Message(
            code=aiocoap.CONTENT, payload=window.payload(), etag=window.cursor.encode(), transport_tuning=TUNING
        )

    def _notification(self, request: aiocoap.Message, window: CommandWindow, number: int) -> aiocoap.Message:
        full = self._representation(window)
        response = full
        if len(full.payload) > request.remote.maximum_payload_size:
            # aiocoap does not split notifications: keep the whole one in the
            # block cache (the agent's follow-up GETs read it from there) and
            # send its first block.
            response = self._block2.serve(request, full)
        response.opt.observe = number & _OBSERVE_MASK
        return response

    async def _observe(self, pipe: Any) -> None:
        adapter = self._adapter
        request = pipe.request
        try:
            agent_id = self._agent_id(request)
            window, observer = await adapter.channels.observe(agent_id)
        except WireError as e:
            pipe.add_response(adapter.error(e), is_last=True)
            return
        _Observation(self, pipe, request, window, observer, agent_id).start()
        # Returns: the observation lives on in callbacks (the window's and the pipe's), no task waits for it.


class _Observation:
    """One agent's observation of its command window, driven by callbacks: a notification when the window
    grows, the last response when the observation must end, the window detached when the agent goes away
    (cancelled, RST, a CON notification not acknowledged)."""

    __slots__ = ("_agent_id", "_done", "_number", "_observer", "_pipe", "_request", "_resource", "_window")

    def __init__(
        self,
        resource: _Commands,
        pipe: Any,
        request: aiocoap.Message,
        window: CommandWindow,
        observer: Observer,
        agent_id: AgentId,
    ) -> None:
        self._resource = resource
        self._pipe = pipe
        self._request = request
        self._window = window
        self._observer = observer
        self._agent_id = agent_id
        self._number = 0
        self._done = False

    def start(self) -> None:
        self._resource._adapter.observations.add(self)
        self._pipe.on_interest_end(self.finish)  # at once if the agent is gone already
        if not self._done and self._send():
            self._observer.listen(self._changed)
            if self._observer.ended is not None:  # ended while it was being opened
                self._changed()

    def _changed(self) -> None:
        if self._done:
            return
        ended = self._observer.ended
        if ended is not None:
            self.finish()
            self._pipe.add_response(self._resource._adapter.error(ended), is_last=True)
            return
        self._number += 1
        self._send()

    def _send(self) -> bool:
        """Send the window as notification number ``_number``; False if that failed (the observation then ends
        with a 5.00)."""
        try:
            self._pipe.add_response(
                self._resource._notification(self._request, self._window, self._number), is_last=False
            )
            return True
        except Exception:
            log.exception("observation of agent %s failed", self._agent_id)
            self.finish()
            self._pipe.add_response(self._resource._adapter.internal_error(), is_last=True)
            return False

    def finish(self) -> None:
        """The observation is over (the agent went away, or its last response went): detach the window."""
        if not self._done:
            self._done = True
            self._observer.listen(None)  # no cycle left between the two: reference counting frees them
            self._window.detach(self._observer)
            self._resource._adapter.observations.discard(self)


def make_site(
    handlers: Handlers,
    max_body: int = DEFAULT_MAX_BODY,
    window_capacity: int = DEFAULT_WINDOW_CAPACITY,
    security: CoapSecurity | None = None,
) -> tuple[Any, _Adapter]:
    """The CoAP routing table over ``handlers`` (behind OSCORE with ``security``), and its adapter state."""
    if max_body < 1:
        raise ValueError("max_body must be positive")
    adapter = _Adapter(handlers, max_body, window_capacity, security)
    calls = _AgentCalls(adapter)
    site = _Root(adapter, calls)
    site.add_resource([AGENTS_PREFIX], _Commands(adapter))
    site.add_resource([MODULES_PREFIX], _Modules(adapter))
    if security is not None:
        oscore_site = OscoreSite(site, security, adapter.error, calls)
        adapter.answer_now = oscore_site.answer_now
        return oscore_site, adapter
    adapter.answer_now = calls.answer_now
    return site, adapter


# -- the server --------------------------------------------------------------------------


def _url(scheme: str, host: str, port: int) -> str:
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{port}"


class CoapServer:
    """The master's CoAP endpoint: UDP on ``url``, CoAP over TCP on ``tcp_url`` if asked for."""

    def __init__(self, adapter: _Adapter, contexts: list[Any], host: str, port: int, tcp_port: int | None) -> None:
        self._adapter = adapter
        self._contexts = contexts
        self.host = host
        self.port = port
        self.tcp_port = tcp_port
        self.url = _url("coap", host, port)
        self.tcp_url = _url("coap+tcp", host, tcp_port) if tcp_port is not None else None
        self._closed = False

    @property
    def channels(self) -> CommandChannels:
        return self._adapter.channels

    async def close(self) -> None:
        """End every observation (its final 5.03 is sent at once), then close the sockets (idempotent)."""
        if self._closed:
            return
        self._closed = True
        await self._adapter.channels.close_all(Unavailable("the master is shutting down"))
        for context in self._contexts:
            await context.shutdown()


def _check_free(host: str, port: int, kind: int) -> None:
    """Raise ``OSError`` if ``host:port`` is taken (aiocoap's SO_REUSEPORT would share it)."""
    family, _, _, _, address = socket.getaddrinfo(host, port, type=kind)[0]
    with socket.socket(family, kind) as probe:
        probe.bind(address)


def _free_tcp_port(host: str) -> int:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _udp_socket(context: Any) -> Any:
    """The UDP socket of an aiocoap server context."""
    for interface in context.request_interfaces:
        transport = getattr(
            getattr(getattr(interface, "token_interface", None), "message_interface", None), "transport", None
        )
        if transport is not None:
            return transport.get_extra_info("socket")
    raise RuntimeError("the CoAP server context has no UDP socket")


def _udp_port(context: Any) -> int:
    """The UDP port an aiocoap server context is bound to."""
    return int(_udp_socket(context).getsockname()[1])


#: The UDP receive buffer asked for (the kernel caps it at net.core.rmem_max). The
#: default (~208 KiB, ~150 small datagrams) overflows when thousands of agents
#: send while the loop is busy for a moment; every datagram dropped there costs
#: its agent a retransmission 1-2 s later.
UDP_RECEIVE_BUFFER = 8 * 1024 * 1024


def _grow_receive_buffer(context: Any) -> None:
    sock = _udp_socket(context)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)
    except OSError as e:  # not fatal: the default buffer still works, with more retransmissions
        log.warning("could not enlarge the CoAP receive buffer: %s", e)


async def start_coap_server(
    handlers: Handlers,
    host: str = "127.0.0.1",
    port: int = DEFAULT_COAP_PORT,
    *,
    tcp: bool = False,
    max_body: int = DEFAULT_MAX_BODY,
    window_capacity: int = DEFAULT_WINDOW_CAPACITY,
    security: CoapSecurity | None = None,
) -> CoapServer:
    """Serve the agent API over CoAP on ``host:port`` (0 = ephemeral), plus TCP if ``tcp``.

    With ``tcp`` the TCP listener takes the same port number, or its own
    ephemeral port when ``port`` is 0. ``security``: every request must be
    OSCORE-protected by an agent's context (None: plain CoAP, --insecure).
    """
    quiet_aiocoap_logs()
    harden_aiocoap()
    site, adapter = make_site(handlers, max_body, window_capacity, security)
    if port:
        _check_free(host, port, socket.SOCK_DGRAM)
    contexts: list[Any] = []
    try:
        udp = await aiocoap.Context.create_server_context(site, bind=(host, port), transports=["udp6"])
        contexts.append(udp)
        # Bounded deduplication, none for idempotent calls, plain heartbeats answered at once (coap_state.py).
        bound_server_state(udp, answer=adapter.answer_now)
        _grow_receive_buffer(udp)
        bound = _udp_port(udp)
        tcp_port: int | None = None
        if tcp:
            tcp_port = port or _free_tcp_port(host)
            _check_free(host, tcp_port, socket.SOCK_STREAM)
            contexts.append(
                await aiocoap.Context.create_server_context(site, bind=(host, tcp_port), transports=["tcpserver"])
            )
    except BaseException:
        for context in contexts:
            await context.shutdown()
        raise
    return CoapServer(adapter, contexts, host, bound, tcp_port)
