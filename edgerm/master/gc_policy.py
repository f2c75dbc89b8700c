"""The master process's garbage-collector policy: what the fleet keeps leaves the collector's scans.

Why: CPython's cyclic collector stops the whole process for as long as it
traverses the generations it collects. A master's long-lived objects grow
with the fleet (per agent: its records, its observation or push stream, its
transport state: about a hundred objects), and they sit in the young
generations until a pass promotes them. With 10,000 CoAP agents one middle
pass after the fleet joined stopped the event loop for 0.6 s
(bench/scale.py, ``master_inside.gc_pauses_gen1``), and a full pass later
would take longer: a heartbeat tail of a second, and a risk of false losses.

Policy (:class:`GcPolicy`):

- At start (after the application is built): ``gc.freeze()``, and larger
  thresholds (:data:`GC_THRESHOLDS`, or ``EDGERM_GC_THRESHOLDS``) so a
  request's short-lived objects die young instead of piling up in the old
  generations.
- Whenever the fleet (agents + tasks the core holds) has grown by
  ``growth`` (25 %) and ``minimum`` (1,000) since the last freeze, checked
  every ``interval``: a young-generation pass (cheap), then ``gc.freeze()``,
  which moves every tracked object into the permanent generation that no
  pass scans. So the objects scanned by any pass are those made since the
  last freeze: a quarter of the fleet at most, not the whole of it. Freezes
  happen O(log fleet) times while a fleet joins, and never in a steady state.
- The cost: cyclic garbage among the objects alive at a freeze is never
  collected (objects that die by reference count are freed as usual, frozen
  or not). With freezes only on growth, that is the few in-flight requests'
  cycles at each of a logarithmic number of moments.
- **A bounded young generation.** CPython starts a young pass when the
  tracked objects *allocated minus freed* exceed the first threshold, and
  frees of old objects count too. In a steady fleet every heartbeat frees
  about as much as it makes: an HTTP keep-alive connection keeps its last
  request's objects (aiohttp's request loop holds them until the next
  request), so each heartbeat replaces some 25 objects that live for an
  interval. The count stays low while the young generation fills with
  them: with 9,000 HTTP agents one young pass found 213,000 objects and
  stopped the loop for 182 ms (p999 heartbeat 205 ms, bench/scale.py).
  So every ``interval`` (0.25 s) the policy also looks at the young
  generation's size (``len(gc.get_objects(0))``, a copy of pointers) and
  collects it once it holds more than ``young_limit`` (5,000) objects: a
  few milliseconds each (mean 4.5 ms at 9,000 HTTP agents, 1.7 % of the
  master's time), p99 heartbeat 33-41 -> 13 ms, p999 205 -> 31 ms. Its
  survivors die in the middle generation by reference count; the middle
  threshold (1,000 young passes) makes a middle pass, which scans what is
  alive there (every agent's last request), rare: minutes apart.
- Every pause is timed into ``edgerm_gc_pause_seconds`` (by generation) and
  every freeze counted in ``edgerm_gc_freezes_total``, the policy's young
  passes in ``edgerm_gc_young_collections_total`` (:meth:`MasterMetrics.watch_gc`).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections.abc import Callable, Mapping

from edgerm.master.metrics import MasterMetrics

log = logging.getLogger(__name__)

GC_THRESHOLDS = (20_000, 1_000, 100)  # CPython's default is (700, 10, 10)
YOUNG_LIMIT = 5_000  # young objects that make a check collect the young generation
#: ``EDGERM_GC_THRESHOLDS="g0,g1,g2"`` overrides them (for measurements: bench/scale.py).
THRESHOLDS_ENV = "EDGERM_GC_THRESHOLDS"


def thresholds(environ: Mapping[str, str] = os.environ) -> tuple[int, int, int]:
    """The thresholds to set: :data:`GC_THRESHOLDS` unless the environment names three positive ints."""
    text = environ.get(THRESHOLDS_ENV, "")
    try:
        g0, g1, g2 = (int(x) for x in text.split(","))
    except ValueError:
        if text:
            log.warning("%s=%r is not three integers: using %s", THRESHOLDS_ENV, text, GC_THRESHOLDS)
        return GC_THRESHOLDS
    if min(g0, g1, g2) < 1:
        log.warning("%s=%r: thresholds must be positive: using %s", THRESHOLDS_ENV, text, GC_THRESHOLDS)
        return GC_THRESHOLDS
    return g0, g1, g2


class GcPolicy:
    """Freeze at start and whenever the fleet grew; time every collection."""

    def __init__(
        self,
        metrics: MasterMetrics,
        size: Callable[[], int],
        growth: float = 0.25,
        minimum: int = 1_000,
        interval: float = 0.25,
        young_limit: int = YOUNG_LIMIT,
    ) -> None:
        self._metrics = metrics
        self._size = size
        self.growth = growth
        self.minimum = minimum
        self.interval = interval
        self.young_limit = young_limit
        self.frozen_size = 0
        self._unwatch: Callable[[], None] | None = None
        self._thresholds_before: tuple[int, int, int] | None = None

    def install(self) -> None:
        self._thresholds_before = gc.get_threshold()
        gc.freeze()
        gc.set_threshold(*thresholds())
        self.frozen_size = self._size()
        self._unwatch = self._metrics.watch_gc()

    def uninstall(self) -> None:
        """Undo :meth:`install`: the frozen objects go back to the oldest generation, the thresholds to what
        they were (a process that ran a master in passing, a test or an embedding, is left as it was)."""
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        if self._thresholds_before is not None:
            gc.unfreeze()
            gc.set_threshold(*self._thresholds_before)
            self._thresholds_before = None

    def check(self) -> bool:
        """Freeze if the fleet grew enough since the last freeze; whether it did. Otherwise collect the
        young generation if it holds more than ``young_limit`` objects (see the module docstring)."""
        size = self._size()
        if size < self.frozen_size * (1 + self.growth) + self.minimum:
            if self.young_limit and len(gc.get_objects(0)) > self.young_limit:
                gc.collect(0)
                self._metrics.gc_young_collections += 1
            return False
        gc.collect(0)
        gc.freeze()
        log.debug("gc: froze %d objects (fleet %d -> %d)", gc.get_freeze_count(), self.frozen_size, size)
        self.frozen_size = size
        self._metrics.gc_freezes += 1
        return True

    async def run(self) -> None:
        """:meth:`check` every ``interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(self.interval)
            self.check()
