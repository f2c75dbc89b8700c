"""The agent's Prometheus figures and its opt-in ``/metrics`` listener.

Role: :class:`AgentMetrics` is told by :class:`~edgerm.agent.service.AgentService`
when a launch begins and when a runtime reports a task's end, and counts
launches, outcomes and task run times by executor. :func:`render_agent_metrics`
adds what the runtimes count themselves (the WebAssembly module cache's hits
and compilations, Docker image pull times) and the process figures.
:func:`start_metrics_server` serves it on ``GET /metrics`` when the operator
asks (``edgerm-agent --metrics-port``); by default an agent listens on no port
at all (agents always initiate, so one behind NAT needs none).

Rules:
- Counting is dict work on the event loop; a scrape reads counters only.
- A task's run time is measured from the launch command to the runtime's
  end report (so it includes an image pull); a task recovered after an
  agent restart has no start time and counts as an outcome only.
- Runtimes are read by duck typing (``cache_hits``, ``compiled``,
  ``pull_seconds``), so a runtime without such figures simply has none.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import edgerm
from edgerm.ids import TaskId
from edgerm.model import Reason, TaskState
from edgerm.promtext import CONTENT_TYPE, SLOW_BUCKETS, Counter, Histogram, Writer, process_figures

if TYPE_CHECKING:
    from aiohttp import web

    from edgerm.agent.service import AgentService

log = logging.getLogger(__name__)


class AgentMetrics:
    """Task counters of one agent. Mutated on the event loop only."""

    def __init__(self) -> None:
        self._started: dict[TaskId, tuple[str, float]] = {}  # task -> (executor, monotonic launch time)
        self.launched = Counter("edgerm_agent_tasks_launched_total", "Launches taken, by executor.", ("executor",))
        self.outcomes = Counter(
            "edgerm_agent_task_outcomes_total",
            "Tasks that ended on this agent, by executor, terminal state and reason.",
            ("executor", "state", "reason"),
        )
        self.run_seconds = Histogram(
            "edgerm_agent_task_run_seconds",
            "Time from the launch command to the task's end (image pull and start included), by executor and state.",
            ("executor", "state"),
            SLOW_BUCKETS,
        )

    def launch(self, task_id: TaskId, executor: str) -> None:
        self.launched.inc(executor)
        self._started[task_id] = (executor, time.monotonic())

    def ended(self, task_id: TaskId, executor: str, state: TaskState, reason: Reason) -> None:
        started = self._started.pop(task_id, None)
        if started is not None:
            executor = started[0]
            self.run_seconds.observe(time.monotonic() - started[1], executor, state.value)
        self.outcomes.inc(executor, state.value, reason.value)


def render_agent_metrics(service: AgentService) -> str:
    """The Prometheus text exposition of one agent."""
    w = Writer()
    metrics = service.metrics
    w.value("edgerm_agent_tasks", "Tasks this agent holds (running or ending).", float(len(service.core.task_ids())))
    w.value(
        "edgerm_agent_status_updates_unacknowledged",
        "Status updates the master has not acknowledged yet.",
        float(service.core.unacknowledged()),
    )
    w.value("edgerm_agent_registered", "1 while registered with the master.", 1.0 if service.registered else 0.0)
    w.counter(metrics.launched)
    w.counter(metrics.outcomes)
    w.histogram(metrics.run_seconds)
    hits: list[tuple[tuple[str, ...], float]] = []
    compiled: list[tuple[tuple[str, ...], float]] = []
    pulls: list[Histogram] = []
    for executor, runtime in sorted(service.runtimes.items()):
        for rt in (runtime, getattr(runtime, "inner", None)):
            n_hits, n_compiled, pull = (getattr(rt, k, None) for k in ("cache_hits", "compiled", "pull_seconds"))
            if isinstance(n_hits, int):
                hits.append(((executor,), float(n_hits)))
            if isinstance(n_compiled, int):
                compiled.append(((executor,), float(n_compiled)))
            if isinstance(pull, Histogram):
                pulls.append(pull)
    w.counter_samples(
        "edgerm_agent_module_cache_hits_total",
        "WebAssembly launches whose compiled module came from the in-memory cache.",
        hits,
        ("executor",),
    )
    w.counter_samples(
        "edgerm_agent_modules_compiled_total",
        "WebAssembly modules compiled (not found compiled in memory or on disk).",
        compiled,
        ("executor",),
    )
    for histogram in pulls[:1]:
        w.histogram(histogram)
    process_figures(w, "edgerm_agent", edgerm.__version__)
    return w.text()


async def start_metrics_server(service: AgentService, host: str, port: int) -> web.AppRunner:
    """Serve ``GET /metrics`` on ``host:port`` (0: ephemeral); the caller cleans the runner up."""
    from aiohttp import web  # only an agent asked to listen loads the HTTP server

    async def metrics(request: web.Request) -> web.Response:
        return web.Response(body=render_agent_metrics(service).encode(), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    log.info("agent %s serves /metrics on http://%s:%d", service.info.id, host, runner.addresses[0][1])
    return runner
