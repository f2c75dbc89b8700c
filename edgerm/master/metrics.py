"""The master's Prometheus figures: counters kept by the handlers, text rendering.

Role: :class:`MasterMetrics` counts what passes through the handler table
(calls by API and type, typed errors by code, heartbeats) and through the
service (events sent to and dropped for frameworks). :func:`render_metrics`
joins them with gauges read from the core's snapshot (agents, frameworks,
tasks by state, offers outstanding) and the service's own gauges into the
Prometheus text exposition format (version 0.0.4).

Rules:
- Counting is a dict increment: it runs on every heartbeat, so nothing more.
- Gauges are computed only when ``/metrics`` is scraped.
- Every metric carries ``# HELP`` and ``# TYPE``; names end in ``_total`` for
  counters.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from edgerm.model import TaskState

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class MasterMetrics:
    """Counters of one master. Mutated on the event loop only."""

    __slots__ = ("calls", "errors", "events_dropped", "events_sent", "heartbeats")

    def __init__(self) -> None:
        self.calls: dict[tuple[str, str], int] = {}
        self.errors: dict[str, int] = {}
        self.heartbeats = 0
        self.events_sent = 0
        self.events_dropped = 0

    def call(self, api: str, kind: str) -> None:
        key = (api, kind)
        self.calls[key] = self.calls.get(key, 0) + 1

    def error(self, code: str) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1


_GAUGE_HELP = {
    "edgerm_framework_streams": "Framework event streams open.",
    "edgerm_agent_channels": "Agent command push channels attached.",
    "edgerm_agent_commands_queued": "Commands waiting in agent outboxes.",
    "edgerm_framework_events_queued": "Events waiting in framework streams.",
    "edgerm_modules_stored": "Inline WebAssembly modules kept for download.",
    "edgerm_module_store_bytes": "Bytes of inline WebAssembly modules kept for download.",
}


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{k}="{_escape(v)}"' for k, v in pairs)
    return "{" + inner + "}" if inner else ""


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def metric(self, name: str, kind: str, help_text: str, samples: Iterable[tuple[str, float]]) -> None:
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            self.lines.append(f"{name}{labels} {_fmt(value)}")

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"


def _items(snapshot: Mapping[str, object], key: str) -> list[Mapping[str, object]]:
    items = snapshot.get(key)
    if not isinstance(items, list):
        return []
    return [i for i in items if isinstance(i, Mapping)]


def cluster_figures(snapshot: Mapping[str, object]) -> tuple[int, int, dict[str, int], int]:
    """(agents, frameworks, tasks by state, offers outstanding) from a core snapshot."""
    agents = _items(snapshot, "agents")
    frameworks = _items(snapshot, "frameworks")
    by_state = {state.value: 0 for state in TaskState}
    for task in _items(snapshot, "tasks"):
        state = str(task.get("state", "UNKNOWN")).removeprefix("TASK_")
        by_state[state] = by_state.get(state, 0) + 1
    master = snapshot.get("master")
    outstanding = master.get("outstanding_offers") if isinstance(master, Mapping) else None
    if isinstance(outstanding, int):
        offers = outstanding
    else:  # count them per framework
        offers = 0
        for framework in frameworks:
            held = framework.get("offers")
            offers += len(held) if isinstance(held, list) else 0
    return len(agents), len(frameworks), by_state, offers


def render_metrics(metrics: MasterMetrics, snapshot: Mapping[str, object], gauges: Mapping[str, float]) -> str:
    """The Prometheus text exposition of every figure."""
    agents, frameworks, by_state, offers = cluster_figures(snapshot)
    w = _Writer()
    w.metric("edgerm_agents", "gauge", "Agents registered.", [("", agents)])
    w.metric("edgerm_frameworks", "gauge", "Frameworks known.", [("", frameworks)])
    w.metric(
        "edgerm_tasks",
        "gauge",
        "Tasks the master knows, by state.",
        [(_labels([("state", s)]), n) for s, n in sorted(by_state.items())],
    )
    w.metric("edgerm_offers_outstanding", "gauge", "Offers made and not yet answered.", [("", offers)])
    w.metric(
        "edgerm_calls_total",
        "counter",
        "Calls received, by API and call type.",
        [(_labels([("api", api), ("type", kind)]), n) for (api, kind), n in sorted(metrics.calls.items())],
    )
    w.metric(
        "edgerm_errors_total",
        "counter",
        "Typed error replies, by Error.Code.",
        [(_labels([("code", code)]), n) for code, n in sorted(metrics.errors.items())],
    )
    w.metric("edgerm_heartbeats_received_total", "counter", "Agent heartbeats received.", [("", metrics.heartbeats)])
    w.metric(
        "edgerm_framework_events_sent_total", "counter", "Events queued to frameworks.", [("", metrics.events_sent)]
    )
    w.metric(
        "edgerm_framework_events_dropped_total",
        "counter",
        "Events for frameworks without a (readable) stream.",
        [("", metrics.events_dropped)],
    )
    for name, value in sorted(gauges.items()):
        w.metric(name, "gauge", _GAUGE_HELP.get(name, name.replace("_", " ") + "."), [("", value)])
    return w.text()
