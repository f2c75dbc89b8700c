"""Quality conditions a DAG declares over its live figures (fog05's watcher).

Text form (what DAG files use), for the whole DAG or one operator::

    sink_rate below 5 for 3s          records/s arriving at the sinks, over the last 3 s
    p99_latency above 250ms for 5s    end-to-end latency at the sinks (arrival - reading time)
    error_rate above 0.5 for 2s       failed batches/s (of the operator, or of every operator)

A condition is *broken* when the figure measured over the trailing period is
beyond the threshold. Who switches: an operator's condition switches that
operator to its next fallback; a DAG's condition switches every operator
that has one.

Rules: ``sink_rate`` is a floor (``below``), the others are ceilings
(``above``); thresholds are finite and not negative; a period is between
:data:`MIN_PERIOD` and :data:`MAX_PERIOD` seconds. :func:`parse_quality`
raises ``ValueError`` naming the problem. Pure.
"""

from __future__ import annotations

import enum
import math
import re
from dataclasses import dataclass

MIN_PERIOD = 0.5
MAX_PERIOD = 3600.0


class Figure(enum.Enum):
    SINK_RATE = "sink_rate"
    P99_LATENCY = "p99_latency"
    ERROR_RATE = "error_rate"

    @property
    def floor(self) -> bool:
        """True when the condition is broken below the threshold."""
        return self is Figure.SINK_RATE

    @property
    def unit(self) -> str:
        return {"sink_rate": "rec/s", "p99_latency": "ms", "error_rate": "errors/s"}[self.value]


@dataclass(frozen=True, slots=True)
class Quality:
    """``figure`` below/above ``threshold`` over ``period`` seconds; ``operator`` ``None``: the whole DAG."""

    figure: Figure
    threshold: float  # rec/s, seconds (latency) or errors/s
    period: float
    operator: str | None = None

    def broken(self, value: float) -> bool:
        return value < self.threshold if self.figure.floor else value > self.threshold

    def describe(self, value: float) -> str:
        """The figure that broke it, for logs and status: ``sink rate 1.2 rec/s below 5 over 3s``."""
        word = "below" if self.figure.floor else "above"
        name = self.figure.value.replace("_", " ")
        if self.figure is Figure.P99_LATENCY:
            return f"{name} {value * 1000:.0f} ms {word} {self.threshold * 1000:g} ms over {self.period:g}s"
        return f"{name} {value:.2f} {self.figure.unit} {word} {self.threshold:g} over {self.period:g}s"

    def __str__(self) -> str:
        word = "below" if self.figure.floor else "above"
        value = f"{self.threshold * 1000:g}ms" if self.figure is Figure.P99_LATENCY else f"{self.threshold:g}"
        return f"{self.figure.value} {word} {value} for {self.period:g}s"


_FORM = re.compile(r"^\s*(\S+)\s+(\S+)\s+(\S+)\s+for\s+(\S+)\s*$")
_AMOUNT = re.compile(r"^([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)(ms|s|m|/s)?$")


def parse_quality(text: str, operator: str | None = None) -> Quality:
    """A condition from its text form; ``ValueError`` naming what is wrong."""
    m = _FORM.match(text)
    if m is None:
        raise ValueError(
            f"{text!r}: expected `<figure> below|above <value> for <period>`, e.g. `sink_rate below 5 for 3s`"
        )
    name, word, amount, period_text = m.groups()
    figure = next((f for f in Figure if f.value == name), None)
    if figure is None:
        raise ValueError(f"unknown figure {name!r} (known: {', '.join(f.value for f in Figure)})")
    if word not in ("below", "above"):
        raise ValueError(f"{word!r}: expected `below` or `above`")
    if (word == "below") != figure.floor:
        want = "below" if figure.floor else "above"
        raise ValueError(f"{figure.value} is {'a floor' if figure.floor else 'a ceiling'}: use `{want}`")
    threshold = _amount(amount, latency=figure is Figure.P99_LATENCY, what="the threshold")
    period = _amount(period_text, latency=True, what="the period")
    if not MIN_PERIOD <= period <= MAX_PERIOD:
        raise ValueError(f"the period {period_text!r} must be between {MIN_PERIOD:g}s and {MAX_PERIOD:g}s")
    return Quality(figure, threshold, period, operator)


def _amount(text: str, *, latency: bool, what: str) -> float:
    m = _AMOUNT.match(text)
    if m is None:
        raise ValueError(f"{what} {text!r} is not a number")
    value, unit = float(m.group(1)), m.group(2)
    if latency:
        if unit is None or unit == "/s":
            raise ValueError(f"{what} {text!r} needs a unit: ms, s or m")
        value *= {"ms": 0.001, "s": 1.0, "m": 60.0}[unit]
    elif unit not in (None, "/s"):
        raise ValueError(f"{what} {text!r} is a rate: give a number (per second)")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} {text!r} must be a finite number of at least 0")
    return value


__all__ = ["MAX_PERIOD", "MIN_PERIOD", "Figure", "Quality", "parse_quality"]
