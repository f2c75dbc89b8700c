"""Benchmark: the cost of ``/api/v1/state`` and ``/metrics`` on the master core, against the old snapshot().

Run from the repository root::

    python bench/read_side.py              # 10,000 agents
    python bench/read_side.py --agents 2000

A pure MasterCore (no sockets) is restored from a registry of N agents,
3 tasks on each (30,000 live) and 1,000 ended tasks, 4 frameworks; the
frameworks re-subscribe and 200 agents re-register so that offers are out
(re-registering every agent would cost an allocation cycle each: minutes).
Then, best of several runs, it prints and saves
(``bench/results/read_side.json``) in milliseconds:

- ``snapshot``: the baseline, ``MasterCore.snapshot()`` (what every
  ``/api/v1/state`` used to format), and ``snapshot_json`` with its JSON
  encoding, measured in the same run;
- ``state_full``: the unparameterised call from the read views (same rows),
  and ``state_full_json`` encoded;
- ``page_first``, ``page_middle``: ``?limit=100`` and a page after a cursor
  half-way, encoded; ``page_running``: ``?state=RUNNING&limit=100``;
  ``page_agent``: ``?agent=ID``; ``page_scoped``: a framework principal's
  ``?limit=100``;
- ``metrics_cold`` (first scrape: every per-agent line rendered),
  ``metrics_warm`` (a scrape after 1% of the agents' loads changed), and
  ``metrics_old_walk``: the old scrape's per-agent walk (summing each
  agent's used and offered resources and rendering every line), in the same run;
- ``status_event_us``/``heartbeat_us``: one core event with the views kept
  and with their refresh disabled (the upkeep's cost).

Ratios are against the snapshot baseline (``state_*``) and the old walk (``metrics_*``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import save
from edgerm.ids import AgentId, FrameworkId, TaskId
from edgerm.master import events as ev
from edgerm.master.metrics import MasterMetrics, render_metrics
from edgerm.master.readviews import resource_samples
from edgerm.master.registry import AgentRow, FrameworkRow, Registry, TaskRow
from edgerm.master.state import MasterConfig, MasterCore
from edgerm.master.state_api import Cursor, StateQuery, state_page
from edgerm.model import AgentInfo, FrameworkInfo, Source, TaskInfo, TaskState, TaskStatus, WasmSpec
from edgerm.promtext import Writer
from edgerm.resources import Resources

WASM = {"executors": frozenset({"wasm"}), "zone": "z1"}
FRAMEWORKS = [FrameworkId(f"fw-{k}") for k in range(4)]
NOW = 1000.0


def build(n_agents: int) -> MasterCore:
    agents, tasks = [], []
    res = Resources.parse("cpus:0.1;mem:16")
    for i in range(n_agents):
        aid = AgentId(f"agent-{i:06d}")
        info = AgentInfo(aid, f"host-{i}", Resources.parse("cpus:4;mem:4096;disk:1000"), WASM, 1.0)
        agents.append(AgentRow(info, NOW))
        for k in range(3):
            tid = TaskId(f"t{i:06d}-{k}")
            fid = FRAMEWORKS[(i + k) % len(FRAMEWORKS)]
            state = TaskState.FINISHED if k == 0 and i < 1000 else TaskState.RUNNING
            status = TaskStatus(tid, aid, state, uuid=f"u{i}-{k}", timestamp=NOW, source=Source.AGENT)
            tasks.append(
                TaskRow(TaskInfo(tid, "t", aid, res, WasmSpec(module_sha256="ab" * 32), framework_id=fid), status)
            )
    frameworks = tuple(FrameworkRow(FrameworkInfo(f, f)) for f in FRAMEWORKS)
    core = MasterCore(MasterConfig(offer_timeout=3600, reregister_grace=3600))
    core.restore(Registry(frameworks, tuple(agents), tuple(tasks)), NOW)
    for f in FRAMEWORKS:
        core.handle(ev.FrameworkSubscribed(FrameworkInfo(f, f)), NOW)
    for row in agents[:200]:
        aid = row.info.id
        reports = tuple(r.status for r in tasks if r.info.agent_id == aid and r.status.state is TaskState.RUNNING)
        core.handle(ev.AgentRegistered(row.info, reports, instance_id="i"), NOW)
    return core


def best(fn: Callable[[], object], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times) * 1000


def old_walk(core: MasterCore) -> str:
    """The old scrape's per-agent part: sum each agent's used and offered, render every line."""
    w = Writer()
    per_agent: list[tuple[tuple[str, ...], float]] = []
    cluster: dict[tuple[str, str], float] = {}
    for agent in sorted(core.agent_records(), key=lambda a: a.info.id):
        aid = agent.info.id
        held = (("total", agent.info.resources), ("used", core.used_on(aid)), ("offered", core.offered_on(aid)))
        for kind, res in held:
            for name, amount in resource_samples(res):
                per_agent.append(((aid, name, kind), amount))
                cluster[(name, kind)] = cluster.get((name, kind), 0.0) + amount
    w.gauge("edgerm_agent_resources", "x", per_agent, ("agent_id", "resource", "kind"))
    return w.text()


def measure(n_agents: int) -> dict[str, object]:
    started = time.perf_counter()
    core = build(n_agents)
    built_s = time.perf_counter() - started
    views = core.views
    metrics = MasterMetrics()
    ms: dict[str, float] = {}
    ms["snapshot"] = best(core.snapshot, 3)
    ms["snapshot_json"] = best(lambda: json.dumps(core.snapshot()), 3)
    ms["state_full"] = best(lambda: state_page(core, StateQuery()), 3)
    ms["state_full_json"] = best(lambda: json.dumps(state_page(core, StateQuery())), 3)
    page = StateQuery(limit=100)
    ms["page_first"] = best(lambda: json.dumps(state_page(core, page)))
    half = views.agent_ids.as_list()[n_agents // 2]
    middle = StateQuery(limit=100, after=Cursor(half, "", TaskId(f"t{n_agents // 2:06d}-0")))
    ms["page_middle"] = best(lambda: json.dumps(state_page(core, middle)))
    running = StateQuery(state=TaskState.RUNNING, limit=100)
    ms["page_running"] = best(lambda: json.dumps(state_page(core, running)))
    one = StateQuery(agent=AgentId(half))
    ms["page_agent"] = best(lambda: json.dumps(state_page(core, one)))
    ms["page_scoped"] = best(lambda: json.dumps(state_page(core, page, frozenset({FRAMEWORKS[1]}))))
    ms["metrics_old_walk"] = best(lambda: old_walk(core), 3)
    t0 = time.perf_counter()
    render_metrics(metrics, core, {}, NOW)
    ms["metrics_cold"] = (time.perf_counter() - t0) * 1000
    # 1% of the agents' loads change (a task each finishes), then a warm scrape.
    changed = [AgentId(f"agent-{i:06d}") for i in range(n_agents // 100)]
    for aid in changed:  # the first 200 re-registered: ACTIVE, so their updates are taken
        for k in (1, 2):
            tid = TaskId(f"t{aid[-6:]}-{k}")
            record = core.task(tid)
            if record is not None and record.live:
                status = TaskStatus(tid, aid, TaskState.FINISHED, uuid=f"done-{tid}", timestamp=NOW)
                core.handle(ev.StatusReceived(aid, status), NOW)
                break
    t0 = time.perf_counter()
    text = render_metrics(metrics, core, {}, NOW)
    ms["metrics_warm"] = (time.perf_counter() - t0) * 1000
    ms["metrics_warm_best"] = best(lambda: render_metrics(metrics, core, {}, NOW))
    # The views' upkeep per event: heartbeats (nothing to do) and status updates (one task, one agent).
    active = [AgentId(f"agent-{i:06d}") for i in range(200)]
    beats = [ev.HeartbeatReceived(a, ()) for a in active] * 10

    def heartbeat_round() -> None:
        for beat in beats:
            core.handle(beat, NOW)

    def status_round(tag: str) -> Callable[[], None]:
        def run() -> None:
            for n, aid in enumerate(active):
                tid = TaskId(f"t{aid[-6:]}-2")
                state = TaskState.RUNNING
                status = TaskStatus(tid, aid, state, uuid=f"{tag}-{n}-{time.perf_counter_ns()}", timestamp=NOW)
                core.handle(ev.StatusReceived(aid, status), NOW)

        return run

    heartbeat_with = best(heartbeat_round, 3) / len(beats) * 1000
    status_with = best(status_round("w"), 3) / len(active) * 1000
    refresh = core.views.refresh
    core.views.refresh = lambda *a: None  # type: ignore[method-assign]
    heartbeat_without = best(heartbeat_round, 3) / len(beats) * 1000
    status_without = best(status_round("wo"), 3) / len(active) * 1000
    core.views.refresh = refresh  # type: ignore[method-assign]
    return {
        "agents": n_agents,
        "tasks_known": len(views.task_ids),
        "offers": views.totals().offers,
        "build_s": round(built_s, 1),
        "metrics_bytes": len(text),
        "ms": {k: round(v, 3) for k, v in ms.items()},
        "ratios": {
            "state_full_json / snapshot_json": round(ms["state_full_json"] / ms["snapshot_json"], 3),
            "page_first / snapshot_json": round(ms["page_first"] / ms["snapshot_json"], 5),
            "page_middle / snapshot_json": round(ms["page_middle"] / ms["snapshot_json"], 5),
            "page_running / snapshot_json": round(ms["page_running"] / ms["snapshot_json"], 5),
            "page_scoped / snapshot_json": round(ms["page_scoped"] / ms["snapshot_json"], 5),
            "metrics_cold / metrics_old_walk": round(ms["metrics_cold"] / ms["metrics_old_walk"], 3),
            "metrics_warm / metrics_old_walk": round(ms["metrics_warm"] / ms["metrics_old_walk"], 3),
        },
        "event_us": {
            "heartbeat_with_views": round(heartbeat_with, 2),
            "heartbeat_without": round(heartbeat_without, 2),
            "status_with_views": round(status_with, 2),
            "status_without": round(status_without, 2),
        },
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--agents", type=int, default=10_000)
    args = p.parse_args()
    r = measure(args.agents)
    print(f"{r['agents']} agents, {r['tasks_known']} tasks, {r['offers']} offers (built in {r['build_s']} s)")
    for k, v in r["ms"].items():  # type: ignore[attr-defined]
        print(f"  {k:<20} {v:>10.3f} ms")
    for k, v in r["ratios"].items():  # type: ignore[attr-defined]
        print(f"  {k:<34} {v}")
    for k, v in r["event_us"].items():  # type: ignore[attr-defined]
        print(f"  {k:<22} {v} us")
    baseline = "MasterCore.snapshot() (+json.dumps) and the old /metrics per-agent walk, in the same run"
    path = save("read_side", {"rows": [r], "baseline": baseline})
    print(f"saved {path}")


if __name__ == "__main__":
    main()
