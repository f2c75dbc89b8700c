"""Abuse limits per principal: calls per second, open streams, tasks, offers held.

Role: pure bookkeeping the transport adapters consult; time is an argument.
A limit reached raises :class:`~edgerm.errors.LimitExceeded` (HTTP 429, CoAP
4.29) for that principal only: each principal has its own bucket and
counters, so others keep being served.

Rules:
- Calls: a token bucket per principal (``calls_per_second`` refill,
  ``burst`` capacity). A refused call costs nothing and changes nothing.
- Streams: at most ``streams`` open event or command streams per principal.
- Tasks: an ACCEPT that would bring a principal's live tasks over ``tasks``
  is refused whole. Offers: a principal holding more than ``offers`` offers
  gets the excess declined for it (the adapter does this on the stream).
- 0 means "no limit" for every field. Buckets are kept for at most
  ``max_principals`` principals (least recently used dropped: it starts full
  again, which only ever favours the caller).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from edgerm.errors import LimitExceeded


@dataclass(frozen=True, slots=True)
class Limits:
    calls_per_second: float = 200.0
    burst: float = 400.0
    streams: int = 64
    tasks: int = 10_000
    offers: int = 1_000
    max_principals: int = 100_000

    def __post_init__(self) -> None:
        if min(self.calls_per_second, self.burst, self.streams, self.tasks, self.offers) < 0:
            raise ValueError("limits must be >= 0 (0: no limit)")
        if self.calls_per_second > 0 and self.burst < 1:
            raise ValueError("burst must be >= 1 when calls are rate limited")


class _Bucket:
    __slots__ = ("level", "stamp")

    def __init__(self, level: float, stamp: float) -> None:
        self.level = level
        self.stamp = stamp


class RateLimiter:
    """A token bucket per principal name."""

    def __init__(self, limits: Limits) -> None:
        self._rate = limits.calls_per_second
        self._burst = limits.burst
        self._max = limits.max_principals
        self._buckets: OrderedDict[str, _Bucket] = OrderedDict()

    def take(self, name: str, now: float) -> None:
        """Spend one call of ``name``'s budget; LimitExceeded when it is empty."""
        if self._rate <= 0:
            return
        bucket = self._buckets.get(name)
        if bucket is None:
            bucket = self._buckets[name] = _Bucket(self._burst, now)
            if len(self._buckets) > self._max:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(name)
            bucket.level = min(self._burst, bucket.level + (now - bucket.stamp) * self._rate)
            bucket.stamp = now
        if bucket.level < 1.0:
            retry = (1.0 - bucket.level) / self._rate
            raise LimitExceeded(f"{name}: over {self._rate:g} calls/s; retry in {retry:.2f}s")
        bucket.level -= 1.0


class StreamCounter:
    """Open streams per principal name."""

    def __init__(self, limits: Limits) -> None:
        self._max = limits.streams
        self._open: dict[str, int] = {}

    def open(self, name: str) -> None:
        """Count one more stream; LimitExceeded (nothing counted) past the limit."""
        count = self._open.get(name, 0)
        if self._max and count >= self._max:
            raise LimitExceeded(f"{name}: {count} streams open, the limit is {self._max}")
        self._open[name] = count + 1

    def close(self, name: str) -> None:
        count = self._open.get(name, 0) - 1
        if count > 0:
            self._open[name] = count
        else:
            self._open.pop(name, None)

    def count(self, name: str) -> int:
        return self._open.get(name, 0)


def check_tasks(name: str, live: int, launching: int, limits: Limits) -> None:
    """LimitExceeded when ``live + launching`` tasks would exceed the per-principal task limit."""
    if limits.tasks and launching and live + launching > limits.tasks:
        raise LimitExceeded(
            f"{name}: {live} tasks live, {launching} more would exceed the limit of {limits.tasks} tasks"
        )
