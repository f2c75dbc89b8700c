"""How the agent talks to its master, whatever carries the bytes.

:class:`AgentTransport` is what :class:`~edgerm.agent.service.AgentService`
uses; ``HttpAgentTransport`` (edgerm.agent.http_transport) implements it
over aiohttp, and a CoAP transport will implement it the same way. Rules:

- ``call`` sends one :data:`~edgerm.messages.AgentCall` and returns the
  master's answer. A typed error reply is raised as its
  :class:`~edgerm.errors.WireError` subclass (``UnknownAgent``, ...); no
  answer at all (refused, dropped, timed out, an untyped reply) raises
  :class:`~edgerm.errors.TransportError`. Nothing else escapes.
- ``commands`` opens the push channel and yields LAUNCH and KILL commands
  as they come; it returns when the master closes the channel and raises
  as ``call`` does when it cannot be opened or breaks. The caller re-opens.
- ``fetch_module`` downloads a WebAssembly module the master holds, by
  content hash (for tasks that name a module by ``module_sha256`` only).
- A transport may set ``max_statuses_per_update`` (an int attribute): how
  many statuses the service batches into one UPDATE at most (default 64).
- Every wait has a timeout, except the open command channel, which is
  watched by the heartbeat's ``commands_pending`` safety net instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from edgerm.ids import AgentId
from edgerm.messages import AgentCall, AgentEvent


class AgentTransport(Protocol):
    """The agent's side of the agent API (docs/protocol.md)."""

    async def call(self, call: AgentCall) -> AgentEvent:
        """Send ``call``; return the reply (never an ``ErrorEvent``: that is raised)."""
        ...

    def commands(self, agent_id: AgentId) -> AsyncIterator[AgentEvent]:
        """The command channel: LAUNCH and KILL commands until the master closes it."""
        ...

    async def fetch_module(self, sha256: str) -> bytes:
        """The WebAssembly module with this content hash, from the master."""
        ...

    async def close(self) -> None:
        """Release connections; open command channels end."""
        ...
