"""The master's async service: runs the pure core and carries out its actions.

Role: :class:`MasterService` owns one :class:`~edgerm.master.state.MasterCore`,
the clock (``time.time()``) and every piece of I/O state the core must not
hold: one outgoing :class:`EventStream` per subscribed framework, one
:class:`CommandOutbox` per agent, the periodic tick task and the
:class:`ModuleStore` of inline WebAssembly modules.

Pipeline: a transport decodes a call -> :mod:`edgerm.master.handlers` turns it
into a core event -> :meth:`MasterService.handle` runs ``core.handle(event,
now)`` and executes the returned actions: ``SendEvent`` goes on the
framework's stream, ``LaunchTask``/``KillTask`` become ``LaunchCommand``/
``KillCommand`` in the agent's outbox, ``DropAgent`` closes that outbox.

Rules:
- Everything runs on the event loop and :meth:`MasterService.handle` never
  awaits, so a core event and the execution of its actions are atomic with
  respect to every other request; no locks are needed.
- A ``WireError`` from the core propagates to the caller unchanged and then
  nothing was executed (the core guarantees nothing changed either).
- Executing an action never blocks and never raises: a full framework stream
  is closed (the framework re-subscribes; the core re-sends what is not
  acknowledged), a full agent outbox drops its oldest command (the agent's
  heartbeat makes the core re-send a lost launch).
- ``start()``/``stop()`` own the only task this module creates; ``stop()``
  ends every stream and outbox so transports finish their responses.
- Durability (see edgerm/master/README.md): when the core returns a
  ``Persist``, its changes go to the registry writer (one thread, group
  commit) and the event's other actions wait in order behind it, as do the
  actions of every later event, until the write is durable. A handler that
  promises durability (ACCEPT, an agent's UPDATE) awaits :meth:`durable`
  before it answers. With the in-memory store nothing waits.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Protocol

from edgerm import messages as m
from edgerm.errors import NotSubscribed, Unavailable, UnknownAgent, WireError
from edgerm.ids import AgentId, FrameworkId, new_id
from edgerm.master.actions import DropAgent, KillTask, LaunchTask, MasterAction, Persist, SendEvent
from edgerm.master.eventlog import EventLog
from edgerm.master.events import FrameworkDisconnected, FrameworkSubscribed, MasterEvent, Tick
from edgerm.master.history import ClusterHistory
from edgerm.master.metrics import MasterMetrics
from edgerm.master.state import MasterConfig, MasterCore
from edgerm.master.store import MemoryStore, StateStore
from edgerm.master.tasks import TaskChange
from edgerm.master.writer import GroupWriter
from edgerm.model import FrameworkInfo, TaskInfo, WasmSpec

log = logging.getLogger(__name__)

#: A command pushed to an agent.
AgentCommand = m.LaunchCommand | m.KillCommand | m.SendLogsCommand

MiB = 1024 * 1024
DEFAULT_MODULE_STORE_BYTES = 256 * MiB


@dataclass(frozen=True, slots=True)
class ServiceOptions:
    """Tunables of the service (the core's own live in ``MasterConfig``)."""

    allocation_interval: float = 0.25  # seconds between Ticks (timeouts, expiry, retries)
    framework_heartbeat: float = 15.0  # seconds between HEARTBEAT events on a framework stream
    broker_url: str = ""  # MQTT broker named to agents at registration
    max_stream_events: int = 10_000  # queued events before a slow framework stream is closed
    max_agent_commands: int = 1_000  # queued commands per agent before the oldest is dropped
    module_store_bytes: int = DEFAULT_MODULE_STORE_BYTES  # total size of inline modules kept for download

    def __post_init__(self) -> None:
        if not self.allocation_interval > 0 or not self.framework_heartbeat > 0:
            raise ValueError("allocation_interval and framework_heartbeat must be > 0")
        if self.max_stream_events < 1 or self.max_agent_commands < 1 or self.module_store_bytes < 0:
            raise ValueError("queue and store limits must be positive")


# -- inline module store ------------------------------------------------------


class ModuleStore:
    """WebAssembly modules by sha256, least recently used evicted past ``max_bytes``.

    A module larger than the whole budget is not kept (:meth:`put` still
    returns its hash); agents then rely on the bytes in their LaunchCommand.
    """

    def __init__(
        self, max_bytes: int = DEFAULT_MODULE_STORE_BYTES, fallback: Callable[[str], bytes | None] | None = None
    ) -> None:
        self._max = max_bytes
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self._fallback = fallback  # the registry's modules on disk

    def put(self, module: bytes) -> str:
        digest = hashlib.sha256(module).hexdigest()
        if digest in self._items:
            self._items.move_to_end(digest)
            return digest
        if len(module) > self._max:
            log.warning("module %s (%d bytes) exceeds the module store; not kept", digest, len(module))
            return digest
        self._items[digest] = module
        self._bytes += len(module)
        while self._bytes > self._max:
            _, evicted = self._items.popitem(last=False)
            self._bytes -= len(evicted)
        return digest

    def get(self, sha256: str) -> bytes | None:
        module = self._items.get(sha256)
        if module is not None:
            self._items.move_to_end(sha256)
        elif self._fallback is not None:
            module = self._fallback(sha256)
        return module

    def __contains__(self, sha256: object) -> bool:
        return sha256 in self._items

    def __len__(self) -> int:
        return len(self._items)

    @property
    def total_bytes(self) -> int:
        return self._bytes


# -- waiting ------------------------------------------------------------------


async def _wait(waiter: asyncio.Future[None], deadline: float | None) -> None:
    """Wait for ``waiter`` or the loop-time ``deadline``, whichever comes first."""
    if deadline is None:
        await waiter
        return
    try:
        async with asyncio.timeout_at(deadline):
            await waiter
    except TimeoutError:
        pass


# -- framework event streams ---------------------------------------------------


class EventStream:
    """The events of one framework subscription, as an async iterator.

    The first item is ``Subscribed``; a ``Heartbeat`` is yielded every
    ``heartbeat_interval`` seconds. Iteration ends when the stream is closed
    (teardown, a newer subscription, overflow or shutdown). The transport
    must call :meth:`aclose` when its connection ends: if this is still the
    framework's current stream, the core hears ``FrameworkDisconnected``.
    """

    def __init__(
        self,
        framework_id: FrameworkId,
        stream_id: str,
        heartbeat_interval: float,
        on_close: Callable[[EventStream], None],
    ) -> None:
        self.framework_id = framework_id
        self.stream_id = stream_id
        self._heartbeat = heartbeat_interval
        self._on_close = on_close
        self._items: deque[m.SchedulerEvent] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self._reported = False
        self._next_heartbeat: float | None = None

    def push(self, event: m.SchedulerEvent) -> None:
        if not self._closed:
            self._items.append(event)
            self._wake()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """End the iteration; queued events are discarded."""
        self._closed = True
        self._items.clear()
        self._wake()

    async def aclose(self) -> None:
        """Called by the transport when its connection ends (idempotent)."""
        self.close()
        if not self._reported:
            self._reported = True
            self._on_close(self)

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> m.SchedulerEvent:
        loop = asyncio.get_running_loop()
        if self._next_heartbeat is None:
            self._next_heartbeat = loop.time() + self._heartbeat
        while True:
            if self._closed:
                raise StopAsyncIteration
            now = loop.time()
            if now >= self._next_heartbeat:
                self._next_heartbeat = now + self._heartbeat
                return m.Heartbeat()
            if self._items:
                return self._items.popleft()
            self._waiter = loop.create_future()
            try:
                await _wait(self._waiter, self._next_heartbeat)
            finally:
                self._waiter = None

    def ready(self, limit: int = 256) -> list[m.SchedulerEvent]:
        """The events queued right now, up to ``limit`` (taken: the transport writes them with the one it got)."""
        items = self._items
        out: list[m.SchedulerEvent] = []
        while items and len(out) < limit:
            out.append(items.popleft())
        return out

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


# -- agent command outboxes -------------------------------------------------------


class CommandOutbox:
    """Commands waiting for one agent's push channel.

    Lives from the first command or subscription until the agent is dropped.
    At most one :class:`CommandStream` drains it: a new one (the agent
    re-opened its channel) ends the previous one.
    """

    def __init__(self, agent_id: AgentId, limit: int) -> None:
        self.agent_id = agent_id
        self._limit = limit
        # None while empty: most agents' outboxes are empty most of the time, and a deque costs 770 bytes.
        self._items: deque[AgentCommand] | None = None
        self._consumer: CommandStream | None = None
        self._closed = False
        self.dropped = 0  # commands dropped because the outbox was full

    @property
    def pending(self) -> bool:
        return bool(self._items)

    def __len__(self) -> int:
        return len(self._items) if self._items is not None else 0

    @property
    def attached(self) -> bool:
        return self._consumer is not None

    def put(self, command: AgentCommand) -> None:
        if self._closed:
            return
        if self._items is None:
            self._items = deque()
        if len(self._items) >= self._limit:
            dropped = self._items.popleft()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:  # one line per burst, not one per command
                log.warning(
                    "agent %s outbox full: dropped %s (%d dropped so far)",
                    self.agent_id,
                    type(dropped).__name__,
                    self.dropped,
                )
        self._items.append(command)
        if self._consumer is not None:
            self._consumer._wake()

    def attach(self) -> CommandStream:
        if self._consumer is not None:
            self._consumer._detach()
        stream = CommandStream(self)
        self._consumer = stream
        return stream

    def close(self) -> None:
        self._closed = True
        self._items = None
        if self._consumer is not None:
            self._consumer._detach()

    def _next(self) -> AgentCommand | None:
        items = self._items
        if not items:
            return None
        command = items.popleft()
        if not items:
            self._items = None
        return command

    def _give_back(self, command: AgentCommand) -> None:
        if not self._closed:
            if self._items is None:
                self._items = deque()
            self._items.appendleft(command)
            if self._consumer is not None:
                self._consumer._wake()

    def _release(self, stream: CommandStream) -> None:
        if self._consumer is stream:
            self._consumer = None


class CommandStream:
    """An agent's push channel: an async iterator of Launch/Kill commands.

    Ends when the agent is dropped, the master stops, or the agent opens a
    newer channel. A command the transport failed to write goes back with
    :meth:`give_back`; the transport calls :meth:`close` when it is done.
    """

    def __init__(self, outbox: CommandOutbox) -> None:
        self._outbox = outbox
        self._waiter: asyncio.Future[None] | None = None
        self._listener: Callable[[], None] | None = None
        self._detached = False

    @property
    def agent_id(self) -> AgentId:
        return self._outbox.agent_id

    @property
    def detached(self) -> bool:
        """Whether the stream has ended (agent dropped, master stopping, a newer channel took the outbox)."""
        return self._detached

    def listen(self, callback: Callable[[], None] | None) -> None:
        """Call ``callback`` whenever commands arrive or the stream ends, for a consumer that takes them with
        :meth:`ready` instead of iterating (no task waits per agent). It runs inside whatever queued the
        command: it must only schedule work. None: no more calls."""
        self._listener = callback

    def __aiter__(self) -> CommandStream:
        return self

    async def __anext__(self) -> AgentCommand:
        while True:
            if self._detached:
                raise StopAsyncIteration
            command = self._outbox._next()
            if command is not None:
                return command
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await _wait(self._waiter, None)
            finally:
                self._waiter = None

    def ready(self, limit: int = 256) -> list[AgentCommand]:
        """The commands queued right now, up to ``limit`` (taken: the transport writes them with the one it got)."""
        out: list[AgentCommand] = []
        while len(out) < limit and not self._detached and (command := self._outbox._next()) is not None:
            out.append(command)
        return out

    def give_back(self, command: AgentCommand) -> None:
        """Requeue a command the transport could not deliver (sent again first)."""
        self._outbox._give_back(command)

    def close(self) -> None:
        self._detach()

    def _detach(self) -> None:
        self._detached = True
        self._outbox._release(self)
        self._wake()

    def _wake(self) -> None:
        if self._listener is not None:
            self._listener()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


# -- the service ----------------------------------------------------------------------


class Observer(Protocol):
    """Told of every core event the service ran: the read side (metrics, dashboard history).

    Called on the event loop right after the core returned, before the
    actions are carried out; it must only update its own bookkeeping.
    """

    def observe(
        self,
        event: MasterEvent,
        actions: Iterable[MasterAction],
        changes: Iterable[TaskChange],
        now: float,
        seconds: float,
    ) -> None: ...


class MasterService:
    """Runs the master core on the event loop and carries out its actions."""

    def __init__(
        self,
        config: MasterConfig | None = None,
        options: ServiceOptions | None = None,
        *,
        core: MasterCore | None = None,
        clock: Callable[[], float] = time.time,
        store: StateStore | None = None,
    ) -> None:
        self.config = config = config if config is not None else MasterConfig()
        self.options = options = options if options is not None else ServiceOptions()
        self.core = core if core is not None else MasterCore(config)
        self.eventlog = EventLog(self.core)  # one INFO line per lifecycle event (edgerm.master.eventlog)
        self.metrics = MasterMetrics()
        self.store: StateStore = store if store is not None else MemoryStore()
        self.modules = ModuleStore(options.module_store_bytes, self.store.module)
        self._writer: GroupWriter | None = None
        self._held: deque[tuple[int, list[MasterAction]]] = deque()  # actions waiting for their write
        self._durable_seq = 0
        self._write_failed: BaseException | None = None
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()
        #: What the core forgets but the dashboard shows (departed agents, status histories, dataflows).
        self.history = ClusterHistory()
        #: Told of every core event (metrics first); add read-side observers before start().
        self.observers: list[Observer] = [self.metrics, self.history]
        #: Applied to each task as it is sent to its agent (not as it is kept): a secure master adds the
        #: dataflow broker login to ``secret_env`` here (edgerm.master.broker_gate).
        self.on_launch: Callable[[TaskInfo], TaskInfo] | None = None
        self._clock = clock
        self._streams: dict[FrameworkId, EventStream] = {}
        self._outboxes: dict[AgentId, CommandOutbox] = {}
        self._overflowed: deque[EventStream] = deque()
        self._tick_task: asyncio.Task[None] | None = None
        self._started = False
        self._stopped = False

    # -- lifecycle -----------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._started and not self._stopped

    async def start(self) -> None:
        if self._started:
            raise RuntimeError("MasterService already started")
        registry = await asyncio.to_thread(self.store.load)
        self._started = True
        if self.store.durable:
            loop = asyncio.get_running_loop()
            self._writer = GroupWriter(self.store, loop, self._on_durable, self._on_write_failed)
        if registry:
            actions = self.core.restore(registry, self._clock())
            self._execute(actions)
            self.eventlog.record(None, actions)
        self._tick_task = asyncio.create_task(self._tick_loop(), name="edgerm-master-tick")

    async def stop(self) -> None:
        """Stop ticking, end every framework stream and agent channel (idempotent)."""
        if self._stopped:
            return
        self._stopped = True
        for stream in self._streams.values():
            stream.close()
        self._streams.clear()
        for outbox in self._outboxes.values():
            outbox.close()
        self._outboxes.clear()
        task, self._tick_task = self._tick_task, None
        if task is not None:
            task.cancel()
            await asyncio.wait([task])  # unlike ``await task``, a cancelled stop() still propagates
        writer, self._writer = self._writer, None
        if writer is not None:
            await asyncio.to_thread(writer.close)  # what was queued is written
        self._held.clear()
        for _, waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(Unavailable("the master is stopping"))
        self._waiters.clear()
        await asyncio.to_thread(self.store.close)

    async def _tick_loop(self) -> None:
        interval = self.options.allocation_interval
        loop = asyncio.get_running_loop()
        while True:
            asleep = loop.time()
            await asyncio.sleep(interval)
            self.metrics.lag(loop.time() - asleep - interval)
            try:
                self.handle(Tick())
            except WireError as e:
                log.warning("tick refused by the core: %s", e)
            except Exception:
                # Outermost boundary of this background task: a core bug must
                # not stop timeouts and allocation for the rest of the cluster.
                log.exception("master tick failed")

    # -- the core ----------------------------------------------------------------

    def handle(self, event: MasterEvent) -> list[MasterAction]:
        """Feed one event to the core and execute its actions.

        Raises the core's ``WireError`` (nothing changed) or ``Unavailable``
        when the service is not running.
        """
        if not self.running:
            raise Unavailable("the master is not running")
        actions = self._take(event, self._clock())
        self._execute(actions)
        self.eventlog.record(event, actions)
        return actions

    async def durable(self) -> None:
        """Wait until every change handled so far is durable (at once with the in-memory store).

        Raises ``Unavailable`` when the registry cannot be written (the caller
        must not promise what the master cannot keep)."""
        if self._write_failed is not None:
            raise Unavailable(f"the master cannot write its registry: {self._write_failed}")
        writer = self._writer
        if writer is None or self._durable_seq >= writer.submitted:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append((writer.submitted, waiter))
        await waiter

    def _on_durable(self, seq: int) -> None:
        self._durable_seq = seq
        while self._held and self._held[0][0] <= seq:
            _, actions = self._held.popleft()
            self._carry_out(actions)
        while self._waiters and self._waiters[0][0] <= seq:
            _, waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def _on_write_failed(self, seq: int, error: BaseException) -> None:
        log.error("the master cannot write its registry (%s): durable calls are refused until it restarts", error)
        self._write_failed = error
        self._held.clear()  # their effects were promised to nobody: they are not carried out
        for _, waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(Unavailable(f"the master cannot write its registry: {error}"))
        self._waiters.clear()

    def _take(self, event: MasterEvent, now: float) -> list[MasterAction]:
        """Run one event through the core and tell the observers (the one place the core is called)."""
        started = time.perf_counter()
        actions = self.core.handle(event, now)
        seconds = time.perf_counter() - started
        changes = self.core.take_task_changes()
        for observer in self.observers:
            observer.observe(event, actions, changes, now, seconds)
        return actions

    def _execute(self, actions: list[MasterAction]) -> None:
        """Carry out the core's actions, after their ``Persist`` (and every earlier one) is durable."""
        writer = self._writer
        persist = [a for a in actions if isinstance(a, Persist)]
        if writer is not None and persist:
            if self._write_failed is not None:
                return  # not durable, so not done: the caller's durable() raises UNAVAILABLE
            for p in persist:
                seq = writer.submit(p.changes)
            self._held.append((seq, actions))
        elif self._held:
            self._held[-1][1].extend(actions)  # keep the order: behind what already waits
        else:
            self._carry_out(actions)

    def _carry_out(self, actions: list[MasterAction]) -> None:
        for action in actions:
            if isinstance(action, SendEvent):
                self._send(action.framework_id, action.event)
            elif isinstance(action, LaunchTask):
                self._keep_module(action.task)
                task = self.on_launch(action.task) if self.on_launch is not None else action.task
                self._outbox(action.agent_id).put(m.LaunchCommand(task))
            elif isinstance(action, KillTask):
                if action.reason:
                    log.info(
                        "killing task %s on agent %s: %s",
                        action.task_id,
                        action.agent_id,
                        action.reason,
                        extra={"agent_id": action.agent_id, "task_id": action.task_id},
                    )
                self._outbox(action.agent_id).put(m.KillCommand(action.task_id, action.grace))
            elif isinstance(action, DropAgent):
                outbox = self._outboxes.pop(action.agent_id, None)
                if outbox is not None:
                    outbox.close()
        while self._overflowed:
            # Outside the loop above so the core is never re-entered mid-batch.
            stream = self._overflowed.popleft()
            if self.core.framework_known(stream.framework_id):
                disconnected = FrameworkDisconnected(stream.framework_id)
                self._execute(actions := self._take(disconnected, self._clock()))
                self.eventlog.record(disconnected, actions)

    def _send(self, framework_id: FrameworkId, event: m.SchedulerEvent) -> None:
        stream = self._streams.get(framework_id)
        if stream is None:
            # No stream: offers were rescinded on disconnect and updates stay
            # unacknowledged in the core, which re-sends them on re-subscribe.
            self.metrics.events_dropped += 1
            return
        if len(stream) >= self.options.max_stream_events:
            log.warning("framework %s reads too slowly: closing its event stream", framework_id)
            del self._streams[framework_id]
            stream.close()
            self._overflowed.append(stream)
            self.metrics.events_dropped += 1
            return
        stream.push(event)
        self.metrics.events_sent += 1

    def _outbox(self, agent_id: AgentId) -> CommandOutbox:
        outbox = self._outboxes.get(agent_id)
        if outbox is None:
            outbox = self._outboxes[agent_id] = CommandOutbox(agent_id, self.options.max_agent_commands)
        return outbox

    def _keep_module(self, task: TaskInfo) -> None:
        if isinstance(task.container, WasmSpec) and task.container.module:
            self.modules.put(task.container.module)

    # -- frameworks ------------------------------------------------------------------

    def open_stream(self, framework: FrameworkInfo) -> EventStream:
        """Subscribe a framework (a fresh id when it has none) and open its stream.

        A newer subscription replaces an open one: the old stream ends (the
        core drops the offers made on it when the framework re-subscribes).
        """
        if not self.running:
            raise Unavailable("the master is not running")
        fid = framework.id or FrameworkId(new_id())
        subscribed = FrameworkSubscribed(replace(framework, id=fid))
        actions = self._take(subscribed, self._clock())
        old = self._streams.pop(fid, None)
        if old is not None:
            old.close()  # its transport's aclose() no longer reports: it is not current
        stream = EventStream(fid, new_id(), self.options.framework_heartbeat, self._stream_closed)
        stream.push(m.Subscribed(fid, self.options.framework_heartbeat, self.config.master_id))
        self._streams[fid] = stream
        self._execute(actions)
        self.eventlog.record(subscribed, actions)
        return stream

    def check_stream(self, framework_id: FrameworkId, stream_id: str) -> None:
        """Raise ``NotSubscribed`` unless ``stream_id`` is the framework's open stream."""
        if not stream_id:
            raise NotSubscribed("missing stream id: send the Edgerm-Stream-Id received at SUBSCRIBE")
        stream = self._streams.get(framework_id)
        if stream is None:
            raise NotSubscribed(f"framework {framework_id!r} is not subscribed")
        if stream.stream_id != stream_id:
            raise NotSubscribed(f"stream id {stream_id!r} is not framework {framework_id!r}'s current stream")

    def close_stream(self, framework_id: FrameworkId) -> None:
        """End a framework's stream without telling the core (e.g. after Teardown)."""
        stream = self._streams.pop(framework_id, None)
        if stream is not None:
            stream.close()

    def _stream_closed(self, stream: EventStream) -> None:
        if self._streams.get(stream.framework_id) is not stream:
            return  # replaced, torn down, overflowed or stopped: already handled
        del self._streams[stream.framework_id]
        if self.running and self.core.framework_known(stream.framework_id):
            self.handle(FrameworkDisconnected(stream.framework_id))

    # -- agents ------------------------------------------------------------------------

    def agent_commands(self, agent_id: AgentId) -> CommandStream:
        """Attach the agent's push channel; raises ``UnknownAgent``/``Unavailable``."""
        if not self.running:
            raise Unavailable("the master is not running")
        if not self.core.agent_known(agent_id):
            raise UnknownAgent(f"agent {agent_id!r} is not registered")
        return self._outbox(agent_id).attach()

    def push_command(self, agent_id: AgentId, command: AgentCommand) -> None:
        """Queue a command the core does not order (a log request) for a registered agent."""
        if not self.running:
            raise Unavailable("the master is not running")
        if not self.core.agent_known(agent_id):
            raise UnknownAgent(f"agent {agent_id!r} is not registered")
        self._outbox(agent_id).put(command)

    def commands_pending(self, agent_id: AgentId) -> bool:
        outbox = self._outboxes.get(agent_id)
        return outbox is not None and outbox.pending

    # -- figures ---------------------------------------------------------------------------

    def now(self) -> float:
        """The service's clock (the time the core is given)."""
        return self._clock()

    def lost_recently(self) -> int:
        """Agents lost within the history's memory window."""
        return self.history.lost_recently(self._clock())

    def gauges(self) -> dict[str, float]:
        """The service's own gauges, by Prometheus metric name (see metrics.py)."""
        outboxes = self._outboxes.values()
        return {
            "edgerm_framework_streams": len(self._streams),
            "edgerm_agent_channels": sum(1 for o in outboxes if o.attached),
            "edgerm_agent_commands_queued": sum(len(o) for o in outboxes),
            "edgerm_framework_events_queued": sum(len(s) for s in self._streams.values()),
            "edgerm_modules_stored": len(self.modules),
            "edgerm_module_store_bytes": self.modules.total_bytes,
        }
