"""The master's handler table: every agent and scheduler call, implemented once.

Role: both transport adapters (HTTP in :mod:`edgerm.master.http`, CoAP in
:mod:`edgerm.master.coap`) decode bytes with :mod:`edgerm.wire`, call a
method here with an internal message from :mod:`edgerm.messages`, and
encode what comes back. Handlers
never see bytes, HTTP or CoAP.

Rules:
- A call that cannot be honoured raises a ``WireError`` and changes nothing;
  the adapter turns it into a typed reply and reports it with :meth:`failed`
  (so errors are counted once, whichever layer raised them).
- Calls are counted here, before they are handled, so the metrics are the
  same whichever transport carried them.
- The heartbeat is the hot path: no work beyond one core event and one reply.
- Durability: every other call is answered only once what it changed is in
  the registry (``MasterService.durable``): an ACCEPT's tasks, an UPDATE's
  status (the agent stops retrying when it is acknowledged), a REGISTER.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import replace

from edgerm import messages as m
from edgerm.errors import MalformedMessage, UnknownAgent, UnknownCall, UnknownTask, WireError
from edgerm.ids import AgentId, FrameworkId, TaskId, new_id
from edgerm.master import views
from edgerm.master.actions import KillTask
from edgerm.master.events import AgentRegistered, HeartbeatReceived, StatusReceived
from edgerm.master.logs import LogPiece, LogRequests
from edgerm.master.metrics import render_metrics, render_metrics_sliced
from edgerm.master.service import CommandStream, EventStream, MasterService
from edgerm.master.state import task_json
from edgerm.master.state_api import StateQuery, state_page

_AGENT_CALL_NAMES: dict[type, str] = {
    m.RegisterAgent: "REGISTER",
    m.AgentHeartbeat: "HEARTBEAT",
    m.StatusUpdate: "UPDATE",
    m.SubscribeAgent: "SUBSCRIBE",
    m.TaskLogs: "LOGS",
}
_SCHEDULER_CALL_NAMES: dict[type, str] = {
    m.Subscribe: "SUBSCRIBE",
    m.Teardown: "TEARDOWN",
    m.Accept: "ACCEPT",
    m.Decline: "DECLINE",
    m.Revive: "REVIVE",
    m.Suppress: "SUPPRESS",
    m.Kill: "KILL",
    m.Acknowledge: "ACKNOWLEDGE",
    m.Reconcile: "RECONCILE",
}


class Handlers:
    """The calls of the agent and scheduler APIs over one :class:`MasterService`."""

    def __init__(self, service: MasterService) -> None:
        self.service = service
        self._metrics = service.metrics
        #: Log requests waiting for their agents (GET /api/v1/tasks/{id}/logs).
        self.logs = LogRequests(service)

    # -- agent API ------------------------------------------------------------

    async def agent_call(self, call: m.AgentCall, transport: str = "http") -> m.AgentEvent:
        """REGISTER -> AgentRegistered, HEARTBEAT -> HeartbeatAck, UPDATE -> StatusAcknowledged.

        SUBSCRIBE opens a push channel and goes to :meth:`agent_commands`.
        ``transport`` (``http``, ``coap``) labels the latency figures.
        """
        if type(call) is m.AgentHeartbeat:
            return self.heartbeat(call, transport)
        started = time.perf_counter()
        kind = _AGENT_CALL_NAMES.get(type(call), "UNKNOWN")
        try:
            return await self._agent_call(call, kind, transport)
        finally:
            self._metrics.request("agent", kind, transport, time.perf_counter() - started)

    def heartbeat(self, call: m.AgentHeartbeat, transport: str = "http") -> m.HeartbeatAck:
        """HEARTBEAT -> HeartbeatAck, at once: a heartbeat never waits for the registry, so a transport
        may answer it inside the callback that received it (the CoAP adapter does)."""
        started = time.perf_counter()
        metrics = self._metrics
        try:
            metrics.call("agent", "HEARTBEAT")
            metrics.heartbeats += 1
            service = self.service
            service.handle(HeartbeatReceived(call.agent_id, call.task_ids))
            return m.HeartbeatAck(service.commands_pending(call.agent_id))
        finally:
            metrics.request("agent", "HEARTBEAT", transport, time.perf_counter() - started)

    async def _agent_call(self, call: m.AgentCall, kind: str, transport: str) -> m.AgentEvent:
        service = self.service
        self._metrics.call("agent", kind)
        if isinstance(call, m.StatusUpdate):
            statuses = []
            for status in call.statuses:  # all checked before any is taken: a bad batch changes nothing
                if status.agent_id != call.agent_id:
                    if status.agent_id:
                        raise MalformedMessage(f"agent {call.agent_id!r} reports a status of agent {status.agent_id!r}")
                    status = replace(status, agent_id=call.agent_id)  # frameworks always see the agent
                statuses.append(status)
            first, *rest = statuses
            service.handle(StatusReceived(call.agent_id, first, tuple(rest)))  # in order, as single UPDATEs
            await service.durable()
            return m.StatusAcknowledged(first.task_id, first.uuid, tuple((s.task_id, s.uuid) for s in rest))
        if isinstance(call, m.TaskLogs):
            if not service.core.agent_known(call.agent_id):
                raise UnknownAgent(f"agent {call.agent_id!r} is not registered")
            self.logs.received(call)
            return m.LogsReceived()
        if isinstance(call, m.RegisterAgent):
            self._metrics.agent_transport[call.agent.id] = transport
            service.handle(AgentRegistered(call.agent, call.tasks, call.instance_id))
            await service.durable()
            return m.AgentRegistered(call.agent.id, service.config.master_id, service.options.broker_url)
        raise UnknownCall("SUBSCRIBE opens the agent's command stream; it is not a request/reply call")

    def agent_commands(self, agent_id: AgentId) -> CommandStream:
        """The agent's push channel (Launch/Kill commands); raises ``UnknownAgent``."""
        self._metrics.call("agent", "SUBSCRIBE")
        return self.service.agent_commands(agent_id)

    # -- scheduler API --------------------------------------------------------------

    async def subscribe(self, sub: m.Subscribe) -> EventStream:
        """Open a framework's event stream: first ``Subscribed``, then its events.

        A framework without an id gets a fresh one. Closing the stream (the
        transport calls ``aclose``) tells the core the framework disconnected.
        """
        self._metrics.call("scheduler", "SUBSCRIBE")
        info = sub.framework
        if not info.id:
            info = replace(info, id=FrameworkId(new_id()))
        return self.service.open_stream(info)

    async def scheduler_call(self, call: m.SchedulerCall, stream_id: str) -> None:
        """Any scheduler call but SUBSCRIBE, on the framework's current stream."""
        kind = _SCHEDULER_CALL_NAMES.get(type(call), "UNKNOWN")
        self._metrics.call("scheduler", kind)
        started = time.perf_counter()
        try:
            await self._scheduler_call(call, stream_id)
        finally:
            self._metrics.request("scheduler", kind, "http", time.perf_counter() - started)

    async def _scheduler_call(self, call: m.SchedulerCall, stream_id: str) -> None:
        if isinstance(call, m.Subscribe):
            raise UnknownCall("SUBSCRIBE opens the framework's event stream; it is not a request/reply call")
        service = self.service
        service.check_stream(call.framework_id, stream_id)
        service.handle(call)
        if isinstance(call, m.Teardown):
            service.close_stream(call.framework_id)
        await service.durable()

    # -- operator API -----------------------------------------------------------------

    def kill_task(self, task_id: TaskId) -> dict[str, object]:
        """An operator's kill: the task's own framework's KILL, fed to the core on its behalf.

        When that framework is subscribed the core takes the kill as its own
        (KILLING, reason KILLED_BY_FRAMEWORK, re-sent until the agent answers).
        When it is not (disconnected, or torn down and the task still ending)
        the core would refuse a call of its, so the kill goes straight to the
        agent; its KILLED status then reaches the core like any other. Raises
        ``UnknownTask``; a task that already ended is answered as it is.
        Returns the task's JSON (as in the state) before the kill took effect.
        """
        self._metrics.call("operator", "KILL")
        service = self.service
        record = service.core.task(task_id)
        if record is None:
            raise UnknownTask(f"the master knows no task {task_id!r}")
        if record.live:
            if service.core.framework_active(record.framework_id):
                service.handle(m.Kill(record.framework_id, task_id, record.agent_id))
            else:
                service._execute([KillTask(record.agent_id, task_id, record.info.kill_grace)])
        return task_json(record)

    def operator_teardown(self, framework_id: FrameworkId) -> None:
        """TEARDOWN by an operator (the admin role): no stream id, any framework the core knows."""
        self._metrics.call("scheduler", "TEARDOWN")
        service = self.service
        service.handle(m.Teardown(framework_id))
        service.close_stream(framework_id)

    # -- errors, state, metrics, modules ------------------------------------------------

    def failed(self, error: WireError) -> None:
        """Count a typed error reply (called by the adapter that sent it)."""
        self._metrics.error(type(error).code)

    def state(self, query: StateQuery | None = None, scope: frozenset[FrameworkId] | None = None) -> dict[str, object]:
        """A page of the cluster state from the core's read views (:mod:`edgerm.master.state_api`), as a
        principal limited to ``scope`` may see it, plus the broker the master names to agents."""
        state = state_page(self.service.core, query or StateQuery(), scope)
        master = state["master"]
        if isinstance(master, dict):
            master["broker_url"] = self.service.options.broker_url
        return state

    def metrics_text(self) -> str:
        """Prometheus text exposition of the master's figures."""
        service = self.service
        return render_metrics(self._metrics, service.core, service.gauges(), service.now(), service.lost_recently())

    async def metrics_text_sliced(self) -> str:
        """:meth:`metrics_text`, yielding the event loop every :data:`~edgerm.master.metrics.SCRAPE_SLICE`
        agents (what ``/metrics`` serves)."""
        service = self.service
        return await render_metrics_sliced(
            self._metrics, service.core, service.gauges, service.now(), service.lost_recently
        )

    def task(self, task_id: TaskId) -> dict[str, object] | None:
        """One task with its status history (the dashboard's task view), or None if not remembered."""
        return views.task(self.service, self.service.now(), task_id)

    async def task_logs(self, task_id: TaskId, stream: str, offset: int, limit: int) -> LogPiece:
        """A piece of a task's stdout or stderr, asked of its agent (see :mod:`edgerm.master.logs`)."""
        self._metrics.call("operator", "LOGS")
        return await self.logs.fetch(task_id, stream, offset, limit)

    async def log_tails(self, task_id: TaskId, size: int = 8192, wait: float = 2.0) -> dict[str, object]:
        """The ends of a task's stdout and stderr for its page; ``logs_note`` says why one is missing."""

        async def tail(stream: str) -> LogPiece | WireError:
            try:
                return await self.logs.fetch(task_id, stream, -size, size, wait)
            except WireError as e:
                return e

        out: dict[str, object] = {}
        notes = []
        for stream, got in zip(m.LOG_STREAMS, await asyncio.gather(*(tail(s) for s in m.LOG_STREAMS)), strict=True):
            if isinstance(got, LogPiece):
                out[stream] = got.data.decode("utf-8", errors="replace")
                out[f"{stream}_end"] = got.offset + len(got.data)
            else:
                notes.append(f"{stream}: {got}")
        if notes:
            out["logs_note"] = "; ".join(dict.fromkeys(notes))
        return out

    def module(self, sha256: str) -> bytes | None:
        """An inline module by content hash, if the master still holds it."""
        return self.service.modules.get(sha256.lower())
