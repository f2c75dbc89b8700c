"""Task logs through the master: ask the agent over its own channel, wait for its answer.

Role: an operator (the dashboard, ``edgerm logs``) asks
``GET /api/v1/tasks/{id}/logs``. :meth:`LogRequests.fetch` finds the task's
agent, pushes a ``SendLogsCommand`` into that agent's command outbox (the
HTTP push stream or the CoAP observation the agent itself opened, so it
works behind NAT), and waits for the agent's ``TaskLogs`` call carrying the
same request id (:meth:`LogRequests.received`).

Rules:
- Bounded: at most :data:`MAX_PENDING` requests wait at once, each at most
  ``timeout`` seconds; a piece is at most ``messages.MAX_LOG_CHUNK`` bytes.
- Typed errors, nothing changes: an unknown task is ``UnknownTask`` (404),
  a task whose agent is not registered is ``Unavailable`` (503), an agent
  that does not answer in time is ``AgentTimeout`` (504), an agent that has
  no output for the task is ``NotFound`` (404).
- An answer nobody waits for (late, or a forged request id) is dropped; an
  answer from another agent than the one asked is dropped too.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from edgerm import messages as m
from edgerm.errors import AgentTimeout, MalformedMessage, NotFound, Unavailable, UnknownTask
from edgerm.ids import AgentId, TaskId, new_id
from edgerm.master.service import MasterService

log = logging.getLogger(__name__)

MAX_PENDING = 256
DEFAULT_TIMEOUT = 5.0
DEFAULT_LIMIT = 64 * 1024


@dataclass(frozen=True, slots=True)
class LogPiece:
    """What the operator gets: ``data`` starts at ``offset``; the stream was ``size`` bytes long."""

    task_id: TaskId
    agent_id: AgentId
    stream: str
    offset: int
    data: bytes
    size: int

    def to_json(self) -> dict[str, object]:
        return {
            "task_id": self.task_id,
            "agent_id": self.agent_id,
            "stream": self.stream,
            "offset": self.offset,
            "length": len(self.data),
            "size": self.size,
            "data": self.data.decode("utf-8", errors="replace"),
        }


class LogRequests:
    """The log requests waiting for their agents' answers."""

    def __init__(self, service: MasterService, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._service = service
        self.timeout = timeout  # seconds to wait for an agent's answer
        self._waiting: dict[str, tuple[AgentId, asyncio.Future[m.TaskLogs]]] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    async def fetch(self, task_id: TaskId, stream: str, offset: int, limit: int, wait: float | None = None) -> LogPiece:
        if stream not in m.LOG_STREAMS:
            raise MalformedMessage(f"stream must be one of {', '.join(m.LOG_STREAMS)}, not {stream!r}")
        if not 0 < limit <= m.MAX_LOG_CHUNK:
            raise MalformedMessage(f"limit must be 1..{m.MAX_LOG_CHUNK} bytes, not {limit}")
        record = self._service.core.task(task_id)
        if record is None:
            raise UnknownTask(f"the master does not know a task {task_id!r}")
        agent_id = record.agent_id
        if not self._service.core.agent_known(agent_id):
            raise Unavailable(f"agent {agent_id} of task {task_id} is not connected; its output cannot be fetched")
        if len(self._waiting) >= MAX_PENDING:
            raise Unavailable(f"{MAX_PENDING} log requests are waiting already; try again shortly")
        request_id = new_id()
        future: asyncio.Future[m.TaskLogs] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = (agent_id, future)
        wait = self.timeout if wait is None else wait
        try:
            self._service.push_command(agent_id, m.SendLogsCommand(request_id, task_id, stream, offset, limit))
            async with asyncio.timeout(wait):
                piece = await future
        except TimeoutError:
            raise AgentTimeout(f"agent {agent_id} did not send the {stream} of {task_id} within {wait:g}s") from None
        finally:
            self._waiting.pop(request_id, None)
        if piece.error:
            raise NotFound(f"agent {agent_id}: {piece.error}")
        return LogPiece(task_id, agent_id, stream, piece.offset, piece.data[:limit], piece.size)

    def received(self, logs: m.TaskLogs) -> bool:
        """An agent's answer; False when nobody (or another agent's request) waits for it."""
        waiting = self._waiting.get(logs.request_id)
        if waiting is None or waiting[0] != logs.agent_id or waiting[1].done():
            log.debug("logs %s from agent %s: nobody waits for them", logs.request_id, logs.agent_id)
            return False
        waiting[1].set_result(logs)
        return True
