"""``QualityWatch``: evaluates a DAG's quality conditions over the stream watch's figures.

Each condition (:class:`~edgerm.scheduler.quality.Quality`) is measured over
its trailing period: the sink rate as records that arrived at the sinks in
the period divided by its length, the error rate likewise from the failed
batches the instances report, the p99 latency over the sink records that
arrived in the period (no records: not measured; the sink rate condition
is for that). A condition is only judged once it has been *armed* for a
whole period: the runner re-arms every condition when the pipeline changes
(a move or a switch, an instance not running yet), so a fresh variant is
judged on its own figures only.

:meth:`QualityWatch.check` returns the conditions broken now, each with the
figure that broke it, and re-arms them: one breach per period at most.

Rules: pure; ``now`` is unix time (the clock records carry).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from edgerm.frameworks.dataflow.watch import StreamWatch
from edgerm.scheduler.dag import Dag
from edgerm.scheduler.quality import Figure, Quality


@dataclass(frozen=True, slots=True)
class Breach:
    """A condition broken: who switches (``None``: every operator with a fallback) and why."""

    quality: Quality
    value: float

    @property
    def operator(self) -> str | None:
        return self.quality.operator

    @property
    def figure(self) -> str:
        return self.quality.describe(self.value)


@dataclass(frozen=True, slots=True)
class _Sample:
    t: float
    sink: int
    errors: tuple[int, ...]  # per condition: the error total it watches


class QualityWatch:
    """Judges ``dag.quality`` over a :class:`StreamWatch`; see the module docstring."""

    def __init__(self, dag: Dag) -> None:
        self.conditions = dag.quality
        self._armed: list[float | None] = [None] * len(self.conditions)
        self._history = max((q.period for q in self.conditions), default=0.0) + 1.0
        self._samples: deque[_Sample] = deque()

    def rearm(self, now: float) -> None:
        """Judge every condition again only after a whole period from ``now``."""
        self._armed = [now] * len(self.conditions)

    def check(self, watch: StreamWatch, now: float) -> list[Breach]:
        """The conditions broken over their trailing period (each re-armed once broken)."""
        if not self.conditions:
            return []
        sample = _Sample(now, watch.sink_total, tuple(watch.errors_total(q.operator) for q in self.conditions))
        self._samples.append(sample)
        while self._samples and self._samples[0].t < now - self._history:
            self._samples.popleft()
        out: list[Breach] = []
        for i, q in enumerate(self.conditions):
            armed = self._armed[i]
            if armed is None:
                self._armed[i] = armed = now
            if now - armed < q.period:
                continue
            value = self._measure(q, i, watch, now, sample)
            if value is not None and q.broken(value):
                out.append(Breach(q, value))
                self._armed[i] = now
        return out

    def _measure(self, q: Quality, i: int, watch: StreamWatch, now: float, latest: _Sample) -> float | None:
        since = now - q.period
        if q.figure is Figure.P99_LATENCY:
            lat = sorted(watch.latencies_since(since))
            return lat[min(len(lat) - 1, int(0.99 * len(lat)))] if lat else None
        start = next((s for s in self._samples if s.t >= since), None)
        if start is None or latest.t - start.t < q.period * 0.5:
            return None  # not enough history yet
        span = latest.t - start.t
        if q.figure is Figure.SINK_RATE:
            return (latest.sink - start.sink) / span
        return (latest.errors[i] - start.errors[i]) / span


__all__ = ["Breach", "QualityWatch"]
