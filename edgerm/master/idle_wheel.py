"""Idle timeouts for many connections with one timer: a wheel of ``SLOTS`` sets.

A timer per connection costs a ``TimerHandle`` (and a heap entry) for each, re-armed as it works.
Here a connection is in one set, the current slot's, from its last activity on. Every
``timeout / SLOTS`` seconds the wheel turns: the current slot becomes the newest old one, and the
oldest is expired, so a connection idle for ``timeout`` is expired within ``timeout * (1 + 1 /
SLOTS)``. Activity moves a connection only when the wheel has turned since the last time it did:
per request, one identity check. The timer runs only while the wheel holds something.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Protocol

SLOTS = 4


class Idles(Protocol):
    """What the wheel holds: its slot (only the wheel sets it) and what to do once idle."""

    idle_slot: set[Idles] | None

    def expire(self) -> None: ...


class IdleWheel:
    """Calls ``expire()`` on what has not been touched for ``timeout`` seconds (see the module docstring)."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._current: set[Idles] = set()
        self._old: deque[set[Idles]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def timeout(self) -> float:
        return self._timeout

    @timeout.setter
    def timeout(self, seconds: float) -> None:
        self._timeout = seconds
        if self._timer is not None and not self._closed:  # turn at the new pace from now on
            self._timer.cancel()
            self._timer = None
            self._schedule()

    def touch(self, item: Idles) -> None:
        """``item`` is active now."""
        slot = item.idle_slot
        current = self._current
        if slot is current:
            return
        if slot is not None:
            slot.discard(item)
        current.add(item)
        item.idle_slot = current
        if self._timer is None and not self._closed:
            self._schedule()

    def forget(self, item: Idles) -> None:
        """``item`` no longer idles out (it is gone, or it streams)."""
        slot = item.idle_slot
        if slot is not None:
            slot.discard(item)
            item.idle_slot = None

    def __len__(self) -> int:
        return len(self._current) + sum(len(s) for s in self._old)

    def close(self) -> None:
        """No more turns (the server stops)."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self._timeout / SLOTS, self._turn)

    def _turn(self) -> None:
        self._timer = None
        self._old.append(self._current)
        self._current = set()
        expired = self._old.popleft() if len(self._old) > SLOTS else set()
        for item in expired:
            item.idle_slot = None
            item.expire()
        if self._current or any(self._old):
            self._schedule()
        else:
            self._old.clear()
