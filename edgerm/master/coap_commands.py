"""Command windows: what the CoAP resource ``/agents/{id}/commands`` represents.

Role: CoAP has no long-lived response to write commands into, as HTTP does.
Instead each observing agent has a :class:`CommandWindow`: the commands the
master drew from the agent's :class:`~edgerm.master.service.CommandStream`
that the agent has not yet confirmed. The CoAP adapter
(:mod:`edgerm.master.coap`) renders the window as the resource's
representation and sends it as a notification whenever it grows.

Delivery (docs/protocol.md, "Commands over CoAP") is at least once, and
exactly once into the agent's core while one master process lives:

1. While an observation is open the window drains the agent's command
   stream at once; each command gets the agent's next number in this master
   process (:attr:`CommandChannels.incarnation`, a random 32-bit value, and a
   per-agent sequence number that only grows, across windows too), so the
   numbers in a window are consecutive.
2. Every notification carries the whole window, oldest first, with the ETag
   ``Cursor(incarnation, last number)``, so a lost or coalesced notification
   costs nothing: the next one carries the same commands.
3. The agent processes the commands it has not seen (it remembers the last
   cursor it processed) and confirms with ``POST`` of that cursor; confirmed
   commands leave the window.
4. When the window's last observation ends (the agent cancelled it, answered
   a notification with RST, or did not acknowledge a CON notification), the
   unconfirmed commands go back to the agent's outbox in their order. The
   heartbeat's ``commands_pending`` then tells the agent to observe again,
   and the commands come back in the next window. LAUNCH and KILL are
   idempotent on the agent, so a command delivered twice does no harm.

Rules:
- One observation per agent: a newer one replaces the older, which is ended
  with UNAVAILABLE; the window (and its unconfirmed commands) carries over.
- A window holds at most ``capacity`` commands; past that it stops draining
  and the rest wait in the outbox (where ``commands_pending`` sees them).
- Inline WebAssembly modules the master's module store holds are replaced by
  their hash before they enter a window, so a module crosses the link once
  per agent (the agent fetches ``/modules/{sha256}`` unless it has it).
- Everything runs on the event loop; nothing here blocks or raises into the
  stream (a window that ends gives its commands back and goes quiet).
- Memory per observing agent stays small (issue #13: a fleet of 10,000): a
  window's wake-ups are :class:`Wake` flags (an ``asyncio.Event`` carries a
  deque of waiters, 860 bytes, for the one waiter there ever is), and its
  queue exists only while it holds commands.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import deque
from dataclasses import replace

from edgerm import messages as m
from edgerm import wire
from edgerm.coap_util import Cursor
from edgerm.errors import Unavailable, UnknownAgent, WireError
from edgerm.ids import AgentId
from edgerm.master.handlers import Handlers
from edgerm.master.service import AgentCommand, CommandStream
from edgerm.model import WasmSpec

log = logging.getLogger(__name__)

DEFAULT_WINDOW_CAPACITY = 256


class Wake:
    """A flag one coroutine waits on: ``asyncio.Event`` for a single waiter, without the Event's deque."""

    __slots__ = ("_flag", "_waiter")

    def __init__(self) -> None:
        self._flag = False
        self._waiter: asyncio.Future[None] | None = None

    def is_set(self) -> bool:
        return self._flag

    def set(self) -> None:
        self._flag = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def clear(self) -> None:
        self._flag = False

    async def wait(self) -> None:
        """Return once the flag is set (at once if it is); one waiter at a time."""
        if self._flag:
            return
        if self._waiter is not None:
            raise RuntimeError("Wake has a waiter already")
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None


class Observer:
    """One open observation of a window; woken when the window changes or ends."""

    __slots__ = ("ended", "wake")

    def __init__(self) -> None:
        self.wake = Wake()
        #: Why this observation must end (set once): replaced, agent gone, master stopping.
        self.ended: WireError | None = None

    def end(self, reason: WireError) -> None:
        if self.ended is None:
            self.ended = reason
        self.wake.set()


class CommandWindow:
    """The unconfirmed commands of one agent, drained from its command stream."""

    def __init__(
        self,
        agent_id: AgentId,
        stream: CommandStream,
        channels: CommandChannels,
        capacity: int,
    ) -> None:
        self.agent_id = agent_id
        self._stream = stream
        self._channels = channels
        self._capacity = capacity
        # (number, RecordIO frame of the AgentEvent); an empty tuple while empty (a deque costs 770 bytes)
        self._entries: deque[tuple[int, bytes]] | tuple[()] = ()
        self._commands: dict[int, AgentCommand] = {}
        self._last = channels.last_number(agent_id)
        self._payload: bytes | None = b""
        self._room = Wake()
        self._observer: Observer | None = None
        self.closed = False
        self._pump = asyncio.create_task(self._drain(), name=f"edgerm-coap-commands-{agent_id}")

    # -- what the resource shows -------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def cursor(self) -> Cursor:
        """The ETag: this master's incarnation and the number of the newest command."""
        return Cursor(self._channels.incarnation, self._last)

    def payload(self) -> bytes:
        """The representation: the window's commands, RecordIO-framed, oldest first."""
        if self._payload is None:
            self._payload = b"".join(frame for _, frame in self._entries)
        return self._payload

    # -- observers -------------------------------------------------------------------------

    def attach(self) -> Observer:
        """A new observation; an older one is told to end (it was replaced)."""
        observer = Observer()
        if self.closed:  # ended while the observation was being opened
            observer.end(self._channels.why_ended(self.agent_id))
            return observer
        old, self._observer = self._observer, observer
        if old is not None:
            old.end(Unavailable(f"agent {self.agent_id}: replaced by a newer observation"))
        return observer

    def detach(self, observer: Observer) -> None:
        """An observation ended; if it was the current one, the window ends too."""
        if self._observer is observer:
            self._observer = None
            self.close(None)

    # -- confirmation ----------------------------------------------------------------------

    def confirm(self, cursor: Cursor) -> int:
        """Drop every command numbered up to ``cursor`` (of this incarnation); how many went."""
        if cursor.incarnation != self._channels.incarnation:
            return 0
        dropped = 0
        entries = self._entries
        if not isinstance(entries, deque):
            return 0
        while entries and entries[0][0] <= cursor.seq:
            number, _ = entries.popleft()
            del self._commands[number]
            dropped += 1
        if not entries:
            self._entries = ()
        if dropped:
            self._payload = None
            self._room.set()
        return dropped

    # -- the drain and the end ---------------------------------------------------------------

    async def _drain(self) -> None:
        try:
            async for command in self._stream:
                number = self._channels.next_number(self.agent_id)
                sent = self._channels.by_hash(command)
                entries = self._entries if isinstance(self._entries, deque) else deque()
                entries.append((number, wire.frame(wire.encode_agent_event(sent))))
                self._entries = entries
                self._commands[number] = command  # given back as it came
                self._last = number
                self._payload = None
                if self._observer is not None:
                    self._observer.wake.set()
                while len(self._entries) >= self._capacity:
                    self._room.clear()
                    await self._room.wait()
        finally:
            if not self.closed:
                # The stream ended on its own: agent dropped, master stopping,
                # or another channel (an HTTP SUBSCRIBE) took the outbox over.
                self.close(self._channels.why_ended(self.agent_id))

    def close(self, reason: WireError | None) -> None:
        """End the window: unconfirmed commands go back to the outbox, the observer is told."""
        if self.closed:
            return
        self.closed = True
        self._pump.cancel()
        # Back to the front of the outbox in their order (give_back prepends).
        for number, _ in reversed(self._entries):
            self._stream.give_back(self._commands[number])
        if self._entries:
            log.debug("agent %s: %d unconfirmed command(s) back to the outbox", self.agent_id, len(self._entries))
        self._entries = ()
        self._commands.clear()
        self._payload = None
        self._stream.close()
        if self._observer is not None:
            self._observer.end(reason or Unavailable(f"agent {self.agent_id}: command channel closed"))
            self._observer = None
        self._channels._closed(self)

    async def wait_closed(self) -> None:
        """Wait until the drain task has finished (after :meth:`close`)."""
        await asyncio.wait([self._pump])


class CommandChannels:
    """Every agent's :class:`CommandWindow`, numbered within one master process."""

    def __init__(self, handlers: Handlers, capacity: int = DEFAULT_WINDOW_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self._handlers = handlers
        self._capacity = capacity
        self.incarnation = secrets.randbits(32)
        # Per agent, kept after its window closes: a later window must not
        # reuse a number the agent has already seen (it would skip that command).
        self._numbers: dict[AgentId, int] = {}
        self._windows: dict[AgentId, CommandWindow] = {}

    def last_number(self, agent_id: AgentId) -> int:
        return self._numbers.get(agent_id, 0)

    def next_number(self, agent_id: AgentId) -> int:
        number = self._numbers[agent_id] = self._numbers.get(agent_id, 0) + 1
        return number

    async def observe(self, agent_id: AgentId) -> tuple[CommandWindow, Observer]:
        """Open an observation of the agent's window (creating the window if needed).

        Raises ``UnknownAgent`` or ``Unavailable`` (from the handler table)
        when the agent has no command stream to drain.
        """
        window = self._windows.get(agent_id)
        if window is None:
            window = CommandWindow(agent_id, self._handlers.agent_commands(agent_id), self, self._capacity)
            self._windows[agent_id] = window
            # One turn of the loop: the drain task takes every command already
            # waiting in the outbox (it does not suspend while there are some),
            # so the first response carries them.
            await asyncio.sleep(0)
        return window, window.attach()

    def window(self, agent_id: AgentId) -> CommandWindow | None:
        return self._windows.get(agent_id)

    def require_agent(self, agent_id: AgentId) -> None:
        """Raise ``UnknownAgent`` (or ``Unavailable``) unless the master knows this agent."""
        service = self._handlers.service
        if not service.running:
            raise Unavailable("the master is not running")
        if not service.core.agent_known(agent_id):
            raise UnknownAgent(f"agent {agent_id!r} is not registered")

    def why_ended(self, agent_id: AgentId) -> WireError:
        try:
            self.require_agent(agent_id)
        except WireError as e:
            return e
        return Unavailable(f"agent {agent_id}: another channel took over its commands")

    def by_hash(self, command: AgentCommand) -> AgentCommand:
        """A LAUNCH whose inline module the master's store holds, with the module by hash."""
        if not isinstance(command, m.LaunchCommand):
            return command
        spec = command.task.container
        if not isinstance(spec, WasmSpec) or not spec.module:
            return command
        digest = spec.sha256
        if self._handlers.module(digest) is None:
            return command  # too large for the store: it has to travel inline
        return m.LaunchCommand(replace(command.task, container=replace(spec, module=b"", module_sha256=digest)))

    async def close_all(self, reason: WireError) -> None:
        """End every window (master stopping) and wait for their drain tasks."""
        windows = list(self._windows.values())
        for window in windows:
            window.close(reason)
        for window in windows:
            await window.wait_closed()

    def _closed(self, window: CommandWindow) -> None:
        if self._windows.get(window.agent_id) is window:
            del self._windows[window.agent_id]

    def __len__(self) -> int:
        return len(self._windows)
