"""What the framework sees of the data plane: instance figures, records per topic, losses.

:class:`StreamWatch` is fed the messages the monitor reads from the broker
(every instance's stats, and the micro-batches on the operators' out
topics) and the framework's moves; :meth:`StreamWatch.view` sums it up.

- **Rates.** Each instance publishes cumulative counters; a rate is the
  change between its last two reports. Counters restart with a new task, so
  they are kept per task id; totals (dropped, errors) add every task's last
  report, so what a moved instance dropped before it moved still counts.
- **Losses.** Records keep their ``src`` and ``seq`` through operators that
  do not aggregate. Per topic and source, a jump in ``seq`` is a *gap* of
  that many records. A gap is *lost in a move* when the readings on either
  side of it (their ``t``) bracket a move window: from the last sign of life
  of the instance that went away to ``grace`` seconds after its replacement
  reported RUNNING. Other gaps are counted apart as *skipped* (a filter
  dropping records makes those too). Each source is counted once, on the
  most downstream topic that still carries it, so one loss is not counted
  per edge. A ``seq`` going back with a newer ``t`` is a restarted source
  (or aggregate): tracking starts again; going back with an older or equal
  ``t`` is a duplicate (a move that overlapped briefly).
- **Sinks.** A console sink's records are counted as they arrive on its
  topic; a ``file:`` or HTTP sink (any of its variants) publishes nothing,
  so its records and rate are the ``out`` (records delivered) of its stats.
- **Latency.** For records on a sink's topic, arrival time minus ``t``
  (none for sinks that publish nothing).

Rules: pure; time is passed in (unix seconds, the clock records carry).
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field

from edgerm.dataflow_keys import Record
from edgerm.frameworks.dataflow.contract import CONSOLE, parse_batch, sink_delivery
from edgerm.scheduler.dag import Dag, Instance, OperatorKind

LATENCY_SAMPLES = 512
RECENT_SAMPLES = 4096  # timestamped latencies kept for quality conditions (p99 over a period)


@dataclass(frozen=True, slots=True)
class InstanceStats:
    """One instance's latest report, and its rates from the report before."""

    operator: str
    index: int
    agent: str
    task: str
    received: int
    emitted: int
    dropped: int
    batches: int
    errors: int
    t: float
    in_rate: float = 0.0
    out_rate: float = 0.0


@dataclass(frozen=True, slots=True)
class Gap:
    """Records missing from one source on one topic."""

    operator: str
    src: str
    missing: int
    after_t: float
    before_t: float
    in_move: bool


@dataclass(slots=True)
class _Track:
    last_seq: int
    last_t: float
    received: int = 1


@dataclass(slots=True)
class _Window:
    instance: Instance
    start: float
    end: float | None = None  # None: the replacement is not running yet


@dataclass(frozen=True, slots=True)
class OperatorFigures:
    """An operator's figures summed over its instances."""

    operator: str
    instances: int
    in_rate: float
    out_rate: float
    dropped: int
    errors: int
    observed: int  # records seen on its out topic by the framework


@dataclass(frozen=True, slots=True)
class WatchView:
    """Everything the status display and the HTTP API show of the data plane."""

    operators: tuple[OperatorFigures, ...]
    instances: tuple[InstanceStats, ...]
    sink_records: int
    sink_rate: float
    lost_in_moves: int
    skipped: int
    duplicates: int
    restarts: int
    malformed: int
    latency_p50: float | None
    latency_p99: float | None
    gaps: tuple[Gap, ...] = field(default=())

    def to_json(self) -> dict[str, object]:
        return {
            "operators": [
                {
                    "operator": o.operator,
                    "instances": o.instances,
                    "in_per_s": round(o.in_rate, 2),
                    "out_per_s": round(o.out_rate, 2),
                    "dropped": o.dropped,
                    "errors": o.errors,
                    "observed": o.observed,
                }
                for o in self.operators
            ],
            "sink_records": self.sink_records,
            "sink_per_s": round(self.sink_rate, 2),
            "lost_in_moves": self.lost_in_moves,
            "skipped": self.skipped,
            "duplicates": self.duplicates,
            "restarts": self.restarts,
            "malformed": self.malformed,
            "latency_p50_ms": None if self.latency_p50 is None else round(self.latency_p50 * 1000, 2),
            "latency_p99_ms": None if self.latency_p99 is None else round(self.latency_p99 * 1000, 2),
            "gaps": [
                {"operator": g.operator, "src": g.src, "missing": g.missing, "in_move": g.in_move} for g in self.gaps
            ],
        }


class StreamWatch:
    """Accumulates stats and records for one DAG; see the module docstring."""

    def __init__(self, dag: Dag, *, grace: float = 2.0, rate_window: float = 5.0) -> None:
        self._dag = dag
        self._grace = grace
        self._rate_window = rate_window
        self._depth = {name: i for i, name in enumerate(dag.order())}
        self._sinks = {op.name for op in dag.operators if op.kind is OperatorKind.SINK}
        self._latest: dict[tuple[str, int], InstanceStats] = {}
        self._per_task: dict[str, InstanceStats] = {}
        self._tracks: dict[tuple[str, str], _Track] = {}
        self._gaps: list[Gap] = []
        self._windows: list[_Window] = []
        self._observed: dict[str, int] = {}
        self._sink_arrivals: deque[tuple[float, int]] = deque()
        self._sink_records = 0
        self._reporting_sinks = {  # sinks that publish nothing (file:, HTTP): counted from their stats
            op.name
            for op in dag.operators
            if op.kind is OperatorKind.SINK and any(sink_delivery(v) != CONSOLE for v in op.variants)
        }
        self._latencies: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self._recent: deque[tuple[float, float]] = deque(maxlen=RECENT_SAMPLES)  # (arrival, latency)
        self._last_seen: dict[tuple[str, int], float] = {}
        self.duplicates = 0
        self.restarts = 0
        self.malformed = 0

    # -- inputs ---------------------------------------------------------------------

    def stats(self, operator: str, index: int, payload: bytes) -> InstanceStats | None:
        """Take one stats report; ``None`` (and counted as malformed) if it is not one."""
        try:
            data = json.loads(payload)
            got = InstanceStats(
                operator,
                index,
                str(data.get("agent", "")),
                str(data.get("task", "")),
                int(data.get("in", 0)),
                int(data.get("out", 0)),
                int(data.get("dropped", 0)),
                int(data.get("batches", 0)),
                int(data.get("errors", 0)),
                float(data.get("t", 0.0)),
            )
        except (ValueError, TypeError, AttributeError):
            self.malformed += 1
            return None
        prev = self._per_task.get(got.task)
        if prev is not None and got.t > prev.t:
            dt = got.t - prev.t
            got = _with_rates(got, (got.received - prev.received) / dt, (got.emitted - prev.emitted) / dt)
        elif prev is not None:
            got = _with_rates(got, prev.in_rate, prev.out_rate)
        self._per_task[got.task] = got
        self._latest[(operator, index)] = got
        self._last_seen[(operator, index)] = got.t
        return got

    def batch(self, operator: str, payload: bytes, now: float) -> list[Record]:
        """Take one micro-batch from ``operator``'s out topic; returns its records."""
        records, bad = parse_batch(payload)
        self.malformed += bad
        self._observed[operator] = self._observed.get(operator, 0) + len(records)
        for r in records:
            self._track(operator, r)
        if operator in self._sinks and operator not in self._reporting_sinks and records:
            self._sink_records += len(records)
            self._sink_arrivals.append((now, len(records)))
            lat = [max(0.0, now - r.t) for r in records]
            self._latencies.extend(lat)
            self._recent.extend((now, x) for x in lat)
        return records

    def move_started(self, instance: Instance, now: float) -> None:
        """An instance went away (lost, failed, or being switched); its records may be lost from now.

        The window opens at the instance's last report when that is earlier:
        records it took in after its last sign of life may be gone too.
        """
        last = self._last_seen.get((instance.operator, instance.replica), now)
        self._windows.append(_Window(instance, min(last, now)))

    def move_ended(self, instance: Instance, now: float) -> None:
        """The instance's replacement runs; the window closes ``grace`` seconds later."""
        for w in self._windows:
            if w.instance == instance and w.end is None:
                w.end = now + self._grace

    # -- figures for quality conditions ----------------------------------------------

    @property
    def sink_total(self) -> int:
        """Records that reached the sinks so far: seen on a console sink's topic, or, for a sink that
        publishes nothing (``file:``, HTTP), delivered as its stats report (``out``, every task's last)."""
        return self._sink_records + sum(s.emitted for s in self._per_task.values() if self._reporting_sink(s))

    def _reporting_sink(self, s: InstanceStats) -> bool:
        return s.operator in self._reporting_sinks

    def errors_total(self, operator: str | None = None) -> int:
        """Failed batches so far (every task's last report) of ``operator``, or of every operator."""
        return sum(s.errors for s in self._per_task.values() if operator is None or s.operator == operator)

    def reporting(self) -> set[str]:
        """Task ids whose instance published stats (so it is connected to the broker)."""
        return {s.task for s in self._latest.values()}

    def latencies_since(self, since: float) -> list[float]:
        """Sink latencies of the records that arrived at or after ``since`` (most recent samples only)."""
        return [lat for at, lat in self._recent if at >= since]

    # -- the record tracker -------------------------------------------------------------

    def _track(self, operator: str, r: Record) -> None:
        key = (operator, r.src)
        track = self._tracks.get(key)
        if track is None:
            self._tracks[key] = _Track(r.seq, r.t)
            return
        if r.seq > track.last_seq:
            missing = r.seq - track.last_seq - 1
            if missing:
                self._gaps.append(Gap(operator, r.src, missing, track.last_t, r.t, False))
            track.last_seq, track.last_t = r.seq, r.t
            track.received += 1
        elif r.t > track.last_t:
            self.restarts += 1
            track.last_seq, track.last_t = r.seq, r.t
            track.received += 1
        else:
            self.duplicates += 1

    def _in_move(self, gap: Gap) -> bool:
        for w in self._windows:
            end = w.end if w.end is not None else float("inf")
            if gap.after_t <= end and gap.before_t >= w.start:
                return True
        return False

    # -- output -----------------------------------------------------------------------

    def view(self, now: float) -> WatchView:
        """The figures as of ``now``."""
        while self._sink_arrivals and self._sink_arrivals[0][0] < now - self._rate_window:
            self._sink_arrivals.popleft()
        sink_rate = sum(n for _, n in self._sink_arrivals) / self._rate_window
        sink_rate += sum(s.out_rate for s in self._latest.values() if self._reporting_sink(s))
        deepest: dict[str, int] = {}
        for operator, src in self._tracks:
            depth = self._depth.get(operator, -1)
            if depth > deepest.get(src, -2):
                deepest[src] = depth
        counted = {(op, src) for op, src in self._tracks if self._depth.get(op, -1) == deepest[src]}
        gaps = tuple(Gap(g.operator, g.src, g.missing, g.after_t, g.before_t, self._in_move(g)) for g in self._gaps)
        lost = sum(g.missing for g in gaps if g.in_move and (g.operator, g.src) in counted)
        skipped = sum(g.missing for g in gaps if not g.in_move and (g.operator, g.src) in counted)
        operators = []
        for name in self._dag.order():
            insts = [s for (op, _), s in self._latest.items() if op == name]
            tasks = [s for s in self._per_task.values() if s.operator == name]
            operators.append(
                OperatorFigures(
                    name,
                    len(insts),
                    sum(s.in_rate for s in insts),
                    sum(s.out_rate for s in insts),
                    sum(s.dropped for s in tasks),
                    sum(s.errors for s in tasks),
                    self._observed.get(name, 0),
                )
            )
        lat = sorted(self._latencies)
        return WatchView(
            tuple(operators),
            tuple(sorted(self._latest.values(), key=lambda s: (self._depth.get(s.operator, 0), s.index))),
            self.sink_total,
            sink_rate,
            lost,
            skipped,
            self.duplicates,
            self.restarts,
            self.malformed,
            _quantile(lat, 0.5),
            _quantile(lat, 0.99),
            gaps,
        )


def _with_rates(s: InstanceStats, in_rate: float, out_rate: float) -> InstanceStats:
    return InstanceStats(
        s.operator, s.index, s.agent, s.task, s.received, s.emitted, s.dropped, s.batches, s.errors, s.t,
        in_rate, out_rate,
    )  # fmt: skip


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return values[min(len(values) - 1, int(q * len(values)))]
