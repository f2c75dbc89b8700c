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
- Memory per observing agent stays small (issue #13: a fleet of 10,000):
  nothing waits while nothing changes. The stream calls its window back when
  commands arrive or it ends (:meth:`CommandStream.listen`), and the window
  calls its observer back (:meth:`Observer.listen`), instead of a drain task
  and an observation task per agent, each suspended with its chain of
  coroutine frames (about 5 KiB an agent). A window's queue exists only
  while it holds commands.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import deque
from collections.abc import Callable
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


class Observer:
    """One open observation of a window; told (a callback) when the window changed or the observation must end."""

    __slots__ = ("_on_change", "ended")

    def __init__(self) -> None:
        self._on_change: Callable[[], None] | None = None
        #: Why this observation must end (set once): replaced, agent gone, master stopping.
        self.ended: WireError | None = None

    def listen(self, on_change: Callable[[], None] | None) -> None:
        """Call ``on_change`` (on the loop) from now on when the window changes or this observation ends
        (None: no more; the observation that listened is over)."""
        self._on_change = on_change

    def changed(self) -> None:
        if self._on_change is not None:
            self._on_change()

    def end(self, reason: WireError) -> None:
        if self.ended is None:
            self.ended = reason
        self.changed()


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
        self._observer: Observer | None = None
        self.closed = False
        self._scheduled = False  # a fill is due on the loop
        stream.listen(self._wake)
        self._fill()  # what already waits in the outbox goes into the first representation

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
            self._wake()  # room again: what waits in the outbox comes in
        return dropped

    # -- the drain and the end ---------------------------------------------------------------

    def _wake(self) -> None:
        """The stream has commands, or ended, or the window has room: fill it on the loop, once per turn."""
        if not self._scheduled and not self.closed:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._fill)

    def _fill(self) -> None:
        """Take what the stream holds, up to the window's capacity; tell the observer; end with the stream."""
        self._scheduled = False
        if self.closed:
            return
        room = self._capacity - len(self._entries)
        took = self._stream.ready(room) if room > 0 else []
        if took:
            entries = self._entries if isinstance(self._entries, deque) else deque()
            for command in took:
                number = self._channels.next_number(self.agent_id)
                sent = self._channels.by_hash(command)
                entries.append((number, wire.frame(wire.encode_agent_event(sent))))
                self._commands[number] = command  # given back as it came
                self._last = number
            self._entries = entries
            self._payload = None
        if self._stream.detached:
            # The stream ended on its own: agent dropped, master stopping,
            # or another channel (an HTTP SUBSCRIBE) took the outbox over.
            self.close(self._channels.why_ended(self.agent_id))
            return
        if took and self._observer is not None:
            self._observer.changed()

    def close(self, reason: WireError | None) -> None:
        """End the window: unconfirmed commands go back to the outbox, the observer is told."""
        if self.closed:
            return
        self.closed = True
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
            # A new window takes every command already waiting in the outbox, so the first response carries them.
            window = CommandWindow(agent_id, self._handlers.agent_commands(agent_id), self, self._capacity)
            if not window.closed:
                self._windows[agent_id] = window
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
        """End every window (master stopping): each observer gets its last response now."""
        for window in list(self._windows.values()):
            window.close(reason)

    def _closed(self, window: CommandWindow) -> None:
        if self._windows.get(window.agent_id) is window:
            del self._windows[window.agent_id]

    def __len__(self) -> int:
        return len(self._windows)
