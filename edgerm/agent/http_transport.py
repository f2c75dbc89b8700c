"""``HttpAgentTransport``: the agent API over HTTP with aiohttp.

Every call is ``POST /api/v1/agent`` with a protobuf ``AgentCall``; SUBSCRIBE
keeps its response open and streams RecordIO-framed ``AgentEvent`` commands,
split by :class:`edgerm.wire.RecordReader`. Modules come from
``GET /api/v1/modules/{sha256}`` (docs/protocol.md).

This module is the boundary where aiohttp meets edgerm: aiohttp errors,
timeouts and untyped replies become :class:`~edgerm.errors.TransportError`;
a typed ``edgerm.v1.Error`` reply becomes its
:class:`~edgerm.errors.WireError` subclass. Timeouts are explicit: connect
and whole-call limits for calls; only a connect limit for the command
stream, which may stay quiet for as long as there is nothing to do.
Credentials: ``token`` goes in an ``Authorization: Bearer`` header on every
request (:mod:`edgerm.auth.join` gets it); ``ssl`` verifies an https master.
A call answered UNAUTHENTICATED (the credential expired or was revoked) asks
``renew`` once for a new token (the agent re-joins, if it has a join token)
and is sent again with it; without one the error is raised as usual.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import ssl as _ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp

from edgerm import messages as m
from edgerm import wire
from edgerm.errors import MalformedMessage, TransportError, Unauthenticated, UnknownCall, WireError
from edgerm.ids import AgentId

log = logging.getLogger(__name__)

AGENT_PATH = "/api/v1/agent"
MODULES_PATH = "/api/v1/modules/"
PROTOBUF = "application/x-protobuf"
_HEADERS = {"Content-Type": PROTOBUF, "Accept": PROTOBUF}
_MAX_MODULE = 64 * 1024 * 1024


class HttpAgentTransport:
    """An :class:`~edgerm.agent.transport.AgentTransport` over HTTP."""

    #: Statuses per batched UPDATE (AgentService caps it at its MAX_BATCH).
    max_statuses_per_update = 64

    def __init__(
        self,
        master_url: str,
        *,
        connect_timeout: float = 5.0,
        call_timeout: float = 10.0,
        module_timeout: float = 60.0,
        token: str | None = None,
        ssl: _ssl.SSLContext | None = None,
        renew: Callable[[], Awaitable[str | None]] | None = None,
    ) -> None:
        self.master_url = master_url.rstrip("/")
        self._ssl = ssl
        self._renew = renew
        self._renewing = asyncio.Lock()
        self._generation = 0
        self._headers: dict[str, str] = _HEADERS
        self._auth: dict[str, str] = {}
        self._set_token(token)
        self._url = self.master_url + AGENT_PATH
        self._connect_timeout = connect_timeout
        self._call_timeout = aiohttp.ClientTimeout(total=call_timeout, sock_connect=connect_timeout)
        self._module_timeout = aiohttp.ClientTimeout(total=module_timeout, sock_connect=connect_timeout)
        self._session: aiohttp.ClientSession | None = None

    def _set_token(self, token: str | None) -> None:
        self._auth = {"Authorization": f"Bearer {token}"} if token else {}
        self._headers = {**_HEADERS, **self._auth}
        self._generation += 1

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # One session, created on first use so it binds to the running loop.
            connector = aiohttp.TCPConnector(ssl=self._ssl) if self._ssl is not None else None
            self._session = aiohttp.ClientSession(raise_for_status=False, connector=connector)
        return self._session

    async def call(self, call: m.AgentCall) -> m.AgentEvent:
        generation = self._generation
        try:
            return await self._call(call)
        except Unauthenticated:
            if self._renew is None:
                raise
            async with self._renewing:  # one renewal at a time; the others use its token
                if self._generation == generation:
                    token = await self._renew()
                    if not token:
                        raise
                    self._set_token(token)
            return await self._call(call)

    async def _call(self, call: m.AgentCall) -> m.AgentEvent:
        body = wire.encode_agent_call(call)
        try:
            http = self._http()
            async with http.post(self._url, data=body, headers=self._headers, timeout=self._call_timeout) as resp:
                payload = await resp.read()
                if resp.status != 200:
                    _raise_reply(resp.status, resp.content_type, payload, self._url)
        except TimeoutError:
            raise TransportError(f"{self._url}: no answer within {self._call_timeout.total}s") from None
        except aiohttp.ClientError as e:
            raise TransportError(f"{self._url}: {e or type(e).__name__}") from None
        try:
            event = wire.decode_agent_event(payload)
        except WireError as e:  # MalformedMessage or UnknownCall: the reply, not our call, is broken
            raise TransportError(f"{self._url}: unreadable reply: {e}") from None
        if isinstance(event, m.ErrorEvent):
            wire.raise_error(event)
        return event

    async def commands(self, agent_id: AgentId) -> AsyncIterator[m.AgentEvent]:
        body = wire.encode_agent_call(m.SubscribeAgent(agent_id))
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._connect_timeout, sock_read=None)
        reader = wire.RecordReader()
        try:
            async with self._http().post(self._url, data=body, headers=self._headers, timeout=timeout) as resp:
                if resp.status != 200:
                    _raise_reply(resp.status, resp.content_type, await resp.read(), self._url)
                async for chunk in resp.content.iter_any():
                    for event in self._decode_commands(reader, chunk):
                        if isinstance(event, m.ErrorEvent):
                            wire.raise_error(event)
                        yield event
        except TimeoutError:
            raise TransportError(f"{self._url}: command stream did not open within {self._connect_timeout}s") from None
        except aiohttp.ClientError as e:
            raise TransportError(f"{self._url}: command stream broke: {e or type(e).__name__}") from None

    def _decode_commands(self, reader: wire.RecordReader, chunk: bytes) -> list[m.AgentEvent]:
        try:
            return [wire.decode_agent_event(record) for record in reader.feed(chunk)]
        except (MalformedMessage, UnknownCall) as e:
            raise TransportError(f"{self._url}: unreadable command: {e}") from None

    async def fetch_module(self, sha256: str) -> bytes:
        url = self.master_url + MODULES_PATH + sha256
        try:
            async with self._http().get(url, headers=self._auth, timeout=self._module_timeout) as resp:
                if resp.content_length is not None and resp.content_length > _MAX_MODULE:
                    raise TransportError(f"{url}: module of {resp.content_length} bytes is too large")
                payload = await resp.read()
                if resp.status != 200:
                    _raise_reply(resp.status, resp.content_type, payload, url)
        except TimeoutError:
            raise TransportError(f"{url}: no module within {self._module_timeout.total}s") from None
        except aiohttp.ClientError as e:
            raise TransportError(f"{url}: {e or type(e).__name__}") from None
        if hashlib.sha256(payload).hexdigest() != sha256.lower():
            raise TransportError(f"{url}: the module's content does not match its sha256")
        return payload

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _raise_reply(status: int, content_type: str, payload: bytes, url: str) -> None:
    """Raise what a non-200 reply stands for: its typed error, else TransportError."""
    if content_type == PROTOBUF and payload:
        try:
            error = wire.decode_error(payload)
        except MalformedMessage:
            error = None
        if error is not None and (error.code != "CODE_UNSPECIFIED" or error.message):
            wire.raise_error(error)
    text = payload[:200].decode("utf-8", "replace").strip()
    raise TransportError(f"{url}: HTTP {status} {text}".rstrip())
