"""Deadlines by key: what must be looked at by when, without walking every key.

The core uses one :class:`Deadlines` for agent liveness (an ACTIVE agent's
heartbeat deadline, an UNREACHABLE agent's unreachable timeout, a RECOVERING
agent's end of the settle period), so an idle Tick does work proportional to
the agents whose deadline passed, not to the fleet.

Rules:

- At most one live entry per key: :meth:`watch` with a deadline later than
  the one already held keeps the earlier one (the caller re-checks the key
  when it comes due and watches it again if it is not due after all). A
  deadline earlier than the held one replaces it; the old heap entry becomes
  stale and is skipped when it comes up. So a deadline that only moves later
  (an agent's heartbeat) costs nothing, and the heap holds about one entry
  per key (it is rebuilt if stale entries pile up).
- :meth:`due` returns, in deadline order, the keys whose deadline is strictly
  before ``now`` and forgets them; the caller decides what they mean and
  watches the ones that still live.
- Pure: no clock; ``now`` is passed in.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class Deadlines(Generic[K]):
    """A heap of (deadline, key) with one live entry per key."""

    __slots__ = ("_heap", "_when")

    def __init__(self) -> None:
        self._heap: list[tuple[float, K]] = []
        self._when: dict[K, float] = {}  # key -> its live entry's deadline

    def __len__(self) -> int:
        return len(self._when)

    def __contains__(self, key: object) -> bool:
        return key in self._when

    def when(self, key: K) -> float | None:
        """The deadline held for ``key`` (None: not watched)."""
        return self._when.get(key)

    def watch(self, key: K, deadline: float) -> None:
        """Look at ``key`` by ``deadline`` at the latest (an earlier deadline already held stays)."""
        held = self._when.get(key)
        if held is not None and held <= deadline:
            return
        self._when[key] = deadline
        heapq.heappush(self._heap, (deadline, key))
        if len(self._heap) > 2 * len(self._when) + 64:
            self._compact()

    def forget(self, key: K) -> None:
        self._when.pop(key, None)

    def due(self, now: float) -> list[K]:
        """The keys whose deadline is before ``now``, earliest first (no longer watched)."""
        heap, when = self._heap, self._when
        out: list[K] = []
        while heap and heap[0][0] < now:
            deadline, key = heapq.heappop(heap)
            if when.get(key) == deadline:
                del when[key]
                out.append(key)
        return out

    def _compact(self) -> None:
        self._heap = [(d, k) for k, d in self._when.items()]
        heapq.heapify(self._heap)
