"""The thread that reads the Docker engine's events stream and hands each event to the event loop.

One :class:`EventPump` per runtime. Rules:

- ``start()`` returns once the engine has accepted the subscription (so the
  caller can create or list containers knowing no event is missed), or
  raises the engine's error.
- Events reach the loop through ``call_soon_threadsafe``, in stream order;
  the loop-side callback never runs in this thread.
- If the stream ends while not stopping (the engine restarted, the
  connection dropped), the pump re-subscribes with back-off, replaying from
  the last event seen, and then calls ``on_resubscribed`` on the loop so the
  runtime can re-inspect what it may have missed.
- ``stop()`` closes the stream, which unblocks the reading thread, and joins it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from typing import Any

from edgerm.agent.docker_engine import Engine, EngineError, EngineEvent, Events
from edgerm.ids import AgentId

log = logging.getLogger(__name__)


class EventPump:
    """Reads the engine's events stream in its own thread and hands each event to the loop."""

    def __init__(
        self,
        engine: Engine,
        agent_id: AgentId,
        loop: asyncio.AbstractEventLoop,
        on_event: Callable[[EngineEvent], None],
        on_resubscribed: Callable[[], None],
    ) -> None:
        self._engine = engine
        self._agent_id = agent_id
        self._loop = loop
        self._on_event = on_event
        self._on_resubscribed = on_resubscribed
        self._stopping = threading.Event()
        self._subscribed = threading.Event()
        self._error: EngineError | None = None
        self._stream: Events | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"edgerm-docker-events-{agent_id}", daemon=True)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stopping.is_set()

    def start(self) -> None:
        """Blocking: return once subscribed; raise the engine's error if the first subscription fails."""
        self._thread.start()
        self._subscribed.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error

    def stop(self) -> None:
        """Blocking: close the stream (which unblocks the reader) and join the thread."""
        self._stopping.set()
        with self._lock:
            stream = self._stream
        if stream is not None:
            stream.close()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def _post(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            self._stopping.set()

    def _run(self) -> None:
        since: int | None = None
        first, delay = True, 0.2
        try:
            while not self._stopping.is_set():
                try:
                    stream = self._engine.events(self._agent_id, since)
                except EngineError as e:
                    if first:
                        self._error = e
                        return
                    log.warning("docker events: cannot re-subscribe (%s); retrying in %.1fs", e, delay)
                    self._stopping.wait(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                with self._lock:
                    if self._stopping.is_set():
                        stream.close()
                        return
                    self._stream = stream
                if first:
                    first = False
                    self._subscribed.set()
                else:
                    delay = 0.2
                    self._post(self._on_resubscribed)
                for event in stream:
                    since = event.time_nano
                    self._post(self._on_event, event)
                with self._lock:
                    self._stream = None
                if not self._stopping.is_set():
                    log.warning("docker events stream ended; re-subscribing")
        except Exception:  # outermost boundary of this thread: log, never die silently
            log.exception("docker events thread failed")
        finally:
            self._subscribed.set()
