"""Group commit: one thread writes the registry, the event loop never waits on disk.

Role: :class:`GroupWriter` takes :class:`~edgerm.master.registry.Changes`
from the event loop (``submit`` returns a sequence number at once), writes
everything that queued up while the previous commit ran in ONE transaction
(:meth:`StateStore.apply`), and then tells the loop which sequence number
is durable (``on_durable(seq)``, called on the loop thread).

Rules:
- ``submit`` never blocks and never touches the disk.
- Commits are in submission order; ``on_durable(n)`` means every batch up
  to ``n`` is durable.
- A failed write is not retried (the disk is full or gone): the writer
  reports it with ``on_failed(seq, error)`` and stops; the service then
  answers durable calls with UNAVAILABLE instead of promising what it
  cannot keep.
- ``close`` writes what is queued, then ends the thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable

from edgerm.master.registry import Changes
from edgerm.master.store import StateStore

log = logging.getLogger(__name__)

MAX_GROUP = 512  # batches in one transaction


class GroupWriter:
    """One writer thread in front of a :class:`StateStore`."""

    def __init__(
        self,
        store: StateStore,
        loop: asyncio.AbstractEventLoop,
        on_durable: Callable[[int], None],
        on_failed: Callable[[int, BaseException], None],
    ) -> None:
        self._store = store
        self._loop = loop
        self._on_durable = on_durable
        self._on_failed = on_failed
        self._queue: queue.SimpleQueue[tuple[int, Changes] | None] = queue.SimpleQueue()
        self._seq = 0
        self.commits = 0  # transactions written (for metrics)
        self.batches = 0
        self._thread = threading.Thread(target=self._run, name="edgerm-registry-writer", daemon=True)
        self._thread.start()

    @property
    def submitted(self) -> int:
        return self._seq

    def submit(self, changes: Changes) -> int:
        self._seq += 1
        self._queue.put((self._seq, changes))
        return self._seq

    def close(self) -> None:
        """Write what is queued, then stop the thread (blocking; call from a thread or at exit)."""
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            item = self._queue.get()
            if item is None:
                break
            group = [item]
            while len(group) < MAX_GROUP:
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                group.append(more)
            last = group[-1][0]
            try:
                self._store.apply([changes for _, changes in group])
            except Exception as e:  # the disk is full or gone: tell the service, stop writing
                self._notify(self._on_failed, last, e)
                return
            self.commits += 1
            self.batches += len(group)
            self._notify(self._on_durable, last)

    def _notify(self, callback: Callable[..., None], *args: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: the master is gone, nobody waits
            self._loop.call_soon_threadsafe(callback, *args)
