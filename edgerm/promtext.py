"""Prometheus text exposition (format 0.0.4): counters, gauges, histograms.

Role: the one renderer of ``/metrics`` shared by the master, the agent and
``edgerm-dataflow serve``. A process keeps :class:`Counter` and
:class:`Histogram` objects and updates them as things happen; at scrape
time :class:`Writer` turns them, plus gauges read on the spot, into text.

Rules:
- Updating is a dict lookup and an add (a histogram also walks its bucket
  list once): it runs on hot paths such as heartbeats, so nothing more.
- Labels are fixed per family (``labelnames``); a sample gives their values
  in order. Values are escaped here, so any string may be a label value.
- Every family carries ``# HELP`` and ``# TYPE``; counter names end in
  ``_total``; histogram buckets are cumulative and end with ``+Inf``.
- Families are bounded by their label values: callers only use label values
  from small sets (states, call types, transports) or from live objects
  (agents, frameworks) they forget when those go.
"""

from __future__ import annotations

import bisect
import functools
import math
from collections.abc import Iterable, Sequence

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Latency buckets (seconds) from 0.1 ms to 10 s.
LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
#: Buckets (seconds) for lateness and durations from 10 ms to 10 minutes.
SLOW_BUCKETS: tuple[float, ...] = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 600.0)

Labels = tuple[str, ...]


def escape(value: str) -> str:
    """A label value escaped for the text format."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


@functools.lru_cache(maxsize=65536)
def _label_text(names: tuple[str, ...], values: tuple[str, ...], extra: str = "") -> str:
    """``{a="x",b="y"}``: cached, because the same label sets come back on every scrape."""
    parts = [f'{n}="{escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def sample_line(name: str, labelnames: tuple[str, ...], labels: Labels, value: float) -> str:
    """One sample's line, for callers that cache the lines of series that rarely change
    (not through the label cache: per-object series would crowd it out)."""
    parts = [f'{n}="{escape(v)}"' for n, v in zip(labelnames, labels, strict=True)]
    return f"{name}{{{','.join(parts)}}} {fmt(value)}" if parts else f"{name} {fmt(value)}"


def fmt(value: float) -> str:
    """A sample value: integers without a fraction, infinities as the format spells them."""
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class Counter:
    """A monotonically increasing family of samples, by label values."""

    __slots__ = ("help", "labelnames", "name", "values")

    def __init__(self, name: str, help_text: str, labelnames: Sequence[str] = ()) -> None:
        if not name.endswith("_total"):
            raise ValueError(f"counter {name!r} must end in _total")
        self.name = name
        self.help = help_text
        self.labelnames = tuple(labelnames)
        self.values: dict[Labels, float] = {}

    def inc(self, *labels: str, by: float = 1.0) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + by

    def get(self, *labels: str) -> float:
        return self.values.get(labels, 0.0)

    def forget(self, *labels: str) -> None:
        """Drop one series (its object is gone: a removed agent, a torn-down framework)."""
        self.values.pop(labels, None)


class Histogram:
    """Observations in fixed cumulative buckets, by label values."""

    __slots__ = ("buckets", "help", "labelnames", "name", "series")

    def __init__(
        self, name: str, help_text: str, labelnames: Sequence[str] = (), buckets: Sequence[float] = LATENCY_BUCKETS
    ) -> None:
        if list(buckets) != sorted(buckets) or not buckets:
            raise ValueError("histogram buckets must be sorted and not empty")
        self.name = name
        self.help = help_text
        self.labelnames = tuple(labelnames)
        self.buckets = tuple(buckets)
        #: label values -> [count per bucket (not cumulative) ... , +Inf count, sum]
        self.series: dict[Labels, list[float]] = {}

    def observe(self, value: float, *labels: str) -> None:
        row = self.series.get(labels)
        if row is None:
            row = self.series[labels] = [0.0] * (len(self.buckets) + 2)
        row[bisect.bisect_left(self.buckets, value)] += 1
        row[-1] += value

    def count(self, *labels: str) -> int:
        row = self.series.get(labels)
        return 0 if row is None else int(sum(row[:-1]))


class Writer:
    """Collects families and renders the exposition text."""

    def __init__(self) -> None:
        self._lines: list[str] = []

    def _head(self, name: str, kind: str, help_text: str) -> None:
        self._lines.append(f"# HELP {name} {help_text}")
        self._lines.append(f"# TYPE {name} {kind}")

    def gauge(
        self, name: str, help_text: str, samples: Iterable[tuple[Labels, float]], labelnames: Sequence[str] = ()
    ) -> None:
        """A gauge family; ``samples`` are (label values, value)."""
        self._head(name, "gauge", help_text)
        names = tuple(labelnames)
        for labels, value in samples:
            self._lines.append(f"{name}{_label_text(names, labels)} {fmt(value)}")

    def gauge_lines(self, name: str, help_text: str, lines: Iterable[str]) -> None:
        """A gauge family from lines already rendered (:func:`sample_line`)."""
        self._head(name, "gauge", help_text)
        self._lines.extend(lines)

    def value(self, name: str, help_text: str, value: float) -> None:
        """A gauge without labels."""
        self.gauge(name, help_text, [((), value)])

    def counter(self, counter: Counter) -> None:
        self._head(counter.name, "counter", counter.help)
        for labels, value in sorted(counter.values.items()):
            self._lines.append(f"{counter.name}{_label_text(counter.labelnames, labels)} {fmt(value)}")

    def counter_samples(
        self, name: str, help_text: str, samples: Iterable[tuple[Labels, float]], labelnames: Sequence[str] = ()
    ) -> None:
        """A counter family whose values are kept elsewhere (e.g. by another module)."""
        self._head(name, "counter", help_text)
        names = tuple(labelnames)
        for labels, value in samples:
            self._lines.append(f"{name}{_label_text(names, labels)} {fmt(value)}")

    def histogram(self, histogram: Histogram) -> None:
        name, names = histogram.name, histogram.labelnames
        self._head(name, "histogram", histogram.help)
        for labels, row in sorted(histogram.series.items()):
            cumulative = 0.0
            for bound, n in zip((*histogram.buckets, math.inf), row[:-1], strict=True):
                cumulative += n
                le = 'le="' + ("+Inf" if math.isinf(bound) else repr(float(bound))) + '"'
                self._lines.append(f"{name}_bucket{_label_text(names, labels, le)} {fmt(cumulative)}")
            self._lines.append(f"{name}_sum{_label_text(names, labels)} {fmt(row[-1])}")
            self._lines.append(f"{name}_count{_label_text(names, labels)} {fmt(cumulative)}")

    def text(self) -> str:
        return "\n".join(self._lines) + "\n"


def process_figures(w: Writer, prefix: str, version: str) -> None:
    """CPU seconds, RSS, open fds, start time and build info of this process (psutil, ~0.1 ms)."""
    import platform

    import psutil
    from google.protobuf.internal import api_implementation

    proc = psutil.Process()
    with proc.oneshot():
        cpu = proc.cpu_times()
        rss = proc.memory_info().rss
        try:
            fds = float(proc.num_fds())
        except (AttributeError, psutil.Error):  # not on every platform
            fds = math.nan
        started = proc.create_time()
    w.counter_samples(
        f"{prefix}_process_cpu_seconds_total", "CPU time (user+system) of this process.", [((), cpu.user + cpu.system)]
    )
    w.value(f"{prefix}_process_resident_memory_bytes", "Resident set size of this process.", rss)
    w.value(f"{prefix}_process_open_fds", "Open file descriptors of this process.", fds)
    w.value(f"{prefix}_process_start_time_seconds", "Start time of this process (Unix time).", started)
    w.gauge(
        f"{prefix}_build_info",
        "Version and build of this process (always 1).",
        [((version, platform.python_version(), api_implementation.Type()), 1)],
        ("version", "python", "protobuf"),
    )
