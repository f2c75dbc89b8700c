"""Docker image pull progress: from the engine's pull events to one line a person reads.

Role: the Docker runtime feeds every event of ``api.pull(..., stream=True,
decode=True)`` to :class:`PullProgress` and, at most once per
:class:`Throttle` interval, reports :meth:`PullProgress.summary` as the
message of a STARTING status (``TaskProgress``), so a framework, the CLI
and the dashboard see ``pulling nginx:1.25: 3/7 layers, 12.4 of 48.0 MB``
while a large image comes down.

Rules: pure (no I/O, no clock: time is an argument); tolerant of events
it does not know (they are ignored); an ``error`` event is not handled here
(the engine raises it). Bytes are the compressed download sizes the engine
reports; a layer whose total is not known yet counts for nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

#: Layer statuses that mean the layer is on this host.
_DONE = frozenset({"Pull complete", "Already exists"})
#: Statuses after which the layer's download is complete.
_DOWNLOADED = frozenset({"Download complete", "Verifying Checksum", "Extracting", "Pull complete"})
#: Statuses that name a layer (others with an id name the tag being pulled).
_LAYER = frozenset({"Pulling fs layer", "Waiting", "Downloading", "Retrying"}) | _DONE | _DOWNLOADED


@dataclass(slots=True)
class _Layer:
    current: int = 0
    total: int = 0
    done: bool = False


class PullProgress:
    """The state of one pull, built from its events."""

    def __init__(self, image: str) -> None:
        self.image = image
        self._layers: dict[str, _Layer] = {}
        self.events = 0

    def feed(self, event: Mapping[str, object]) -> None:
        self.events += 1
        status = event.get("status")
        layer_id = event.get("id")
        if not isinstance(status, str) or not isinstance(layer_id, str):
            return
        if status not in _LAYER and not status.startswith("Retrying"):
            return
        layer = self._layers.setdefault(layer_id, _Layer())
        detail = event.get("progressDetail")
        if status == "Downloading" and isinstance(detail, Mapping):
            current, total = detail.get("current"), detail.get("total")
            if isinstance(total, int) and total > 0:
                layer.total = total
            if isinstance(current, int) and current >= 0:
                layer.current = min(current, layer.total) if layer.total else current
        elif status in _DOWNLOADED and layer.total:
            layer.current = layer.total
        if status in _DONE:
            layer.done = True

    @property
    def layers(self) -> int:
        return len(self._layers)

    @property
    def layers_done(self) -> int:
        return sum(1 for layer in self._layers.values() if layer.done)

    @property
    def bytes_done(self) -> int:
        return sum(layer.current for layer in self._layers.values())

    @property
    def bytes_total(self) -> int:
        return sum(layer.total for layer in self._layers.values())

    def summary(self) -> str:
        """``pulling IMAGE: D/N layers, X of Y MB`` (or what is known so far)."""
        if not self._layers:
            return f"pulling {self.image}"
        text = f"pulling {self.image}: {self.layers_done}/{self.layers} layers"
        if self.bytes_total:
            text += f", {_mb(self.bytes_done)} of {_mb(self.bytes_total)} MB"
        return text


def _mb(n: int) -> str:
    return f"{n / 1_000_000:.1f}"


class Throttle:
    """Says yes at most once per ``interval`` seconds (the first time at once)."""

    def __init__(self, interval: float = 1.0) -> None:
        self.interval = interval
        self._last: float | None = None

    def ready(self, now: float) -> bool:
        if self._last is not None and now - self._last < self.interval:
            return False
        self._last = now
        return True
