"""``CoapAgentTransport``: the agent API over CoAP with aiocoap (``coap://`` and ``coap+tcp://``).

Every call is a CON ``POST /agent`` with a protobuf ``AgentCall``; commands
arrive by observing ``/agents/{id}/commands`` and are confirmed with a
``POST`` of the notification's cursor; modules come from
``GET /modules/{sha256}`` (block-wise). The resources, the command format
and the error payloads are in :mod:`edgerm.coap_util` and docs/protocol.md.

This module is the boundary where aiocoap meets edgerm: aiocoap errors,
timeouts and untyped replies become :class:`~edgerm.errors.TransportError`;
a typed ``edgerm.v1.Error`` reply becomes its
:class:`~edgerm.errors.WireError` subclass.

Rules:
- Every exchange is bounded by ``asyncio.wait_for`` and sent with the
  tuned retransmission of :data:`edgerm.coap_util.TUNING`. A client context
  whose exchange timed out or failed is retired at once: with NSTART=1 a
  dead exchange would hold every later request to the master behind it.
- Message IDs: aiocoap numbers CON messages per context with 16 bits and
  the master remembers each for EXCHANGE_LIFETIME (247 s), so one socket
  must not send 65,536 of them within that time. Calls go through a
  context that is replaced after ``rotate_after`` messages; a rotated
  context stays open (its port taken, so no new context reuses it) for
  EXCHANGE_LIFETIME before it is closed.
- The observation and each module download get their own short-lived
  context: a download of many blocks never delays a heartbeat, and a new
  observation never inherits the state of an old one.
- Commands are handed over once per master process: the transport
  remembers the cursor of the last command it handed over and skips
  commands numbered up to it when a notification repeats them. After the
  agent's core took a notification's commands the cursor is confirmed.
- An observation ends (and the agent's service opens a new one) when the
  master ends it, when it fails, and when this transport registers again:
  a master that forgot the agent also forgot its observation.
- OSCORE (RFC 8613): with a ``security_context`` (the agent's, from its
  join: :mod:`edgerm.agent.coap_join`) every request of every context goes
  through aiocoap's OSCORE transport. A typed refusal the master sends
  unprotected (no context for us, a replay) still becomes its WireError. An
  ``Unauthenticated`` reply to a call makes the transport ``renew`` the
  context once (a new join) and retry; then lanes and observations start
  afresh, and the replaced context is closed after the call timeout. At
  :meth:`close` the context persists its exact sequence number.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any
from urllib.parse import urlsplit

import aiocoap
import aiocoap.error
from aiocoap.credentials import CredentialsMap

from edgerm import messages as m
from edgerm import wire
from edgerm.coap_util import (
    AGENT_PATH,
    DEFAULT_COAP_PORT,
    TUNING,
    Cursor,
    commands_path,
    decode_commands,
    harden_aiocoap,
    module_path,
    numbered,
    quiet_aiocoap_logs,
    raise_for_response,
)
from edgerm.errors import ConfigError, MalformedMessage, TransportError, Unauthenticated, UnknownAgent, WireError
from edgerm.ids import AgentId

log = logging.getLogger(__name__)

COAP_SCHEMES = frozenset({"coap", "coap+tcp"})
DEFAULT_ROTATE_AFTER = 30_000
#: How long a peer remembers a Message ID (RFC 7252 EXCHANGE_LIFETIME with default tuning).
EXCHANGE_LIFETIME = 247.0
_MAX_MODULE = 64 * 1024 * 1024
_BLOCK = 1024


def _close_context(context: Any) -> None:
    from edgerm.auth.oscore_contexts import close_context  # lazily: plain CoAP loads no OSCORE

    close_context(context)


def _retire_context(context: Any) -> None:
    from edgerm.auth.oscore_contexts import retire_agent_context

    retire_agent_context(context)


class _Lane:
    """One client context: one socket, one Message-ID space, and what went through it."""

    __slots__ = ("busy", "context", "remote", "retired_at", "sent")

    def __init__(self, context: Any) -> None:
        self.context = context
        self.remote: Any = None  # the master's address, resolved on the first request
        self.sent = 0  # CON messages that took a Message ID of this context
        self.busy = 0  # requests in flight
        self.retired_at: float | None = None


class CoapAgentTransport:
    """An :class:`~edgerm.agent.transport.AgentTransport` over CoAP."""

    #: Statuses per batched UPDATE: few enough that the call stays within one or two blocks.
    max_statuses_per_update = 4
    #: UPDATE calls in flight at once (AgentService's default is 1): a lost datagram holds up one call
    #: for a retransmission timeout, so a second keeps statuses moving meanwhile.
    update_calls_in_flight = 2

    def __init__(
        self,
        master_url: str,
        *,
        call_timeout: float = 10.0,
        module_timeout: float = 60.0,
        rotate_after: int = DEFAULT_ROTATE_AFTER,
        linger: float = EXCHANGE_LIFETIME,
        security_context: Any | None = None,
        renew: Callable[[], Awaitable[Any | None]] | None = None,
    ) -> None:
        parts = urlsplit(master_url)
        if parts.scheme not in COAP_SCHEMES or not parts.hostname:
            raise ConfigError(f"master: expected a URL like coap://127.0.0.1:{DEFAULT_COAP_PORT}, got {master_url!r}")
        if not 0 < rotate_after < 65_536:
            raise ValueError("rotate_after must be between 1 and 65535 messages")
        self.master_url = master_url.rstrip("/")
        self._tcp = parts.scheme == "coap+tcp"
        self._transports = ["tcpclient"] if self._tcp else ["udp6"]
        self._prefix = tuple(segment for segment in parts.path.split("/") if segment)
        self._call_timeout = call_timeout
        self._module_timeout = module_timeout
        self._rotate_after = rotate_after
        self._linger = linger
        self._lane: _Lane | None = None
        self._lane_lock = asyncio.Lock()
        self._retired: list[_Lane] = []
        self._jobs: set[asyncio.Task[None]] = set()
        self._observing: set[Any] = set()  # contexts of open observations
        self._stale: asyncio.Future[None] | None = None
        self._delivered: Cursor | None = None
        self._closed = False
        self.lanes_opened = 0  # client contexts created for calls (rotation and failures show here)
        self._security: Any | None = None  # the OSCORE security context (None: plain CoAP)
        self._credentials: CredentialsMap | None = None
        self._old_contexts: list[Any] = []  # replaced contexts, closed a little later
        self._retiring: set[asyncio.Task[None]] = set()
        self._renew = renew
        self._renewing = asyncio.Lock()
        if security_context is not None:
            self._use(security_context)
        quiet_aiocoap_logs()
        harden_aiocoap()

    # -- the calls -----------------------------------------------------------------------

    @property
    def secure(self) -> bool:
        """Whether requests are OSCORE-protected."""
        return self._security is not None

    async def call(self, call: m.AgentCall) -> m.AgentEvent:
        where = self._uri(AGENT_PATH)
        payload = wire.encode_agent_call(call)
        try:
            response = await self._request(aiocoap.POST, AGENT_PATH, payload, where)
            raise_for_response(response, where)
        except Unauthenticated:
            if not await self._renewed():
                raise
            response = await self._request(aiocoap.POST, AGENT_PATH, payload, where)
            raise_for_response(response, where)
        try:
            event = wire.decode_agent_event(response.payload)
        except WireError as e:  # MalformedMessage or UnknownCall: the reply, not our call, is broken
            raise TransportError(f"{where}: unreadable reply: {e}") from None
        if isinstance(event, m.ErrorEvent):
            wire.raise_error(event)
        if isinstance(event, m.AgentRegistered):
            self._registered_again()
        return event

    async def commands(self, agent_id: AgentId) -> AsyncIterator[m.AgentEvent]:
        path = commands_path(agent_id)
        where = self._uri(path)
        stale = self._staleness()
        context = await self._new_context(where)
        self._observing.add(context)
        request: Any = None
        pending: asyncio.Future[Any] | None = None
        try:
            message = aiocoap.Message(code=aiocoap.GET, uri=where, observe=0, transport_tuning=TUNING)
            request = context.request(message)
            representation = await self._bounded(request.response, self._call_timeout, where)
            notifications: AsyncIterator[aiocoap.Message] | None = None
            while True:
                raise_for_response(representation, where)
                for cursor, command in self._fresh(representation, where):
                    self._delivered = cursor  # handed over as soon as it is yielded
                    yield command
                await self._confirm(path, representation)
                if notifications is None:
                    observation = request.observation
                    if observation is None or observation.cancelled:
                        return  # the master did not keep the observation: the caller opens another
                    notifications = aiter(observation)
                pending = asyncio.ensure_future(anext(notifications))
                await asyncio.wait({pending, stale}, return_when=asyncio.FIRST_COMPLETED)
                if not pending.done():
                    log.debug("registered again: observation of %s is stale", where)
                    return
                try:
                    representation = pending.result()
                except StopAsyncIteration:
                    return  # the master ended the observation
                except aiocoap.error.Error as e:
                    raise TransportError(f"{where}: observation failed: {e or type(e).__name__}") from None
                finally:
                    pending = None
        finally:
            if pending is not None:
                pending.cancel()
            if request is not None:
                if not request.response.done():
                    request.response.cancel()
                elif request.observation is not None and not request.observation.cancelled:
                    request.observation.cancel()
            if context in self._observing:  # else close() already shut it down
                self._observing.discard(context)
                self._spawn(context.shutdown())

    async def fetch_module(self, sha256: str) -> bytes:
        where = self._uri(module_path(sha256))
        # Its own context: a module of many blocks must not hold calls back (NSTART=1).
        context = await self._new_context(where)
        try:
            message = aiocoap.Message(code=aiocoap.GET, uri=where, transport_tuning=TUNING)
            response = await self._bounded(context.request(message).response, self._module_timeout, where)
        finally:
            self._spawn(context.shutdown())
        raise_for_response(response, where)
        payload: bytes = response.payload
        if len(payload) > _MAX_MODULE:
            raise TransportError(f"{where}: module of {len(payload)} bytes is too large")
        if hashlib.sha256(payload).hexdigest() != sha256.lower():
            raise TransportError(f"{where}: the module's content does not match its sha256")
        return payload

    async def _renewed(self) -> bool:
        """The master refused our OSCORE context: get a new one (join again); whether we did."""
        if self._renew is None:
            return False
        current = self._security
        async with self._renewing:  # one renewal at a time; the others use its context
            if self._security is not current:
                return True
            context = await self._renew()
            if context is None:
                return False
            self._use(context)
            return True

    def _use(self, context: Any) -> None:
        """Protect every later request with ``context``; lanes and observations start afresh."""
        old = self._security
        self._security = context
        self._credentials = CredentialsMap()
        self._credentials["*"] = context  # this transport talks to one master only
        if self._lane is not None:
            self._retire(self._lane, linger=False)
        self._registered_again()
        if old is not None:
            self._old_contexts.append(old)
            retiring = asyncio.ensure_future(self._retire_context_later(old))
            self._retiring.add(retiring)
            retiring.add_done_callback(self._retiring.discard)

    async def _retire_context_later(self, context: Any) -> None:
        # Exchanges still using the old context finish first (each is bounded by the call timeout).
        await asyncio.sleep(self._call_timeout + 1.0)
        if context in self._old_contexts:
            self._old_contexts.remove(context)
            await asyncio.to_thread(_retire_context, context)

    async def close(self) -> None:
        """Close every context; open command channels end (idempotent)."""
        self._closed = True
        self._registered_again()  # open observations end (they return, not raise)
        lanes = [*self._retired, *([self._lane] if self._lane is not None else [])]
        self._lane = None
        self._retired.clear()
        for lane in lanes:
            self._spawn(lane.context.shutdown())
        for context in self._observing:
            self._spawn(context.shutdown())
        self._observing.clear()
        for waiting in self._retiring:
            waiting.cancel()  # closed below, at once
        jobs = list(self._jobs)
        if jobs:
            await asyncio.wait(jobs)
        # Last: persist the sequence numbers exactly and release the context's lock.
        old, self._old_contexts = self._old_contexts, []
        for context in old:
            await asyncio.to_thread(_retire_context, context)
        if self._security is not None:
            await asyncio.to_thread(_close_context, self._security)

    # -- commands ---------------------------------------------------------------------------

    def _fresh(self, response: aiocoap.Message, where: str) -> list[tuple[Cursor, m.AgentEvent]]:
        """The commands of a representation not handed over yet, each with its cursor."""
        try:
            cursor = Cursor.decode(response.opt.etag)
            commands = decode_commands(response.payload)
        except MalformedMessage as e:
            raise TransportError(f"{where}: unreadable commands: {e}") from None
        last = self._delivered
        out: list[tuple[Cursor, m.AgentEvent]] = []
        for own, command in numbered(cursor, commands):
            if not isinstance(command, m.LaunchCommand | m.KillCommand | m.SendLogsCommand):
                raise TransportError(f"{where}: not a command: {type(command).__name__}")
            if last is not None and own.incarnation == last.incarnation and own.seq <= last.seq:
                continue  # a repeat of a command already handed over
            out.append((own, command))
        return out

    async def _confirm(self, path: tuple[str, ...], response: aiocoap.Message) -> None:
        """Confirm a representation's commands (all of them were handed over)."""
        if not response.payload:
            return
        where = self._uri(path)
        try:
            reply = await self._request(aiocoap.POST, path, response.opt.etag, where)
            raise_for_response(reply, where)
        except UnknownAgent:
            raise
        except (TransportError, WireError) as e:
            # Unconfirmed commands come again (in the next notification, or in
            # the next observation's window) and are skipped or idempotent.
            log.debug("could not confirm commands at %s: %s", where, e)

    def _staleness(self) -> asyncio.Future[None]:
        if self._stale is None or self._stale.done():
            self._stale = asyncio.get_running_loop().create_future()
        return self._stale

    def _registered_again(self) -> None:
        """Open observations are stale: the master (perhaps a new one) was registered with again."""
        stale, self._stale = self._stale, None
        if stale is not None and not stale.done():
            stale.set_result(None)

    # -- requests and contexts ------------------------------------------------------------------

    def _uri(self, path: tuple[str, ...]) -> str:
        return self.master_url + "/" + "/".join((*self._prefix, *path))

    async def _new_context(self, where: str) -> Any:
        if self._closed:
            raise TransportError(f"{where}: the transport is closed")
        transports = self._transports if self._credentials is None else ["oscore", *self._transports]
        try:
            context = await aiocoap.Context.create_client_context(transports=transports)
        except (aiocoap.error.Error, OSError) as e:
            raise TransportError(f"{where}: cannot open a CoAP client context: {e}") from None
        if self._credentials is not None:
            context.client_credentials = self._credentials
        return context

    async def _call_lane(self, where: str) -> _Lane:
        """The context for calls, rotated before its Message IDs could wrap."""
        self._sweep()
        lane = self._lane
        if lane is not None and (self._tcp or lane.sent < self._rotate_after):
            return lane
        async with self._lane_lock:
            lane = self._lane
            if lane is not None and (self._tcp or lane.sent < self._rotate_after):
                return lane
            # The new context opens before the old one is let go, so it cannot get the old port.
            fresh = _Lane(await self._new_context(where))
            self.lanes_opened += 1
            if lane is not None:
                log.debug("rotating the CoAP client context after %d messages", lane.sent)
                self._retire(lane, linger=True)
            self._lane = fresh
            return fresh

    def _retire(self, lane: _Lane, *, linger: bool) -> None:
        if self._lane is lane:
            self._lane = None
        if lane.retired_at is None:
            lane.retired_at = time.monotonic() + (self._linger if linger else 0.0)
            self._retired.append(lane)
        self._sweep()

    def _sweep(self) -> None:
        """Close retired contexts that are idle and past their linger time."""
        now = time.monotonic()
        keep: list[_Lane] = []
        for lane in self._retired:
            if lane.busy == 0 and lane.retired_at is not None and lane.retired_at <= now:
                self._spawn(lane.context.shutdown())
            else:
                keep.append(lane)
        self._retired = keep

    async def _request(self, code: aiocoap.Code, path: tuple[str, ...], payload: bytes, where: str) -> aiocoap.Message:
        lane = await self._call_lane(where)
        if lane.remote is None:
            message = aiocoap.Message(code=code, uri=where, payload=payload, transport_tuning=TUNING)
        else:
            # A resolved address skips aiocoap's per-request name lookup (a thread hop).
            message = aiocoap.Message(
                code=code, uri_path=(*self._prefix, *path), payload=payload, transport_tuning=TUNING
            )
            message.remote = lane.remote
        lane.busy += 1
        lane.sent += 1 + len(payload) // _BLOCK
        try:
            response: aiocoap.Message = await self._bounded(
                lane.context.request(message).response, self._call_timeout, where
            )
        except TransportError:
            # With NSTART=1 a failed exchange may hold later ones back: start afresh.
            self._retire(lane, linger=False)
            raise
        finally:
            lane.busy -= 1
        if lane.remote is None:
            # With OSCORE the response's remote holds the resolved address; the request's may not.
            lane.remote = response.remote if self._security is not None else message.remote
        lane.sent += len(response.payload) // _BLOCK  # block-wise follow-ups took Message IDs too
        return response

    @staticmethod
    async def _bounded(response: asyncio.Future[Any], limit: float, where: str) -> Any:
        try:
            return await asyncio.wait_for(response, limit)
        except TimeoutError:
            raise TransportError(f"{where}: no answer within {limit}s") from None
        except aiocoap.error.Error as e:
            # An unprotected reply to a protected request (aiocoap's NotAProtectedMessage):
            # the master's typed refusal (no context for us, a replay, a bad message).
            plain = getattr(e, "plain_message", None)
            if isinstance(plain, aiocoap.Message):
                raise_for_response(plain, where)
            raise TransportError(f"{where}: {e or type(e).__name__}") from None

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        job = asyncio.ensure_future(coro)
        self._jobs.add(job)
        job.add_done_callback(self._job_done)

    def _job_done(self, job: asyncio.Task[None]) -> None:
        self._jobs.discard(job)
        if not job.cancelled() and (e := job.exception()) is not None:
            log.debug("closing a CoAP context failed: %s", e)
