"""The master's Prometheus figures: counters kept as things happen, text at scrape time.

Role: :class:`MasterMetrics` is told what happens and counts it:

- the handler table counts calls by API and type, typed errors by code,
  heartbeats, request latency by transport, and which transport each agent
  registered over;
- the service hands it every core event with the actions the core returned,
  the task status changes the core journaled (``MasterCore.take_task_changes``)
  and how long the core took (:meth:`MasterMetrics.observe`), events sent to
  and dropped for frameworks, and the event loop's lag.

From those it keeps agent registrations and losses, heartbeat lateness,
task launches and outcomes by state and reason (counters, so they survive
the pruning of ended tasks), live tasks by state, offers sent, accepted,
declined, rescinded and expired per framework, and the core's latencies.

:func:`render_metrics` adds gauges read at scrape time from the core's read
views (:mod:`edgerm.master.readviews`: resources per agent and for the
cluster, agents by state, frameworks; the DRF dominant share per framework)
and the service's own gauges, and renders the Prometheus text exposition
(:mod:`edgerm.promtext`).

Rules:
- Observing is dict updates only: it runs on every heartbeat and every
  event. Nothing here re-reads a state snapshot or sums resources: cluster
  totals are the views' own. A scrape walks the agents once for the
  per-agent series, re-rendering only the lines of agents whose load or
  labels changed since the last scrape, and the frameworks once.
- Series of an object that is gone (a lost agent, a torn-down framework)
  are forgotten, so the families stay bounded by the live cluster.
- An offer the core drops without telling its framework (the framework
  disconnected or re-subscribed) is counted as rescinded.
- An ACCEPT without tasks counts its offers as declined (it is one, for the
  core).
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import edgerm
from edgerm import messages as m
from edgerm.ids import AgentId, FrameworkId, OfferId
from edgerm.master import events as ev
from edgerm.master.actions import DropAgent, MasterAction, SendEvent
from edgerm.master.readviews import AgentLoad, resource_samples
from edgerm.master.state import MasterCore
from edgerm.master.tasks import TaskChange
from edgerm.model import TaskState
from edgerm.promtext import (
    CONTENT_TYPE,
    LATENCY_BUCKETS,
    SLOW_BUCKETS,
    Counter,
    Histogram,
    Writer,
    process_figures,
    sample_line,
)
from edgerm.resources import Resources

__all__ = ["CONTENT_TYPE", "MasterMetrics", "render_metrics"]

#: An agent counts as silent after this many heartbeat intervals without one (lost after the core's factor).
SILENT_AFTER_INTERVALS = 1.5

_GAUGE_HELP = {
    "edgerm_framework_streams": "Framework event streams open.",
    "edgerm_agent_channels": "Agent command push channels attached.",
    "edgerm_agent_commands_queued": "Commands waiting in agent outboxes.",
    "edgerm_framework_events_queued": "Events waiting in framework streams.",
    "edgerm_modules_stored": "Inline WebAssembly modules kept for download.",
    "edgerm_module_store_bytes": "Bytes of inline WebAssembly modules kept for download.",
}

_LIVE_STATES = tuple(s.value for s in TaskState if not s.terminal)


@dataclass(slots=True)
class _AgentSeen:
    interval: float
    last_seen: float


class MasterMetrics:
    """Counters of one master. Mutated on the event loop only."""

    def __init__(self) -> None:
        self.calls: dict[tuple[str, str], int] = {}
        self.errors: dict[str, int] = {}
        self.heartbeats = 0
        self.events_sent = 0
        self.events_dropped = 0
        #: agent -> the transport it registered over (``http``, ``coap``); set by the handler table.
        self.agent_transport: dict[AgentId, str] = {}
        self._agents: dict[AgentId, _AgentSeen] = {}
        self._offers: dict[OfferId, tuple[FrameworkId, float]] = {}
        self._live: dict[str, int] = dict.fromkeys(_LIVE_STATES, 0)
        self.registrations = Counter(
            "edgerm_agent_registrations_total",
            "Agent registrations; kind=new for an agent the master did not hold, re for a re-registration.",
            ("kind",),
        )
        self.agents_lost = Counter("edgerm_agents_lost_total", "Agents declared lost after missing heartbeats.")
        self.lateness = Histogram(
            "edgerm_heartbeat_lateness_seconds",
            "How late each heartbeat arrived past the agent's interval (0 when on time), by transport.",
            ("transport",),
            SLOW_BUCKETS,
        )
        self.launched = Counter("edgerm_tasks_launched_total", "Tasks launched, by executor.", ("executor",))
        self.outcomes = Counter(
            "edgerm_task_outcomes_total", "Tasks that ended, by terminal state and reason.", ("state", "reason")
        )
        self.offers = Counter(
            "edgerm_offers_total",
            "Offers by framework and outcome: sent, accepted, declined, rescinded, expired.",
            ("framework_id", "outcome"),
        )
        self.framework_names: dict[FrameworkId, str] = {}
        self.subscriptions = Counter("edgerm_framework_subscriptions_total", "Framework SUBSCRIBE calls taken.")
        self.teardowns = Counter("edgerm_framework_teardowns_total", "Frameworks torn down.")
        self.core_seconds = Histogram(
            "edgerm_core_event_seconds",
            "Time the core took to handle one event (not counting carrying out its actions), by event.",
            ("event",),
        )
        self.allocation_seconds = Histogram(
            "edgerm_allocation_cycle_seconds",
            "Duration of one periodic allocation cycle (offer expiry, agent timeouts, allocation) in the core.",
        )
        self.requests = Histogram(
            "edgerm_request_seconds",
            "Latency of agent and scheduler calls in the handler table, by API, call type and transport.",
            ("api", "type", "transport"),
        )
        self.loop_lag = Histogram(
            "edgerm_event_loop_lag_seconds",
            "How much later than asked the master's periodic tick woke up.",
            (),
            LATENCY_BUCKETS,
        )
        self.last_loop_lag = 0.0
        self.gc_pauses = Histogram(
            "edgerm_gc_pause_seconds",
            "Pauses of the cyclic garbage collector (the whole process stops), by generation; "
            "counted once the entry point installs watch_gc().",
            ("generation",),
        )
        self._gc_started = (0.0, 0.0)  # wall and this thread's CPU time at the start of a pass
        #: CPU seconds of the passes by generation (thread time: unlike the pauses, not inflated when
        #: other processes take the cores)
        self.gc_cpu: dict[str, float] = {}
        self.gc_freezes = 0  # gc.freeze() calls by the GC policy (edgerm.master.gc_policy)
        self.gc_young_collections = 0  # young-generation passes the GC policy ran (edgerm.master.gc_policy)
        #: per agent: its load row, its rendered resource lines, its info labels and line (see render_metrics)
        self.agent_lines: dict[AgentId, tuple[AgentLoad, str, tuple[str, ...], str]] = {}

    # -- from the handler table --------------------------------------------------

    def call(self, api: str, kind: str) -> None:
        key = (api, kind)
        self.calls[key] = self.calls.get(key, 0) + 1

    def error(self, code: str) -> None:
        self.errors[code] = self.errors.get(code, 0) + 1

    def request(self, api: str, kind: str, transport: str, seconds: float) -> None:
        self.requests.observe(seconds, api, kind, transport)

    def lag(self, seconds: float) -> None:
        self.last_loop_lag = max(0.0, seconds)
        self.loop_lag.observe(self.last_loop_lag)

    def watch_gc(self) -> Callable[[], None]:
        """Time every collection (``gc.callbacks``) into ``gc_pauses``; returns the function that stops it.

        A full collection stops the event loop for as long as it scans every tracked object, which
        with a large fleet is the longest stall the master has: this makes it visible."""

        def callback(phase: str, info: dict[str, int]) -> None:
            if phase == "start":
                self._gc_started = (time.perf_counter(), time.thread_time())
            else:
                wall, cpu = self._gc_started
                generation = str(info["generation"])
                self.gc_pauses.observe(time.perf_counter() - wall, generation)
                self.gc_cpu[generation] = self.gc_cpu.get(generation, 0.0) + time.thread_time() - cpu

        gc.callbacks.append(callback)
        return lambda: gc.callbacks.remove(callback)

    # -- from the service --------------------------------------------------------------

    def observe(
        self,
        event: ev.MasterEvent,
        actions: Iterable[MasterAction],
        changes: Iterable[TaskChange],
        now: float,
        seconds: float,
    ) -> None:
        """One core event taken in: what it was, what the core ordered, which tasks changed."""
        kind = type(event).__name__
        self.core_seconds.observe(seconds, kind)
        match event:
            case ev.Tick():
                self.allocation_seconds.observe(seconds)
            case ev.HeartbeatReceived():
                seen = self._agents.get(event.agent_id)
                if seen is not None:
                    late = max(0.0, now - seen.last_seen - seen.interval)
                    self.lateness.observe(late, self.agent_transport.get(event.agent_id, "http"))
                    seen.last_seen = now
            case ev.AgentRegistered():
                agent = event.agent
                self.registrations.inc("re" if agent.id in self._agents else "new")
                interval = agent.heartbeat_interval if agent.heartbeat_interval > 0 else 1.0
                self._agents[agent.id] = _AgentSeen(interval, now)
            case ev.FrameworkSubscribed():
                self.subscriptions.inc()
                self.framework_names[event.framework.id] = event.framework.name
                self._drop_offers_of(event.framework.id)
            case ev.FrameworkDisconnected():
                self._drop_offers_of(event.framework_id)
            case m.Accept():
                outcome = "accepted" if event.tasks else "declined"
                for offer_id in event.offer_ids:
                    if self._offers.pop(offer_id, None) is not None:
                        self.offers.inc(event.framework_id, outcome)
                for task in event.tasks:
                    self.launched.inc(task.executor)
            case m.Decline():
                for offer_id in event.offer_ids:
                    if self._offers.pop(offer_id, None) is not None:
                        self.offers.inc(event.framework_id, "declined")
            case m.Teardown():
                self.teardowns.inc()
                self._drop_offers_of(event.framework_id, count=False)
                for outcome in ("sent", "accepted", "declined", "rescinded", "expired"):
                    self.offers.forget(event.framework_id, outcome)
                self.framework_names.pop(event.framework_id, None)
            case _:
                pass
        expiring = isinstance(event, ev.Tick)
        for action in actions:
            if isinstance(action, SendEvent):
                self._event_sent(action.framework_id, action.event, now, expiring)
            elif isinstance(action, DropAgent):
                self.agents_lost.inc()
                self._agents.pop(action.agent_id, None)
                self.agent_transport.pop(action.agent_id, None)
        for change in changes:
            self._task_changed(change)

    def _event_sent(self, framework_id: FrameworkId, event: m.SchedulerEvent, now: float, expiring: bool) -> None:
        if isinstance(event, m.Offers):
            for offer in event.offers:
                self._offers[offer.id] = (framework_id, offer.expires_at)
                self.offers.inc(framework_id, "sent")
        elif isinstance(event, m.Rescind):
            held = self._offers.pop(event.offer_id, None)
            if held is not None:
                expired = expiring and now >= held[1]
                self.offers.inc(framework_id, "expired" if expired else "rescinded")

    def _drop_offers_of(self, framework_id: FrameworkId, count: bool = True) -> None:
        gone = [o for o, (fid, _) in self._offers.items() if fid == framework_id]
        for offer_id in gone:
            del self._offers[offer_id]
            if count:
                self.offers.inc(framework_id, "rescinded")

    def _task_changed(self, change: TaskChange) -> None:
        before = change.before
        after = change.after.status
        if before is not None and not before.state.terminal:
            self._live[before.state.value] -= 1
        if after.state.terminal:
            if before is None or not before.state.terminal:
                self.outcomes.inc(after.state.value, after.reason.value)
        else:
            self._live[after.state.value] = self._live.get(after.state.value, 0) + 1

    def offers_outstanding(self) -> int:
        """Offers sent and not yet accepted, declined, rescinded or expired."""
        return len(self._offers)

    def live_tasks(self) -> dict[str, int]:
        """Live tasks by state, kept from the core's status changes."""
        return dict(self._live)


# -- rendering ---------------------------------------------------------------------------

_RESOURCE_LABELS = ("agent_id", "resource", "kind")
_INFO_LABELS = ("agent_id", "hostname", "transport", "state")


def _agent_lines(aid: AgentId, load: AgentLoad) -> str:
    lines = []
    for kind, res in (("total", load.total), ("used", load.used), ("offered", load.offered)):
        for name, amount in resource_samples(res):
            lines.append(sample_line("edgerm_agent_resources", _RESOURCE_LABELS, (aid, name, kind), amount))
    return "\n".join(lines)


class AgentPass:
    """The per-agent part of a scrape, filled by :meth:`add` over the agents (in one go or in slices, see
    :func:`render_metrics_sliced`) and then rendered by :func:`render_metrics`."""

    __slots__ = ("fresh", "info", "metrics", "now", "per_agent", "states", "views")

    def __init__(self, metrics: MasterMetrics, core: MasterCore, now: float) -> None:
        self.metrics, self.views, self.now = metrics, core.views, now
        self.states = {"active": 0, "silent": 0}
        self.info: list[str] = []
        self.per_agent: list[str] = []
        self.fresh: dict[AgentId, tuple[AgentLoad, str, tuple[str, ...], str]] = {}

    def add(self, aids: Iterable[AgentId]) -> None:
        views, metrics, now, cache = self.views, self.metrics, self.now, self.metrics.agent_lines
        for aid in aids:
            record = views.agent_record(aid)
            load = views.load(aid)
            if record is None or load is None:
                continue  # gone since the pass began
            interval = record.info.heartbeat_interval if record.info.heartbeat_interval > 0 else 1.0
            state = "silent" if now - record.last_seen > SILENT_AFTER_INTERVALS * interval else "active"
            self.states[state] += 1
            labels = (aid, record.info.hostname, metrics.agent_transport.get(aid, "http"), state)
            cached = cache.get(aid)
            if cached is None:
                line = sample_line("edgerm_agent_info", _INFO_LABELS, labels, 1)
                cached = (load, _agent_lines(aid, load), labels, line)
            else:
                if cached[0] is not load:
                    cached = (load, _agent_lines(aid, load), cached[2], cached[3])
                if cached[2] != labels:
                    cached = (cached[0], cached[1], labels, sample_line("edgerm_agent_info", _INFO_LABELS, labels, 1))
            self.fresh[aid] = cached
            self.info.append(cached[3])
            self.per_agent.append(cached[1])


#: Agents per slice of a sliced scrape: about 5 ms of the event loop each (bench/metrics_scrape.py).
SCRAPE_SLICE = 1_000


async def render_metrics_sliced(
    metrics: MasterMetrics,
    core: MasterCore,
    gauges: Callable[[], Mapping[str, float]],
    now: float,
    lost_recently: Callable[[], int],
    slice_size: int = SCRAPE_SLICE,
) -> str:
    """:func:`render_metrics`, with the per-agent pass done :data:`SCRAPE_SLICE` agents at a time, yielding
    the event loop between slices: a scrape of a large fleet delays no heartbeat by more than one slice.
    Agents that join meanwhile wait for the next scrape; those that leave are skipped."""
    aids = list(core.views.agent_ids)
    agents = AgentPass(metrics, core, now)
    for i in range(0, len(aids), slice_size):
        if i:
            await asyncio.sleep(0)
        agents.add(aids[i : i + slice_size])
    return render_metrics(metrics, core, gauges(), now, lost_recently(), agents=agents)


def render_metrics(
    metrics: MasterMetrics,
    core: MasterCore,
    gauges: Mapping[str, float],
    now: float,
    lost_recently: int = 0,
    agents: AgentPass | None = None,
) -> str:
    """The Prometheus text exposition of every figure of the master.

    Cluster figures come from the core's read views (kept as the core changes). The
    per-agent families are one pass over the agents (``agents``, if done already): each
    agent's resource lines are rendered once per change of its load (cached on the load
    row), its info line once per change of its host, transport or state; only the
    silent/active test runs per agent per scrape."""
    w = Writer()
    views = core.views
    totals = views.totals()
    if agents is None:
        agents = AgentPass(metrics, core, now)
        agents.add(views.agent_ids)
    states, info, per_agent, fresh = agents.states, agents.info, agents.per_agent, agents.fresh
    metrics.agent_lines = fresh  # departed agents drop out
    states["lost"] = lost_recently
    w.gauge(
        "edgerm_agents",
        "Agents by state: active, silent (a heartbeat is overdue), lost (departed, remembered for a while).",
        [((s,), n) for s, n in states.items()],
        ("state",),
    )
    w.gauge_lines(
        "edgerm_agent_info", "One series per registered agent naming its host, transport and state (always 1).", info
    )
    w.gauge(
        "edgerm_cluster_resources",
        "Resources of all registered agents: total, used by live tasks, offered (cpus in cores, mem/disk in MiB).",
        [((name, kind), v) for (name, kind), v in totals.resources.items()],
        ("resource", "kind"),
    )
    w.gauge_lines(
        "edgerm_agent_resources",
        "Resources per agent: total, used by live tasks, offered (cpus in cores, mem/disk in MiB).",
        (block for block in per_agent if block),
    )
    w.counter(metrics.registrations)
    w.counter(metrics.agents_lost)
    w.histogram(metrics.lateness)
    frameworks = [f for f in map(views.framework_record, views.framework_ids) if f is not None]
    w.gauge(
        "edgerm_frameworks",
        "Frameworks known, by whether their event stream is open.",
        [(("active",), totals.frameworks_active), (("inactive",), totals.frameworks - totals.frameworks_active)],
        ("state",),
    )
    w.gauge(
        "edgerm_framework_info",
        "One series per framework naming it (always 1).",
        [((f.info.id, f.info.name, str(f.active).lower(), str(f.suppressed).lower()), 1) for f in frameworks],
        ("framework_id", "name", "active", "suppressed"),
    )
    cluster_total = {
        name: v for (name, kind), v in totals.resources.items() if kind == "total" and name not in ("devices", "ports")
    }
    shares = core.dominant_shares(Resources.scalar(**cluster_total))
    w.gauge(
        "edgerm_framework_dominant_share",
        "DRF dominant share of each framework (largest fraction of any cluster resource it holds or is offered).",
        [((fid,), share) for fid, share in sorted(shares.items())],
        ("framework_id",),
    )
    w.counter(metrics.offers)
    w.gauge(
        "edgerm_offers_outstanding", "Offers made and not yet answered.", [((), float(metrics.offers_outstanding()))]
    )
    w.counter(metrics.subscriptions)
    w.counter(metrics.teardowns)
    w.gauge("edgerm_tasks", "Live tasks, by state.", [((s,), n) for s, n in metrics.live_tasks().items()], ("state",))
    w.counter(metrics.launched)
    w.counter(metrics.outcomes)
    w.counter_samples(
        "edgerm_calls_total",
        "Calls received, by API and call type.",
        [((api, kind), n) for (api, kind), n in sorted(metrics.calls.items())],
        ("api", "type"),
    )
    w.counter_samples(
        "edgerm_errors_total",
        "Typed error replies, by Error.Code.",
        [((code,), n) for code, n in sorted(metrics.errors.items())],
        ("code",),
    )
    w.counter_samples("edgerm_heartbeats_received_total", "Agent heartbeats received.", [((), metrics.heartbeats)])
    w.counter_samples("edgerm_framework_events_sent_total", "Events queued to frameworks.", [((), metrics.events_sent)])
    w.counter_samples(
        "edgerm_framework_events_dropped_total",
        "Events for frameworks without a (readable) stream.",
        [((), metrics.events_dropped)],
    )
    w.histogram(metrics.requests)
    w.histogram(metrics.core_seconds)
    w.histogram(metrics.allocation_seconds)
    w.histogram(metrics.loop_lag)
    w.histogram(metrics.gc_pauses)
    w.counter_samples(
        "edgerm_gc_cpu_seconds_total",
        "CPU time of the garbage collector's passes, by generation.",
        [((g,), v) for g, v in sorted(metrics.gc_cpu.items())],
        ("generation",),
    )
    w.counter_samples(
        "edgerm_gc_freezes_total", "Times the GC policy froze the heap (the fleet grew).", [((), metrics.gc_freezes)]
    )
    w.counter_samples(
        "edgerm_gc_young_collections_total",
        "Young-generation passes the GC policy ran (the young generation outgrew its limit).",
        [((), metrics.gc_young_collections)],
    )
    w.value("edgerm_event_loop_lag_last_seconds", "Lag of the latest periodic tick.", metrics.last_loop_lag)
    for name, value in sorted(gauges.items()):
        w.value(name, _GAUGE_HELP.get(name, name.replace("_", " ") + "."), value)
    process_figures(w, "edgerm_master", edgerm.__version__)
    return w.text()
