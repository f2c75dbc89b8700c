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
- Every pause is timed into ``edgerm_gc_pause_seconds`` (by generation) and
  every freeze counted in ``edgerm_gc_freezes_total``
  (:meth:`MasterMetrics.watch_gc`).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
from collections.abc import Callable, Mapping

from edgerm.master.metrics import MasterMetrics

log = logging.getLogger(__name__)

GC_THRESHOLDS = (20_000, 50, 100)  # CPython's default is (700, 10, 10)
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
        interval: float = 1.0,
    ) -> None:
        self._metrics = metrics
        self._size = size
        self.growth = growth
        self.minimum = minimum
        self.interval = interval
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
        """Freeze if the fleet grew enough since the last freeze; whether it did."""
        size = self._size()
        if size < self.frozen_size * (1 + self.growth) + self.minimum:
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
