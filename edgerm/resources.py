"""The resource value type: scalars, ranges, sets and devices.

``Resources`` is immutable and supports ``+`` (union/sum), ``-`` (what is left)
and ``<=`` (fits within). Scalars are kept to three decimals, as Mesos does,
so repeated arithmetic never drifts. Devices are consumed whole unless they
are marked shared: subtracting a shared device leaves it in place.

Text form (used by configs, tests and the CLI)::

    cpus:1;mem:512;ports:[8000-8100,9000-9000];zones:{a,b};temperature:device(sim:sine)
    camera:device(/dev/video0,shared)

Units: ``cpus`` in cores, ``mem`` and ``disk`` in MiB (docs/resources.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

_PRECISION = 3
_EPSILON = 0.5 * 10**-_PRECISION


def _q(value: float) -> float:
    """Quantize a scalar to the fixed precision."""
    return round(value, _PRECISION) + 0.0


@dataclass(frozen=True, slots=True, order=True)
class Range:
    """A closed interval ``[begin, end]``."""

    begin: int
    end: int

    def __post_init__(self) -> None:
        if self.begin > self.end or self.begin < 0:
            raise ValueError(f"invalid range [{self.begin}-{self.end}]")

    def __len__(self) -> int:
        return self.end - self.begin + 1


@dataclass(frozen=True, slots=True)
class Device:
    """A named device's handle; shared devices are not consumed by tasks."""

    handle: str
    shared: bool = False


def _normalize(ranges: Iterable[Range]) -> tuple[Range, ...]:
    """Sort and merge overlapping or adjacent ranges."""
    out: list[Range] = []
    for r in sorted(ranges):
        if out and r.begin <= out[-1].end + 1:
            last = out[-1]
            out[-1] = Range(last.begin, max(last.end, r.end))
        else:
            out.append(r)
    return tuple(out)


def _subtract_ranges(have: tuple[Range, ...], take: tuple[Range, ...]) -> tuple[Range, ...]:
    out: list[Range] = []
    for r in have:
        pieces = [r]
        for t in take:
            nxt: list[Range] = []
            for p in pieces:
                if t.end < p.begin or t.begin > p.end:
                    nxt.append(p)
                    continue
                if p.begin < t.begin:
                    nxt.append(Range(p.begin, t.begin - 1))
                if t.end < p.end:
                    nxt.append(Range(t.end + 1, p.end))
            pieces = nxt
        out.extend(pieces)
    return _normalize(out)


def _ranges_within(inner: tuple[Range, ...], outer: tuple[Range, ...]) -> bool:
    return all(any(o.begin <= r.begin and r.end <= o.end for o in outer) for r in inner)


@dataclass(frozen=True, slots=True)
class Resources:
    """A bag of resources. Build with :meth:`parse` or the keyword fields."""

    scalars: Mapping[str, float] = field(default_factory=dict)
    ranges: Mapping[str, tuple[Range, ...]] = field(default_factory=dict)
    sets: Mapping[str, frozenset[str]] = field(default_factory=dict)
    devices: Mapping[str, Device] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Hot (the master adds and subtracts these per task): one pass, empty fields not rebuilt.
        scalars: dict[str, float] = {}
        for k, v in self.scalars.items():
            if v < -_EPSILON:
                raise ValueError("negative scalar resource")
            q = round(v, _PRECISION) + 0.0
            if q > 0:
                scalars[k] = q
        object.__setattr__(self, "scalars", scalars)
        ranges = {k: _normalize(v) for k, v in self.ranges.items() if v} if self.ranges else {}
        object.__setattr__(self, "ranges", ranges)
        object.__setattr__(self, "sets", {k: frozenset(v) for k, v in self.sets.items() if v} if self.sets else {})
        object.__setattr__(self, "devices", dict(self.devices) if self.devices else {})

    # -- constructors -------------------------------------------------------

    @classmethod
    def scalar(cls, **values: float) -> Resources:
        """``Resources.scalar(cpus=1, mem=512)``."""
        return cls(scalars=values)

    @classmethod
    def parse(cls, text: str) -> Resources:
        """Parse the text form; raise ``ValueError`` with the bad part named."""
        scalars: dict[str, float] = {}
        ranges: dict[str, tuple[Range, ...]] = {}
        sets: dict[str, frozenset[str]] = {}
        devices: dict[str, Device] = {}
        for part in (p.strip() for p in text.split(";")):
            if not part:
                continue
            name, sep, value = part.partition(":")
            name, value = name.strip(), value.strip()
            if not sep or not _NAME.fullmatch(name) or not value:
                raise ValueError(f"bad resource {part!r}: expected name:value")
            if value.startswith("["):
                ranges[name] = _parse_ranges(part, value)
            elif value.startswith("{"):
                if not value.endswith("}"):
                    raise ValueError(f"bad set in {part!r}")
                sets[name] = frozenset(i.strip() for i in value[1:-1].split(",") if i.strip())
            elif value.startswith("device(") and value.endswith(")"):
                handle, _, flag = value[7:-1].partition(",")
                if flag.strip() not in ("", "shared"):
                    raise ValueError(f"bad device flag in {part!r}")
                devices[name] = Device(handle.strip(), flag.strip() == "shared")
            else:
                try:
                    scalars[name] = float(value)
                except ValueError:
                    raise ValueError(f"bad scalar in {part!r}") from None
                if scalars[name] < 0:
                    raise ValueError(f"negative scalar in {part!r}")
        return cls(scalars, ranges, sets, devices)

    # -- queries ------------------------------------------------------------

    def get(self, name: str) -> float:
        """A scalar's amount, 0 if absent."""
        return self.scalars.get(name, 0.0)

    @property
    def cpus(self) -> float:
        return self.get("cpus")

    @property
    def mem(self) -> float:
        return self.get("mem")

    def is_empty(self) -> bool:
        return not (self.scalars or self.ranges or self.sets or self.devices)

    def names(self) -> Iterator[str]:
        yield from self.scalars
        yield from self.ranges
        yield from self.sets
        yield from self.devices

    def __le__(self, other: object) -> bool:
        """True when every resource here fits within ``other``."""
        if not isinstance(other, Resources):
            return NotImplemented
        return (
            all(v <= other.scalars.get(k, 0.0) + _EPSILON for k, v in self.scalars.items())
            and all(_ranges_within(v, other.ranges.get(k, ())) for k, v in self.ranges.items())
            and all(v <= other.sets.get(k, frozenset()) for k, v in self.sets.items())
            and all(other.devices.get(k) == v for k, v in self.devices.items())
        )

    def missing(self, other: Resources) -> list[str]:
        """Names of the resources here that do not fit within ``other``."""
        return [n for n in self.names() if not _pick(self, n) <= other]

    # -- arithmetic ---------------------------------------------------------

    def __add__(self, other: Resources) -> Resources:
        return total((self, other))

    def __sub__(self, other: Resources) -> Resources:
        if not (other.scalars or other.ranges or other.sets or other.devices):
            return self  # nothing taken (hot: an agent with no tasks or no offers)
        scalars = {k: v - other.scalars.get(k, 0.0) for k, v in self.scalars.items()}
        scalars = {k: v for k, v in scalars.items() if v > _EPSILON}
        ranges = {k: _subtract_ranges(v, other.ranges.get(k, ())) for k, v in self.ranges.items()}
        sets = {k: v - other.sets.get(k, frozenset()) for k, v in self.sets.items()}
        devices = {k: d for k, d in self.devices.items() if d.shared or other.devices.get(k) != d}
        return Resources(scalars, ranges, sets, devices)

    # -- text ---------------------------------------------------------------

    def __str__(self) -> str:
        parts = [f"{k}:{_fmt(v)}" for k, v in sorted(self.scalars.items())]
        parts += [f"{k}:[{','.join(f'{r.begin}-{r.end}' for r in v)}]" for k, v in sorted(self.ranges.items())]
        parts += [f"{k}:{{{','.join(sorted(v))}}}" for k, v in sorted(self.sets.items())]
        parts += [f"{k}:device({d.handle}{',shared' if d.shared else ''})" for k, d in sorted(self.devices.items())]
        return ";".join(parts)

    def __repr__(self) -> str:
        return f"Resources.parse({str(self)!r})"


EMPTY = Resources()


def total(bags: Iterable[Resources]) -> Resources:
    """The sum of many bags, built once (``a + b + ...`` builds and normalizes every partial sum)."""
    scalars: dict[str, float] = {}
    ranges: dict[str, tuple[Range, ...]] = {}
    sets: dict[str, frozenset[str]] = {}
    devices: dict[str, Device] = {}
    for bag in bags:
        for k, v in bag.scalars.items():
            scalars[k] = scalars.get(k, 0.0) + v
        for k, r in bag.ranges.items():
            ranges[k] = ranges.get(k, ()) + r
        for k, s in bag.sets.items():
            sets[k] = sets.get(k, frozenset()) | s
        if bag.devices:
            devices.update(bag.devices)
    if not (scalars or ranges or sets or devices):
        return EMPTY
    return Resources(scalars, ranges, sets, devices)


_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_RANGE = re.compile(r"\s*(\d+)\s*-\s*(\d+)\s*")


def _parse_ranges(part: str, value: str) -> tuple[Range, ...]:
    if not value.endswith("]"):
        raise ValueError(f"bad ranges in {part!r}")
    out = []
    for item in value[1:-1].split(","):
        m = _RANGE.fullmatch(item)
        if not m:
            raise ValueError(f"bad range {item!r} in {part!r}")
        out.append(Range(int(m.group(1)), int(m.group(2))))
    return tuple(out)


def _fmt(v: float) -> str:
    return str(int(v)) if v == int(v) else f"{v:g}"


def _pick(res: Resources, name: str) -> Resources:
    """The single resource ``name`` of ``res`` as its own bag."""
    return Resources(
        {name: res.scalars[name]} if name in res.scalars else {},
        {name: res.ranges[name]} if name in res.ranges else {},
        {name: res.sets[name]} if name in res.sets else {},
        {name: res.devices[name]} if name in res.devices else {},
    )
